"""GIMP glue every DragGAN procedure shares: answers and error messages, the stored settings, and
HTTP work on a thread beside GIMP's progress bar.

Runs in GIMP's own Python with the standard library and gi only. The libgimp wire is not
thread-safe, so work on a thread never calls GIMP; the main thread shows its statuses.
"""
import threading

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

import draggan_logic as logic  # noqa: E402
import draggan_settings as stored_settings  # noqa: E402
from draggan_client import launcher, workflow  # noqa: E402
from draggan_client.client import DaemonError  # noqa: E402
from draggan_client.pngcodec import PngError  # noqa: E402

MENU = "<Image>/Filters/DragGAN"
RW = GObject.ParamFlags.READWRITE
PROBE_TIMEOUT_S = 5.0  # how long a dialog waits for the daemon's answer before it opens without it


def error(procedure, message, calling=False):
    status = Gimp.PDBStatusType.CALLING_ERROR if calling else Gimp.PDBStatusType.EXECUTION_ERROR
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def failed(procedure, exc):
    """End the progress bar and answer with the message the user should see for `exc`."""
    Gimp.progress_end()
    return error(procedure, "DragGAN: " + message_of(exc), isinstance(exc, logic.PluginError) and exc.calling)


def message_of(exc):
    """What the artist reads for an exception: the plug-in's, the workflow's and the daemon's own words;
    a file that cannot be written; anything else is a bug to report (never a traceback)."""
    if isinstance(exc, logic.PluginError):
        return exc.message
    if isinstance(exc, DaemonError):
        return logic.friendly(exc.message, exc.code)
    if isinstance(exc, (workflow.WorkflowError, launcher.LauncherError, PngError)):
        return str(exc)
    if isinstance(exc, OSError):  # e.g. the settings file cannot be written
        return "{} ({})".format(exc.strerror or exc, exc.filename or "")
    return "unexpected error ({}: {}); please report it".format(type(exc).__name__, exc)


def stored():
    """The stored settings (Filters > DragGAN > Daemon...); a damaged file is reported and read as defaults."""
    settings, problem = stored_settings.load()
    if problem:
        Gimp.message("DragGAN: " + problem)
    return settings


def run_in_thread(work, on_status=None, on_preview=None, pump=None):
    """Run work(state) on a thread (no GIMP calls in there) while the main thread keeps GIMP's progress
    bar moving; returns work's result or raises its exception. The worker hands over what the main
    thread shows through state: "status" (to on_status) and "preview", a (png, status) pair (to
    on_preview); pump() runs on the main thread between looks (a window's events)."""
    state = {"status": None, "preview": None}
    box = {}

    def target():
        try:
            box["result"] = work(state)
        except BaseException as e:  # handed back to the main thread
            box["error"] = e

    thread = threading.Thread(target=target, name="draggan-http", daemon=True)
    thread.start()
    shown = shown_preview = None
    while thread.is_alive():
        thread.join(0.05 if pump is not None else 0.1)
        if pump is not None:
            pump()
        status = state.get("status")
        if status is not None and on_status is not None:
            if status is not shown:  # the worker sets a new object for each change
                shown = status
                on_status(status)
        elif status is None and pump is None:
            Gimp.progress_pulse()
        preview = state.get("preview")
        if preview is not None and preview is not shown_preview and on_preview is not None:
            shown_preview = preview
            on_preview(*preview)
    if "error" in box:
        raise box["error"]
    return box["result"]


def show_progress(status):
    shown = workflow.progress(status)
    Gimp.progress_set_text("DragGAN: " + shown.text)
    Gimp.progress_update(shown.fraction)
