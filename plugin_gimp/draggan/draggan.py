#!/usr/bin/env python3
"""DragGAN for GIMP 3: drag points of a picture to new places with a StyleGAN generator.

Filters > DragGAN > DragGAN Drag...: each stroke of a path is one drag (first anchor = handle,
last anchor = target); the selection is the region that may change (none = the whole layer).
The daemon (`draggan serve`) does the work; the result becomes a new layer above the source,
in one undo step. A layer the daemon did not make (a photo) is first fitted by the daemon's
model (GAN inversion, an invert job whose progress shows in the progress bar). Filters > DragGAN >
New image from model... (also File > Create) makes a picture from a seed to drag on.

Runs in GIMP's own Python with the standard library and gi only. The HTTP calls run on a worker
thread that never calls GIMP; the main thread updates the progress bar and touches the image
only after the daemon has answered, so GIMP's Cancel (which kills this process) leaves the image
as it was, and draggan_watchdog.py cancels the job on the daemon.
"""
import os
import sys
import tempfile
import threading

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import draggan_logic as logic  # noqa: E402
from draggan_client.client import DEFAULT_URL, DaemonClient, DaemonError, normalize_url  # noqa: E402
from draggan_client.pngcodec import PngError, png_size  # noqa: E402
from draggan_client import workflow  # noqa: E402
from draggan_watchdog import Watchdog  # noqa: E402

DRAG_PROC = "python-fu-draggan-drag"
NEW_PROC = "python-fu-draggan-new-image"
MENU = "<Image>/Filters/DragGAN"
TOKEN_ENV = "DRAGGAN_TOKEN"
URL_ENV = "DRAGGAN_URL"
RW = GObject.ParamFlags.READWRITE


def _error(procedure, message, calling=False):
    status = Gimp.PDBStatusType.CALLING_ERROR if calling else Gimp.PDBStatusType.EXECUTION_ERROR
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def _failed(procedure, exc):
    """End the progress bar and answer with the message the user should see for `exc`."""
    Gimp.progress_end()
    if isinstance(exc, logic.PluginError):
        return _error(procedure, "DragGAN: " + exc.message, exc.calling)
    if isinstance(exc, workflow.WorkflowError):
        return _error(procedure, "DragGAN: " + str(exc))
    if isinstance(exc, DaemonError):
        return _error(procedure, "DragGAN: " + logic.friendly(exc.message, exc.code))
    if isinstance(exc, PngError):
        return _error(procedure, "DragGAN: " + str(exc))
    # a bug or an unexpected answer
    return _error(procedure, "DragGAN: unexpected error ({}: {}); please report it".format(type(exc).__name__, exc))


def _gimp_minor():
    try:
        return tuple(int(v) for v in Gimp.version().split(".")[:2])
    except ValueError:
        return (3, 0)


def _client(config):
    token = (config.get_property("token") or "").strip() or os.environ.get(TOKEN_ENV) or None
    return DaemonClient(config.get_property("server-url"), token=token, timeout=30.0, work_timeout=600.0)


def _show_dialog(procedure, config, title, fields, advanced=()):
    """GimpUi.ProcedureDialog with the given fields (and an Advanced expander); False on Cancel."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=title)
    try:
        if advanced:
            dialog.fill_box("advanced-box", list(advanced))
            dialog.get_label("advanced-label", "Advanced", False, False)
            dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
            dialog.fill(list(fields) + ["advanced"])
        else:
            dialog.fill(list(fields))
    except Exception as e:  # an older or newer GimpUi without these builders: show everything flat
        print("DragGAN: dialog without the Advanced section ({})".format(e), file=sys.stderr)
        dialog.fill(list(fields) + list(advanced))
    ok = dialog.run()
    dialog.destroy()
    return ok


def _run_in_thread(work, on_status=None):
    """Run work(state) on a thread (no GIMP calls in there) while the main thread keeps GIMP's progress
    bar moving; returns work's result or raises its exception."""
    state = {"status": None}
    box = {}

    def target():
        try:
            box["result"] = work(state)
        except BaseException as e:  # handed back to the main thread
            box["error"] = e

    thread = threading.Thread(target=target, name="draggan-http", daemon=True)
    thread.start()
    shown = None
    while thread.is_alive():
        thread.join(0.1)
        status = state.get("status")
        if status is not None and on_status is not None:
            key = (status.get("job_id"), status.get("state"), status.get("step"))
            if key != shown:
                shown = key
                on_status(status)
        elif status is None:
            Gimp.progress_pulse()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _show_progress(status):
    shown = workflow.progress(status)
    Gimp.progress_set_text("DragGAN: " + shown.text)
    Gimp.progress_update(shown.fraction)


def _load_png_layer(image, png, name):
    """A layer (not yet inserted) of PNG bytes, decoded by GIMP's own PNG loader."""
    fd, path = tempfile.mkstemp(prefix="draggan-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path))
    finally:
        os.remove(path)
    if layer is None:
        raise logic.PluginError("GIMP could not read the picture the daemon sent")
    layer.set_name(name)
    if not layer.has_alpha():
        layer.add_alpha()
    return layer


def _attach(target, record):
    flags = Gimp.PARASITE_PERSISTENT | Gimp.PARASITE_UNDOABLE
    target.attach_parasite(Gimp.Parasite.new(logic.PARASITE, flags, record.to_json().encode("utf-8")))


def _read_record(target):
    parasite = target.get_parasite(logic.PARASITE)
    return workflow.SessionRecord.from_json(bytes(parasite.get_data())) if parasite is not None else None


# ----------------------------------------------------------------------------- drag

def _drag_path(image, config):
    path = config.get_property("path")
    if path is None:
        selected = image.get_selected_paths()
        path = selected[0] if selected else image.get_path_by_name(logic.DRAG_PATH_NAME)
    if path is None:
        paths = image.get_paths()
        path = paths[0] if len(paths) == 1 else None
    if path is None:
        raise logic.PluginError(
            "no drags: draw a path with the Paths tool (click the point to move, then where it should go; "
            "Shift-click to start the next drag), select it in the Paths dialog or name it '{}', and run "
            "DragGAN Drag again".format(logic.DRAG_PATH_NAME), calling=True)
    strokes = [path.stroke_get_points(sid)[1] for sid in path.get_strokes()]
    return logic.drags_from_strokes(strokes, path.get_name())


def _selection(image, layer, width, height):
    if Gimp.Selection.is_empty(image):
        return None
    iw, ih = image.get_width(), image.get_height()
    plane = bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(0, 0, iw, ih), 1.0, "Y u8",
                                                        Gegl.AbyssPolicy.NONE))
    _, ox, oy = layer.get_offsets()
    return logic.crop_plane(plane, iw, ih, ox, oy, width, height)


def run_drag(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        fields = ["server-url", "token", "model", "steps", "mask-lambda", "keep-outside"]
        if _gimp_minor() >= (3, 2):
            fields.append("path")  # GIMP 3.0 has no widget for a path argument
        if not _show_dialog(procedure, config, "DragGAN Drag", fields,
                            ["learning-rate", "r1", "r2", "w-layers", "points", "inversion-w-steps",
                             "inversion-wplus-steps", "inversion-tuning-steps", "feather"]):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        layer = _drag(procedure, image, drawables, config)
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return _failed(procedure, e)
    Gimp.progress_end()
    Gimp.displays_flush()
    return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                            GObject.Value(Gimp.Layer, layer)])


def _drag(procedure, image, drawables, config):
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise logic.PluginError("select exactly one layer (the picture to drag) in the Layers dialog", True)
    source = drawables[0]
    width, height = source.get_width(), source.get_height()
    _, ox, oy = source.get_offsets()
    points = (config.get_property("points") or "").strip()
    drags = logic.drags_from_json(points) if points else _drag_path(image, config)
    drags = logic.to_layer(drags, ox, oy, width, height)
    mask = workflow.editable_mask(_selection(image, source, width, height), width, height)
    rgba = bytes(source.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "R'G'B'A u8",
                                         Gegl.AbyssPolicy.NONE))
    record, trusted = _read_record(source), True
    if record is None:  # e.g. a copy of a DragGAN layer: the daemon checks the pixels against the image's session
        record, trusted = _read_record(image), False
    settings = logic.drag_settings(config.get_property("steps"), config.get_property("mask-lambda"),
                                   config.get_property("learning-rate"), config.get_property("r1"),
                                   config.get_property("r2"), config.get_property("w-layers"),
                                   config.get_property("feather"))
    invert = logic.invert_settings(config.get_property("inversion-w-steps"),
                                   config.get_property("inversion-wplus-steps"),
                                   config.get_property("inversion-tuning-steps"))
    edit = workflow.Edit(width, height, rgba, 4, drags, mask, settings,
                         model=(config.get_property("model") or "").strip() or None, invert=invert, trusted=trusted)
    client = _client(config)

    def work(state):
        watchdog = Watchdog(client.url, client.token)  # cancels our jobs (inversion, drag) if GIMP kills us
        try:
            return workflow.run(client, record, edit, on_job=watchdog.job,
                                on_status=lambda s: state.__setitem__("status", s))
        finally:
            watchdog.done()

    Gimp.progress_init("DragGAN: sending the drag to {}".format(client.url))
    done = _run_in_thread(work, _show_progress)
    png, final = done.png, done.final
    if png_size(png) != (width, height):
        raise logic.PluginError("the daemon sent a {}x{} picture for a {}x{} layer".format(
            *png_size(png), width, height))
    # Only now, with the daemon's answer in hand, is the image touched: one undo step.
    Gimp.progress_set_text("DragGAN: adding the result layer")
    keep_outside = config.get_property("keep-outside") and mask is not None
    image.undo_group_start()
    try:
        layer = _load_png_layer(image, png, logic.layer_name(final, done.psnr))
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(ox, oy)
        if keep_outside:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        _attach(layer, done.record)
        _attach(image, done.record)
        layer.update(0, 0, width, height)
    finally:
        image.undo_group_end()
    return layer


# ----------------------------------------------------------------------------- new image

def run_new_image(procedure, config, data):
    interactive = config.get_property("run-mode") == Gimp.RunMode.INTERACTIVE
    if interactive and not _show_dialog(procedure, config, "DragGAN: New image from model",
                                        ["server-url", "token", "model", "seed", "psi"]):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    client = _client(config)
    model = (config.get_property("model") or "").strip() or None
    seed, psi = config.get_property("seed"), config.get_property("psi")
    Gimp.progress_init("DragGAN: generating seed {} on {}".format(seed, client.url))
    try:
        made = _run_in_thread(lambda state: client.generate(seed=seed, model=model, psi=psi))
        image = Gimp.Image.new(made["width"], made["height"], Gimp.ImageBaseType.RGB)
        image.undo_disable()
        layer = _load_png_layer(image, made["image"], "DragGAN {} seed {}".format(made.get("model") or "", seed))
        image.insert_layer(layer, None, 0)
        record = workflow.SessionRecord(made["session_id"], client.url, made["width"], made["height"],
                                        workflow.GENERATED, model=made.get("model") or model, seed=seed, psi=psi)
        _attach(layer, record)
        _attach(image, record)
        image.undo_enable()
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return _failed(procedure, e)
    Gimp.progress_end()
    if interactive:
        Gimp.Display.new(image)
        Gimp.displays_flush()
    return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                            GObject.Value(Gimp.Image, image)])


# ----------------------------------------------------------------------------- registration

def _daemon_arguments(proc):
    default_url = normalize_url(os.environ.get(URL_ENV, ""))
    proc.add_string_argument("server-url", "Daemon _URL", "Address of `draggan serve` (default: $DRAGGAN_URL or "
                             + DEFAULT_URL + ")", default_url, RW)
    proc.add_string_argument("token", "Acc_ess token", "Access token of the daemon (empty: none, or $DRAGGAN_TOKEN)", "",
                             RW)


class DragGAN(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [DRAG_PROC, NEW_PROC]

    def do_create_procedure(self, name):
        if name == DRAG_PROC:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_drag, None)
            proc.set_image_types("RGB*")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
            proc.set_menu_label("DragGAN _Drag...")
            proc.add_menu_path(MENU)
            proc.set_documentation(
                "Drag points of a picture to new places with DragGAN",
                "Each stroke of the path (the chosen one, else the selected path, else the path named 'drags') is "
                "one drag: its first anchor is the handle, its last anchor the target. The selection is the region "
                "that may change (soft edges kept); no selection: the whole layer. 'points' (JSON "
                "[[hx,hy,tx,ty],...], image coordinates) replaces the path for scripts. A layer the daemon did not "
                "make is first fitted by 'model' (GAN inversion of the selected part; the daemon reuses it for "
                "the same layer and settings). The result is a new layer above the source, in one undo step; the "
                "source layer is not modified. Needs the DragGAN daemon (`draggan serve`).", name)
            proc.set_attribution("draggan-studio", "draggan-studio contributors", "2026")
            _daemon_arguments(proc)
            proc.add_path_argument("path", "P_ath", "Path whose strokes are the drags (empty: the selected path, "
                                   "or the path named 'drags')", True, RW)
            proc.add_string_argument("points", "Poi_nts (JSON)", "[[hx,hy,tx,ty],...] in image pixels; replaces "
                                     "the path", "", RW)
            proc.add_int_argument("steps", "Ste_ps", "Most optimisation steps", 1, 2000, 200, RW)
            proc.add_double_argument("mask-lambda", "_Mask strength", "How strongly the region outside the "
                                     "selection is kept", 0.0, 1000.0, 20.0, RW)
            proc.add_boolean_argument("keep-outside", "_Keep pixels outside the selection",
                                      "Give the result layer a mask from the selection", True, RW)
            proc.add_double_argument("learning-rate", "Learnin_g rate", "Step size (0: the model's default)",
                                     0.0, 1.0, 0.0, RW)
            proc.add_double_argument("r1", "Mot_ion radius", "r1 in model pixels (0: automatic)", 0.0, 64.0, 0.0,
                                     RW)
            proc.add_int_argument("r2", "Tracking ra_dius", "r2 in model pixels (0: automatic)", 0, 128, 0, RW)
            proc.add_int_argument("w-layers", "_W layers", "Latent layers optimised", 1, 64, 6, RW)
            proc.add_string_argument("model", "Model for other la_yers", "Model for layers the daemon did not "
                                     "make (empty: the image's DragGAN model, else the daemon's default)", "", RW)
            proc.add_int_argument("inversion-w-steps", "In_version W steps", "Steps fitting the model's W latent "
                                  "to a layer the daemon did not make (0: the daemon's default)", 0, 2000, 0, RW)
            proc.add_int_argument("inversion-wplus-steps", "Inversion W+ s_teps", "Steps of the W+ stage "
                                  "(-1: the daemon's default, 0: skip it)", -1, 2000, -1, RW)
            proc.add_int_argument("inversion-tuning-steps", "Inversion _fine-tuning steps", "Steps of pivotal tuning "
                                  "of the generator (-1: the daemon's default, 0: skip it)", -1, 2000, -1, RW)
            proc.add_int_argument("feather", "Edge _blend width", "On layers the daemon did not make: pixels over "
                                  "which the edit fades in inside the selection's edge", 0, 256, 8, RW)
            proc.add_layer_return_value("layer", "Layer", "The new layer with the result", False, RW)
            return proc
        if name == NEW_PROC:
            proc = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_new_image, None)
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            proc.set_menu_label("DragGAN: _New image from model...")
            proc.add_menu_path(MENU)
            proc.add_menu_path("<Image>/File/Create")
            proc.set_documentation(
                "A new image from a DragGAN model and a seed",
                "Asks the daemon for the picture of a seed; the image remembers the daemon session (a parasite), "
                "so DragGAN Drag can edit it at once.", name)
            proc.set_attribution("draggan-studio", "draggan-studio contributors", "2026")
            proc.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode, Gimp.RunMode.INTERACTIVE,
                                   RW)
            _daemon_arguments(proc)
            proc.add_string_argument("model", "_Model", "Model name on the daemon (empty: its default)", "", RW)
            proc.add_int_argument("seed", "See_d", "Random seed of the picture", 0, 2147483647, 42, RW)
            proc.add_double_argument("psi", "_Truncation (psi)", "Lower: more typical pictures", -1.0, 2.0, 0.7, RW)
            proc.add_image_return_value("image", "Image", "The new image", False, RW)
            return proc
        return None


if __name__ == "__main__":
    Gimp.main(DragGAN.__gtype__, sys.argv)
