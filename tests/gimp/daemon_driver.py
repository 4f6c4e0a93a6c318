# End-to-end driver for Filters > DragGAN > Daemon..., executed by python-fu-eval inside a real
# gimp-console with NO daemon running. It calls the procedures NONINTERACTIVE, as a script would:
# stores the local daemon's settings, starts it, downloads a model from the test's zoo, makes an image
# with it and drags it (neither call names the daemon: the stored address is used), stops it, starts it
# again and leaves it running for GIMP's exit to end. Everything goes to $E2E_DIR/report.json; the
# judging is tests/test_gimp_e2e.py's. It raises only when it cannot go on.
import json
import os
import sys
import traceback

D = os.environ["E2E_DIR"]
sys.path.insert(0, D)
from pdb_run import run_procedure  # noqa: E402
DAEMON = "python-fu-draggan-daemon"
rep = {"gimp": Gimp.version(), "calls": [], "gimp_pid": os.getppid()}


def call(label, name, image=None, drawables=None, **props):
    status, res = run_procedure(name, image, drawables, **props)
    entry = {"label": label, "status": status}
    if status != "success":
        entry["message"] = res.index(1) if res.length() > 1 else None
    elif name == DAEMON:
        entry.update(url=res.index(1), answers=res.index(2), message=res.index(3))
    rep["calls"].append(entry)
    return status, (res.index(1) if res.length() > 1 else None), entry


try:
    call("status_before", DAEMON, action="status")
    call("bad_action", DAEMON, action="reboot")
    call("new_without_daemon", "python-fu-draggan-new-image", seed=1)
    call("save", DAEMON, action="save", program=os.environ["DRAGGAN_PROGRAM"], extra_args=os.environ["EXTRA_ARGS"])
    status, _, started = call("start", DAEMON, action="start")
    if status != "success":
        raise RuntimeError("start failed: {}".format(started))
    call("status_running", DAEMON, action="status")
    call("download", DAEMON, action="download", model="zoo-tiny")
    call("download_again", DAEMON, action="download", model="zoo-tiny")
    status, img, _ = call("new", "python-fu-draggan-new-image", model="zoo-tiny", seed=7, psi=0.7)
    if status != "success":
        raise RuntimeError("New image failed: {}".format(img))
    src = img.get_layers()[0]
    parasite = src.get_parasite("draggan-session")
    rep["new"] = {"size": [img.get_width(), img.get_height()],
                  "parasite": json.loads(bytes(parasite.get_data()).decode()) if parasite else None}
    status, layer, _ = call("drag", "python-fu-draggan-drag", img, [src], points="[[30, 30, 36, 34]]", steps=3)
    rep["drag_layers"] = [l.get_name() for l in img.get_layers()]
    img.delete()
    call("stop", DAEMON, action="stop")
    call("status_stopped", DAEMON, action="status")
    call("stop_again", DAEMON, action="stop")
    call("start_again", DAEMON, action="start")  # left running: GIMP's exit must end it
    call("status_end", DAEMON, action="status")
except Exception:
    rep["exception"] = traceback.format_exc()
    raise
finally:
    with open(D + "/report.json", "w") as f:
        json.dump(rep, f, indent=1)
print("E2E_DRIVER_DONE", flush=True)
