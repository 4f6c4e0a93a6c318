# GUI driver, executed by python-fu-eval inside the real `gimp` under Xvfb (see gui_inside.sh).
# Makes a DragGAN image, shows it, calls DragGAN Drag INTERACTIVE (gui_inside.sh presses Return on
# the dialog), then waits while gui_inside.sh presses Ctrl+Z once in the image window: one undo
# must take away the whole insertion (layer, tracked path and session parasite); the same drag on
# the source then gives the same picture. Then an interactive drag held at the daemon's test gate:
# gui_inside.sh looks at the image from a second python-fu-eval (the preview layer must be there)
# and presses the drag window's Stop and keep. Then the same on a plain layer during its inversion:
# the fit so far is the preview, and "Drag now with this fit" starts the drag from it. Then, during
# a drag, and again during a plain layer's inversion, gui_inside.sh clicks GIMP's Cancel button in
# the status bar; both jobs wait at the test gate (editor_gate.py) until the click has cancelled
# them. Writes $E2E_DIR/gui_report.json.
import json
import os
import sys
import time

D = os.environ["E2E_DIR"]
URL, TOKEN = os.environ["DRAGGAN_URL"], os.environ["DRAGGAN_TOKEN"]
sys.path.insert(0, D)
import editor_gate as gate  # noqa: E402
from pdb_run import run_procedure  # noqa: E402

rep = {"gimp": Gimp.version()}


def parasite(target):
    p = target.get_parasite("draggan-session")
    return json.loads(bytes(p.get_data()).decode()) if p is not None else None


def names(image):
    return [l.get_name() for l in image.get_layers()]


def pixels(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def tracked(image):
    """The strokes of the tracked-handles path as [[first anchor, last anchor], ...], None without it."""
    path = image.get_path_by_name("DragGAN handles (tracked)")
    if path is None:
        return None
    return [[[cps[2], cps[3]], [cps[-4], cps[-3]]] for cps in
            (path.stroke_get_points(sid)[1] for sid in path.get_strokes())]


def interactive_drag(image, layer):
    """DragGAN Drag INTERACTIVE on layer (gui_inside.sh presses OK in its dialog); the answer's status."""
    drag = Gimp.get_pdb().lookup_procedure("python-fu-draggan-drag")
    cfg = drag.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    print("CALLING_INTERACTIVE", flush=True)
    return drag.run(cfg)


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


DEMO = json.loads(os.environ["DEMO_DRAG"])  # the README's drag on the demo model: model, seed, psi, strokes


DISPLAYS = []


def new_image(seed, model=os.environ["DRAGGAN_MODEL"], psi=0.7, strokes=(((24, 28), (34, 30)),)):
    """A DragGAN image of the seed, shown in a window at 200 % (gui_inside.sh zooms), with the path
    "drags" (one stroke per drag, shown) selected."""
    status, res = run_procedure("python-fu-draggan-new-image", token=TOKEN, model=model, seed=seed, psi=psi)
    return shown_with_strokes(res.index(1), strokes)


def shown_with_strokes(image, strokes):
    """The image in a window at 200 % (gui_inside.sh zooms), with the path "drags" (one stroke per
    drag, shown) selected."""
    for shown in DISPLAYS:  # one image at a time on screen: the pictures show this one
        shown.delete()
    DISPLAYS[:] = [Gimp.Display.new(image)]
    drags = Gimp.Path.new(image, "drags")
    image.insert_path(drags, None, 0)
    for (hx, hy), (tx, ty) in strokes:
        drags.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, [hx, hy] * 3 + [tx, ty] * 3, False)
    drags.set_visible(True)
    image.set_selected_paths([drags])
    Gimp.displays_flush()
    open(D + "/zoom_request", "w").close()
    deadline = time.time() + 20
    while time.time() < deadline and os.path.exists(D + "/zoom_request"):
        time.sleep(0.2)
    return image


def demo_image():
    return new_image(DEMO["seed"], DEMO["model"], DEMO["psi"], DEMO["strokes"])


def plain_image():
    """plain.png (a picture the daemon did not make), shown, with a drag on the cat in it."""
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(D + "/plain.png"))
    return shown_with_strokes(image, (((100, 70), (110, 75)),))


try:
    img = demo_image()
    src = img.get_layers()[0]
    path = img.get_path_by_name("drags")
    before = parasite(img)

    res = interactive_drag(img, src)
    rep["status"] = int(res.index(0))
    rep["success"] = res.index(0) == Gimp.PDBStatusType.SUCCESS
    rep["message"] = None if rep["success"] else str(res.index(1))
    rep["layers_after_drag"] = names(img)
    rep["parasite_changed"] = parasite(img) != before
    rep["no_preview_left"] = not any(n.startswith("DragGAN preview") for n in names(img))
    rep["tracked_after_drag"] = tracked(img)
    first_result = pixels(img.get_layers()[0])
    Gimp.displays_flush()
    open(D + "/ready_for_undo", "w").close()
    rep["undo_pressed"] = wait_for(D + "/undo_pressed", 60)
    deadline = time.time() + 10
    while time.time() < deadline and names(img) == rep["layers_after_drag"]:
        time.sleep(0.2)
    rep["layers_after_undo"] = names(img)
    rep["parasite_restored"] = parasite(img) == before
    rep["tracked_after_undo"] = tracked(img)
    # the same drag on the source, as a script with the dialog's default settings: the same picture
    status, res = run_procedure("python-fu-draggan-drag", img, [src], path=path, token=TOKEN)
    rep["repeat_status"] = status
    rep["repeat_equal"] = status == "success" and pixels(img.get_layers()[0]) == first_result

    # An interactive drag held at the test gate after 5 steps (the dialog's preview interval): the
    # preview layer is there while it waits (gui_inside.sh looks from a second python-fu-eval), and the
    # drag window's Stop and keep ends it with the result so far
    stopped = demo_image()
    open(D + "/stop_phase", "w").close()
    with gate.holding(URL, TOKEN, step=5):
        res = interactive_drag(stopped, stopped.get_layers()[0])
        rep["stop_job_released"] = gate.wait_released(URL, TOKEN, 30)
    rep["stop_status"] = int(res.index(0))
    rep["stop_layers"] = names(stopped)
    rep["stop_parasite"] = parasite(stopped.get_layers()[0])
    rep["stop_tracked"] = tracked(stopped)

    # An interactive drag on a plain layer, its inversion held at the test gate after 5 steps: the fit
    # so far stands as a preview layer (gui_inside.sh looks), and "Drag now with this fit" ends the
    # fitting there; the drag then starts from that fit (gui_inside.sh opens the gate for it)
    if os.path.exists(D + "/plain.png"):
        fitted = plain_image()
        open(D + "/fit_phase", "w").close()
        with gate.holding(URL, TOKEN, step=5):
            res = interactive_drag(fitted, fitted.get_layers()[0])
        rep["fit_status"] = int(res.index(0))
        rep["fit_message"] = None if res.index(0) == Gimp.PDBStatusType.SUCCESS else str(res.index(1))
        rep["fit_layers"] = names(fitted)
        rep["fit_parasite"] = parasite(fitted)

    # GIMP's Cancel (clicked by gui_inside.sh) kills the plug-in during a drag on a new image
    other = new_image(12)
    rep["cancel_session"] = parasite(other)["session_id"]
    cancelled_run(other, "", points="[[20, 20, 44, 44]]", steps=50)

    # ... and during a plain layer's inversion (a picture the daemon did not make)
    if os.path.exists(D + "/plain.png"):
        plain = plain_image()
        cancelled_run(plain, "invert_", points="[[100, 70, 110, 75]]", model=os.environ["DRAGGAN_MODEL"],
                      **{"inversion-w-steps": 2000, "inversion-wplus-steps": 0, "inversion-tuning-steps": 0})
except Exception:
    import traceback
    rep["exception"] = traceback.format_exc()
    raise
finally:
    with open(D + "/gui_report.json", "w") as f:
        json.dump(rep, f, indent=1)
