"""Running a procedure from a driver inside gimp-console (python-fu-eval), as a script would:
NONINTERACTIVE, its arguments by name, the answer's status in words. tests/test_gimp_e2e.py copies it
next to the driver, which imports it from $E2E_DIR."""
from gi.repository import Gimp

STATUS = {int(Gimp.PDBStatusType.EXECUTION_ERROR): "execution_error",
          int(Gimp.PDBStatusType.CALLING_ERROR): "calling_error", int(Gimp.PDBStatusType.SUCCESS): "success",
          int(Gimp.PDBStatusType.CANCEL): "cancel", int(Gimp.PDBStatusType.PASS_THROUGH): "pass_through"}


def run_procedure(name, image=None, drawables=None, **props):
    """(status in words, the answer's value array) of procedure `name`; props by argument name, with _ for -."""
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError(name + " is not registered (exec bit? NAME/NAME.py? error at query time?)")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    if image is not None:
        cfg.set_property("image", image)
        cfg.set_core_object_array("drawables", drawables)
    for key, value in props.items():
        cfg.set_property(key.replace("_", "-"), value)
    res = proc.run(cfg)
    return STATUS.get(int(res.index(0)), str(res.index(0))), res
