#!/usr/bin/env python3
"""DragGAN for GIMP 3: drag points of a picture to new places with a StyleGAN generator.

Filters > DragGAN > DragGAN Drag...: each stroke of a path is one drag (first anchor = handle,
last anchor = target); the selection is the region that may change (none = the whole layer).
The daemon (`draggan serve`) does the work; the result becomes a new layer above the source,
in one undo step. A layer the daemon did not make (a photo) is first fitted by the daemon's
model (GAN inversion, an invert job whose progress shows in the progress bar). Filters > DragGAN >
New image from model... (also File > Create) makes a picture from a seed to drag on.

Filters > DragGAN > Reset to original forgets a picture's drags on the daemon. Beside this file:
draggan_daemon_panel.py (Filters > DragGAN > Daemon...), draggan_live.py (an interactive drag's
window and preview layer), draggan_gimp.py (glue every procedure shares), draggan_logic.py (what
needs no GIMP), draggan_settings.py, draggan_watchdog.py and the carried draggan_client/.

Runs in GIMP's own Python with the standard library and gi only. The HTTP calls run on a worker
thread that never calls GIMP; the main thread shows the progress and touches the image (beyond an
interactive run's preview layer, kept out of the undo history) only after the daemon has answered,
so GIMP's Cancel (which kills this process) leaves the image as it was, and draggan_watchdog.py
cancels the job on the daemon.
"""
import os
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import draggan_daemon_panel as daemon_panel  # noqa: E402
import draggan_gimp as common  # noqa: E402
import draggan_logic as logic  # noqa: E402
import draggan_settings as stored_settings  # noqa: E402
from draggan_client import workflow  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402
from draggan_client.pngcodec import png_size  # noqa: E402
from draggan_watchdog import Watchdog  # noqa: E402

DRAG_PROC = "python-fu-draggan-drag"
NEW_PROC = "python-fu-draggan-new-image"
DAEMON_PROC = "python-fu-draggan-daemon"
RESET_PROC = "python-fu-draggan-reset"
MENU, RW = common.MENU, common.RW  # the menu every procedure is in; argument flags


def _gimp_minor():
    try:
        return tuple(int(v) for v in Gimp.version().split(".")[:2])
    except ValueError:
        return (3, 0)


def _client(config, interactive, timeout=30.0):
    """The daemon as the procedure's arguments say; an empty argument (and every interactive run, whose
    dialog has no address: GIMP would fill in an old remembered one) means the stored setting."""
    settings = common.stored()
    url_arg = "" if interactive else (config.get_property("server-url") or "")
    token_arg = "" if interactive else (config.get_property("token") or "")
    try:
        url = stored_settings.check_url(url_arg)
    except ValueError as e:
        raise logic.PluginError(str(e), calling=True) from None
    return DaemonClient(stored_settings.effective_url(url, settings), token=stored_settings.effective_token(
        token_arg, settings), timeout=timeout, work_timeout=600.0)


def _fill_model_choice(procedure, config, client, default_label):
    """Fill the dialog's model list (an aux choice argument) from the daemon's usable models, and select the
    model the procedure used last time if the daemon still has it. An unreachable daemon leaves only the
    default entry, and its reason in the list's tooltip."""
    choice = Gimp.param_spec_choice_get_choice(procedure.find_argument("model-choice"))
    probe = DaemonClient(client.url, token=client.token, timeout=common.PROBE_TIMEOUT_S)
    try:
        catalogue = common.run_in_thread(lambda state: probe.catalogue())
    except DaemonError as e:
        print("DragGAN: no model list from the daemon ({})".format(e), file=sys.stderr)
        catalogue = []
    known = set(choice.list_nicks())
    for number, (nick, label, help_text) in enumerate(logic.model_choices(catalogue, default_label)):
        if nick not in known:
            choice.add(nick, number, label, help_text)
    last = (config.get_property("model") or "").strip()
    config.set_property("model-choice", last if last and choice.is_valid(last) else logic.DEFAULT_MODEL)


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
        selected = [p for p in image.get_selected_paths() if p.get_name() != logic.ALIGN_PATH_NAME]
        path = selected[0] if selected else image.get_path_by_name(logic.DRAG_PATH_NAME)
    if path is None:
        paths = [p for p in image.get_paths() if p.get_name() != logic.ALIGN_PATH_NAME]
        path = paths[0] if len(paths) == 1 else None
    if path is None:
        raise logic.PluginError(
            "no drags: draw a path with the Paths tool (click the point to move, then where it should go; "
            "Shift-click to start the next drag), select it in the Paths dialog or name it '{}', and run "
            "DragGAN Drag again".format(logic.DRAG_PATH_NAME), calling=True)
    strokes = [path.stroke_get_points(sid)[1] for sid in path.get_strokes()]
    return logic.drags_from_strokes(strokes, path.get_name())


def _alignment(image, config, offset_x, offset_y):
    """How a layer the daemon did not make is framed for the model: the 'align' argument, else the path
    "DragGAN align" (four anchors on the eyes and mouth corners), else None (the selection's box)."""
    text = (config.get_property("align") or "").strip()
    if text:
        align = logic.align_from_json(text)
    else:
        path = image.get_path_by_name(logic.ALIGN_PATH_NAME)
        if path is None:
            return None
        align = logic.align_from_strokes([path.stroke_get_points(sid)[1] for sid in path.get_strokes()])
    return logic.align_to_layer(align, offset_x, offset_y)


def _selection(image, layer, width, height):
    if Gimp.Selection.is_empty(image):
        return None
    iw, ih = image.get_width(), image.get_height()
    plane = bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(0, 0, iw, ih), 1.0, "Y u8",
                                                        Gegl.AbyssPolicy.NONE))
    _, ox, oy = layer.get_offsets()
    return logic.crop_plane(plane, iw, ih, ox, oy, width, height)


def run_drag(procedure, run_mode, image, drawables, config, data):
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive:
        try:
            _fill_model_choice(procedure, config, _client(config, True),
                               "The image's model, else the daemon's default")
        except Exception as e:  # noqa: BLE001
            return common.failed(procedure, e)
        Gimp.progress_end()
        fields = ["model-choice", "preset", "steps", "mask-lambda", "keep-outside"]
        if _gimp_minor() >= (3, 2):
            fields.append("path")  # GIMP 3.0 has no widget for a path argument
        if not _show_dialog(procedure, config, "DragGAN Drag", fields,
                            ["learning-rate", "r1", "r2", "w-layers", "points", "inversion-w-steps",
                             "inversion-wplus-steps", "inversion-tuning-steps", "feather", "align",
                             "preview-every"]):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        config.set_property("model", logic.model_argument(config.get_property("model-choice")))
    try:
        layer = _drag(procedure, image, drawables, config, interactive)
    except Cancelled:
        Gimp.displays_flush()
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return common.failed(procedure, e)
    Gimp.progress_end()
    Gimp.displays_flush()
    return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                            GObject.Value(Gimp.Layer, layer)])


def _drag(procedure, image, drawables, config, interactive):
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
                                   config.get_property("feather"), config.get_property("preset"))
    preview_every = config.get_property("preview-every") if interactive else 0  # scripts get no preview layer
    settings.preview_every = preview_every
    invert = logic.invert_settings(config.get_property("inversion-w-steps"),
                                   config.get_property("inversion-wplus-steps"),
                                   config.get_property("inversion-tuning-steps"), preview_every)
    edit = workflow.Edit(width, height, rgba, 4, drags, mask, settings,
                         model=(config.get_property("model") or "").strip() or None, invert=invert, trusted=trusted,
                         align=_alignment(image, config, ox, oy))
    client = _client(config, interactive)
    done = _run_drag(image, source, client, record, edit, interactive)
    png, final = done.png, done.final
    if png_size(png) != (width, height):
        raise logic.PluginError("the daemon sent a {}x{} picture for a {}x{} layer".format(
            *png_size(png), width, height))
    # Only now, with the daemon's answer in hand, is the image touched: one undo step.
    Gimp.progress_set_text("DragGAN: adding the result layer")
    keep_outside = config.get_property("keep-outside") and mask is not None
    image.undo_group_start()
    try:
        layer = _load_png_layer(image, png, workflow.result_layer_name(final, done.psnr))
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(ox, oy)
        if keep_outside:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        _attach(layer, done.record)
        _attach(image, done.record)
        _add_tracked_path(image, done.record, ox, oy)
        layer.update(0, 0, width, height)
    finally:
        image.undo_group_end()
    return layer


class Cancelled(Exception):
    """The artist pressed Cancel in the drag's window: the daemon ended the job, nothing was added."""


def _run_drag(image, source, client, record, edit, interactive):
    """workflow.run on a worker thread. Interactive: the drag's own window (progress, Stop and keep,
    Cancel) and a preview layer (draggan_live); scripts: GIMP's progress bar."""
    live = None
    if interactive:
        import draggan_live  # Gtk: only where there is a display
        live = draggan_live.LiveDrag(image, source, lambda png, name: _load_png_layer(image, png, name))

    def work(state):
        watchdog = Watchdog(client.url, client.token)  # cancels our jobs (inversion, drag) if GIMP kills us
        try:
            return workflow.run(client, record, edit, on_job=watchdog.job,
                                on_status=lambda s: state.__setitem__("status", s),
                                on_preview=(lambda png, s: state.__setitem__("preview", (png, s))) if live else None,
                                stop_event=live.stop_event if live else None,
                                cancel_event=live.cancel_event if live else None)
        finally:
            watchdog.done()

    if live is None:
        Gimp.progress_init("DragGAN: sending the drag to {}".format(client.url))
        return common.run_in_thread(work, common.show_progress)
    try:
        return common.run_in_thread(work, live.show_status, live.show_preview, live.pump)
    except workflow.WorkflowError:
        if live.cancelled:
            raise Cancelled() from None
        raise
    finally:
        live.close()


def _add_tracked_path(image, record, ox, oy):
    """The path "DragGAN handles (tracked)": one stroke per drag from where tracking left its handle to
    its target, ready for the next drag (selected; an older one of that name is replaced)."""
    strokes = logic.tracked_strokes(record.handles, record.targets, ox, oy)
    if not strokes:
        return
    for old in image.get_paths():
        if old.get_name() == logic.TRACKED_PATH_NAME:
            image.remove_path(old)
    path = Gimp.Path.new(image, logic.TRACKED_PATH_NAME)
    image.insert_path(path, None, 0)
    path.set_visible(True)  # on the canvas: where each handle is now
    for points in strokes:
        path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, points, False)
    image.set_selected_paths([path])


# ----------------------------------------------------------------------------- reset to original

def run_reset(procedure, run_mode, image, drawables, config, data):
    """Filters > DragGAN > Reset to original: the selected layer's daemon session forgets its drags (a
    plain layer's fit is kept), the image's note names the original picture and the tracked-handles
    path goes. Result layers keep their own states: dragging one still goes on from it."""
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    try:
        message = _reset(image, drawables, config, interactive)
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return common.failed(procedure, e)
    Gimp.progress_end()
    Gimp.displays_flush()
    if interactive:
        Gimp.message("DragGAN: " + message)
    return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                            GObject.Value(GObject.TYPE_STRING, message)])


def _reset(image, drawables, config, interactive):
    layer = drawables[0] if len(drawables) == 1 and isinstance(drawables[0], Gimp.Layer) else None
    record = (_read_record(layer) if layer is not None else None) or _read_record(image)
    if record is None:
        raise logic.PluginError("this image has no DragGAN session yet, so there is nothing to reset: its next "
                                "drag starts from the picture as it is", calling=True)
    client = _client(config, interactive)
    Gimp.progress_init("DragGAN: resetting to the original picture")
    try:
        new = common.run_in_thread(lambda state: workflow.reset(client, record))
    except DaemonError as e:
        if e.code not in workflow.GONE:
            raise
        new, message = None, logic.RESET_SESSION_GONE
    else:
        message = logic.RESET_DONE
    image.undo_group_start()
    try:
        if new is not None:
            _attach(image, new)
        for path in image.get_paths():
            if path.get_name() == logic.TRACKED_PATH_NAME:
                image.remove_path(path)
    finally:
        image.undo_group_end()
    return message


def _reset_procedure(plugin, name):
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run_reset, None)
    proc.set_image_types("*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)
    proc.set_menu_label("_Reset to original")
    proc.add_menu_path(MENU)
    proc.set_documentation(
        "Forget the drags of this picture on the DragGAN daemon",
        "The daemon session of the selected layer (else of the image) goes back to the original picture: its "
        "drags are forgotten, a plain layer's fit (GAN inversion) is kept, and the path 'DragGAN handles "
        "(tracked)' is removed. Dragging the source layer then starts from the original; a result layer still "
        "goes on from its own edit.", name)
    proc.set_attribution("draggan-studio", "draggan-studio contributors", "2026")
    _daemon_arguments(proc)
    proc.add_string_return_value("message", "Message", "What happened, in words", "", RW)
    return proc


# ----------------------------------------------------------------------------- new image

def run_new_image(procedure, config, data):
    interactive = config.get_property("run-mode") == Gimp.RunMode.INTERACTIVE
    try:
        client = _client(config, interactive)
        if interactive:
            _fill_model_choice(procedure, config, client, "The daemon's default model")
            Gimp.progress_end()
    except Exception as e:  # noqa: BLE001
        return common.failed(procedure, e)
    if interactive:
        if not _show_dialog(procedure, config, "DragGAN: New image from model", ["model-choice", "seed", "psi"]):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        config.set_property("model", logic.model_argument(config.get_property("model-choice")))
    model = (config.get_property("model") or "").strip() or None
    seed, psi = config.get_property("seed"), config.get_property("psi")
    Gimp.progress_init("DragGAN: generating seed {} on {}".format(seed, client.url))
    try:
        made = common.run_in_thread(lambda state: client.generate(seed=seed, model=model, psi=psi))
        image = Gimp.Image.new(made["width"], made["height"], Gimp.ImageBaseType.RGB)
        image.undo_disable()
        layer = _load_png_layer(image, made["image"], "DragGAN {} seed {}".format(made.get("model") or "", seed))
        image.insert_layer(layer, None, 0)
        record = workflow.generated_record(made, client.url, seed, psi)
        _attach(layer, record)
        _attach(image, record)
        image.undo_enable()
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return common.failed(procedure, e)
    Gimp.progress_end()
    if interactive:
        Gimp.Display.new(image)
        Gimp.displays_flush()
    return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                            GObject.Value(Gimp.Image, image)])


# ----------------------------------------------------------------------------- registration

def _daemon_arguments(proc):
    """The daemon's address and token, for scripts: empty means the ones stored by Filters > DragGAN >
    Daemon... (else $DRAGGAN_URL / $DRAGGAN_TOKEN, else the default address and no token). Not in the
    dialogs: interactive runs always use the stored ones."""
    proc.add_string_argument("server-url", "Daemon _URL", "Address of `draggan serve` (empty: the one stored by "
                             "Filters > DragGAN > Daemon...)", "", RW)
    proc.add_string_argument("token", "Acc_ess token", "Access token of the daemon (empty: the stored one)", "",
                             RW)


def _model_choice_argument(proc, default_label):
    """The dialog's model list, filled from the daemon when the dialog opens; scripts leave it alone and
    pass the 'model' string. An ordinary argument, not an aux one: GIMP 3.0.4's Python binding frees the
    Gimp.Choice of an aux choice argument too early (the plug-in crashes at query time)."""
    choice = Gimp.Choice.new()
    choice.add(logic.DEFAULT_MODEL, 0, default_label, "")
    proc.add_choice_argument("model-choice", "Mod_el", "The dialog's model list (scripts: leave it and set "
                             "'model')", choice, logic.DEFAULT_MODEL, RW)


def _preset_argument(proc):
    """The drag's named settings (workflow.PRESETS, the daemon's): scripts pass the name, e.g. "studio".
    An ordinary choice argument, filled here once, for the reason _model_choice_argument gives. Its label
    is not "Preset": every letter of that word is already a mnemonic of the dialog or its buttons."""
    choice = Gimp.Choice.new()
    for number, (nick, label) in enumerate(workflow.PRESETS):
        choice.add(nick, number, label, "")
    proc.add_choice_argument("preset", "Drag st_yle", "The drag's preset (scripts: paper, quick, studio or move). "
                             + workflow.PRESETS_HELP, choice, logic.DEFAULT_PRESET, RW)


class DragGAN(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [DRAG_PROC, NEW_PROC, RESET_PROC, DAEMON_PROC]

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
                "source layer is not modified. After the drag, the path 'DragGAN handles (tracked)' (selected) "
                "runs from where tracking left each handle to its target, to go on from the result. Interactive "
                "runs show a preview layer and a window with Stop and keep (the result so far) and Cancel. Drag "
                "the result layer again to go on from it, the source to start from the original. 'preset' names "
                "how the drag runs: 'paper' (the default) is DragGAN as published, 'quick' and 'studio' land "
                "more drags, 'move' carries a whole part (see the argument). "
                "Needs the DragGAN daemon (`draggan serve`).", name)
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
            _model_choice_argument(proc, "The image's model, else the daemon's default")
            proc.add_int_argument("inversion-w-steps", "In_version W steps", "Steps fitting the model's W latent "
                                  "to a layer the daemon did not make (0: the daemon's default)", 0, 2000, 0, RW)
            proc.add_int_argument("inversion-wplus-steps", "Inversion W+ s_teps", "Steps of the W+ stage "
                                  "(-1: the daemon's default, 0: skip it)", -1, 2000, -1, RW)
            proc.add_int_argument("inversion-tuning-steps", "Inversion _fine-tuning steps", "Steps of pivotal tuning "
                                  "of the generator (-1: the daemon's default, 0: skip it)", -1, 2000, -1, RW)
            proc.add_int_argument("feather", "Edge _blend width", "On layers the daemon did not make: pixels over "
                                  "which the edit fades in inside the selection's edge", 0, 256, 8, RW)
            proc.add_string_argument("align", "Alignment (_JSON)", "Layers the daemon did not make: frame the "
                                     "subject as the model was trained, {\"left_eye\": [x, y], \"right_eye\": [x, y], "
                                     "\"mouth_left\": [x, y], \"mouth_right\": [x, y]} (faces) or {\"box\": {\"center\": "
                                     "[x, y], \"width\": w, \"angle\": degrees}} in image pixels (empty: the path "
                                     "'DragGAN align', else the selection's box)", "", RW)
            proc.add_int_argument("preview-every", "Preview _update every", "Interactive runs: steps between updates of "
                                  "the preview layer (0: no preview); scripts get no preview layer", 0, 1000, 5, RW)
            _preset_argument(proc)  # last: scripts that pass the arguments in order keep working
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
            _model_choice_argument(proc, "The daemon's default model")
            proc.add_int_argument("seed", "See_d", "Random seed of the picture", 0, 2147483647, 42, RW)
            proc.add_double_argument("psi", "_Truncation (psi)", "Lower: more typical pictures", -1.0, 2.0, 0.7, RW)
            proc.add_image_return_value("image", "Image", "The new image", False, RW)
            return proc
        if name == DAEMON_PROC:
            return daemon_panel.daemon_procedure(self, name)
        if name == RESET_PROC:
            return _reset_procedure(self, name)
        return None


if __name__ == "__main__":
    Gimp.main(DragGAN.__gtype__, sys.argv)
