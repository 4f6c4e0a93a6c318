# GUI driver, executed by python-fu-eval inside the real `gimp` under Xvfb (see gui_inside.sh).
# Makes a DragGAN image, shows it, calls DragGAN Drag INTERACTIVE (gui_inside.sh presses Return on
# the dialog), then waits while gui_inside.sh presses Ctrl+Z once in the image window: one undo
# must take away the whole insertion (layer and session parasite). Then, during a drag, and again
# during a plain layer's inversion, gui_inside.sh clicks GIMP's Cancel button in the status bar;
# both jobs wait at the daemon's test gate (editor_gate.py) until the click has cancelled them.
# Writes $E2E_DIR/gui_report.json.
import json
import os
import sys
import time

D = os.environ["E2E_DIR"]
URL, TOKEN = os.environ["DRAGGAN_URL"], os.environ["DRAGGAN_TOKEN"]
sys.path.insert(0, D)
import editor_gate as gate  # noqa: E402

rep = {"gimp": Gimp.version()}


def parasite(target):
    p = target.get_parasite("draggan-session")
    return json.loads(bytes(p.get_data()).decode()) if p is not None else None


def names(image):
    return [l.get_name() for l in image.get_layers()]


def wait_for(path, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline and not os.path.exists(path):
        time.sleep(0.2)
    return os.path.exists(path)


def cancelled_run(image, prefix, **properties):
    """Run DragGAN Drag on image's layer while gui_inside.sh clicks GIMP's Cancel; the outcome goes to
    the report under keys with that prefix. The job waits at the test gate until it is cancelled: the
    gate opens only once GIMP's Cancel has ended the plug-in and its watchdog has cancelled the job
    (or gui_inside.sh gave up and opened it, so that the run ends and the report tells)."""
    drag = Gimp.get_pdb().lookup_procedure("python-fu-draggan-drag")
    cfg = drag.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [image.get_layers()[0]])
    for name, value in properties.items():
        cfg.set_property(name, value)
    with gate.holding(URL, TOKEN):
        open(D + "/" + prefix + "cancel_phase", "w").close()
        wait_for(D + "/" + prefix + "before_taken", 120)  # gui_inside.sh's screenshot of the idle status bar
        res = drag.run(cfg)
        rep[prefix + "job_released"] = gate.wait_released(URL, TOKEN, 30)
    rep[prefix + "cancel_status"] = int(res.index(0))
    rep[prefix + "cancelled"] = res.index(0) == Gimp.PDBStatusType.CANCEL
    rep["layers_after_" + prefix + "cancel"] = names(image)


try:
    pdb = Gimp.get_pdb()
    proc = pdb.lookup_procedure("python-fu-draggan-new-image")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("token", TOKEN)
    cfg.set_property("model", os.environ["DRAGGAN_MODEL"])
    cfg.set_property("seed", 11)
    img = proc.run(cfg).index(1)
    src = img.get_layers()[0]
    Gimp.Display.new(img)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 32, 32)
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, [24, 28] * 3 + [34, 30] * 3, False)
    img.set_selected_paths([path])
    Gimp.displays_flush()
    before = parasite(img)

    drag = pdb.lookup_procedure("python-fu-draggan-drag")
    cfg = drag.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [src])
    print("CALLING_INTERACTIVE", flush=True)
    res = drag.run(cfg)
    rep["status"] = int(res.index(0))
    rep["success"] = res.index(0) == Gimp.PDBStatusType.SUCCESS
    rep["message"] = None if rep["success"] else str(res.index(1))
    rep["layers_after_drag"] = names(img)
    rep["parasite_changed"] = parasite(img) != before
    Gimp.displays_flush()
    open(D + "/ready_for_undo", "w").close()
    rep["undo_pressed"] = wait_for(D + "/undo_pressed", 60)
    deadline = time.time() + 10
    while time.time() < deadline and names(img) == rep["layers_after_drag"]:
        time.sleep(0.2)
    rep["layers_after_undo"] = names(img)
    rep["parasite_restored"] = parasite(img) == before

    # GIMP's Cancel (clicked by gui_inside.sh) kills the plug-in during a drag on a new image
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("token", TOKEN)
    cfg.set_property("model", os.environ["DRAGGAN_MODEL"])
    cfg.set_property("seed", 12)
    other = proc.run(cfg).index(1)
    Gimp.Display.new(other)
    Gimp.displays_flush()
    rep["cancel_session"] = parasite(other)["session_id"]
    cancelled_run(other, "", points="[[20, 20, 44, 44]]", steps=50)

    # ... and during a plain layer's inversion (a picture the daemon did not make)
    if os.path.exists(D + "/plain.png"):
        plain = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(D + "/plain.png"))
        Gimp.Display.new(plain)
        Gimp.displays_flush()
        cancelled_run(plain, "invert_", points="[[100, 70, 110, 75]]", model=os.environ["DRAGGAN_MODEL"],
                      **{"inversion-w-steps": 2000, "inversion-wplus-steps": 0, "inversion-tuning-steps": 0})
except Exception:
    import traceback
    rep["exception"] = traceback.format_exc()
    raise
finally:
    with open(D + "/gui_report.json", "w") as f:
        json.dump(rep, f, indent=1)
