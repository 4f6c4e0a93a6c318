"""Krita extension: the plug-in's actions (with default shortcuts from draggan_krita.action), the
application-wide controller and Drag tool that every window's docker shares, and the local daemon's
start with Krita and end when Krita quits."""
from krita import Extension

_STATE = {"controller": None, "tool": None, "actions": []}


def get_controller():
    if _STATE["controller"] is None:
        from .controller import Controller
        _STATE["controller"] = Controller()
    return _STATE["controller"]


def get_tool():
    if _STATE["tool"] is None:
        from .canvas import DragTool
        tool = DragTool(get_controller())
        get_controller().tool = tool
        get_controller().armed_changed.connect(_sync_actions)
        _STATE["tool"] = tool
    return _STATE["tool"]


def _sync_actions(armed):
    for a in list(_STATE["actions"]):
        try:
            if a.isCheckable() and a.isChecked() != armed:
                a.blockSignals(True)
                a.setChecked(armed)
                a.blockSignals(False)
        except RuntimeError:
            _STATE["actions"].remove(a)


def _safe(fn):
    def run(*_args):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - show it instead of Krita's modal exception dialog
            import traceback
            traceback.print_exc()
            get_controller().say("DragGAN: %s: %s" % (type(exc).__name__, exc), True)
    return run


class DragGANExtension(Extension):
    def __init__(self, parent):
        super(DragGANExtension, self).__init__(parent)

    def setup(self):
        # runs once, before any window: the local daemon is stopped (or kept) when Krita quits, and
        # "Start with Krita" starts it once Krita's event loop runs
        from . import kritadoc
        from PyQt5.QtCore import QTimer
        kritadoc.on_application_closing(_safe(lambda: get_controller().local.at_quit()))
        QTimer.singleShot(0, _safe(lambda: get_controller().local.start_with_krita()))

    def createActions(self, window):
        tool = window.createAction("draggan_tool", "DragGAN: Drag tool", "tools/scripts")
        tool.setCheckable(True)
        tool.toggled.connect(lambda on: _safe(lambda: get_tool().set_armed(on))())
        run = window.createAction("draggan_run", "DragGAN: Run drag", "tools/scripts")
        run.triggered.connect(_safe(lambda: get_controller().run()))
        new = window.createAction("draggan_new_image", "DragGAN: New image from model", "tools/scripts")
        new.triggered.connect(_safe(lambda: get_controller().new_image()))
        _STATE["actions"].extend([tool, run, new])
        get_tool()
