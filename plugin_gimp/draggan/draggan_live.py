"""What the artist sees while an interactive DragGAN Drag runs in GIMP: a small window with the
progress and two buttons, Stop and keep and Cancel, and a preview layer above the source that
follows the daemon's previews (the fit of a plain layer while it is inverted, then the drag).

Why a window of its own instead of GIMP's progress bar: GIMP's Cancel there kills the plug-in
process, which would leave the preview layer behind; this window's Cancel ends the job on the
daemon and takes the preview away, and Stop and keep (end the drag now, keep what it did) has no
counterpart in GIMP's progress. Scripts (non-interactive runs) keep GIMP's progress bar and get
no preview layer.

The preview layer is added, replaced and removed with the image's undo frozen, so it never shows
in the undo history: a drag stays one undo step (the result layer and its path).

Main thread only (GIMP and Gtk calls). The plug-in's HTTP worker thread only reads stop_event and
cancel_event; the main thread hands statuses and preview PNGs to show_status and show_preview.
"""
import threading

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, Gtk  # noqa: E402

from draggan_client import workflow  # noqa: E402

TITLE = "DragGAN: "  # every title of the window starts so (tests find the window by it)


class LiveDrag:
    """The window and the preview layer of one interactive drag.

    load_layer(png, name) -> a layer not yet in the image (draggan.py's PNG loader)."""

    def __init__(self, image, source, load_layer):
        self.image, self.source, self.load_layer = image, source, load_layer
        self.stop_event, self.cancel_event = threading.Event(), threading.Event()
        self.preview = None
        self.window = self._window()

    @property
    def cancelled(self):
        return self.cancel_event.is_set()

    def _window(self):
        window = Gtk.Window(title=TITLE + "starting the drag")
        window.set_default_size(460, -1)
        window.set_keep_above(True)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        box.set_border_width(12)
        self.label = Gtk.Label(label="Sending the drag to the daemon...")
        self.label.set_xalign(0.0)
        self.label.set_line_wrap(True)
        self.bar = Gtk.ProgressBar()
        buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        self.stop_button = Gtk.Button.new_with_mnemonic("_Stop and keep")
        self.stop_button.set_tooltip_text("End the drag now and add what it did so far as the result layer")
        self.stop_button.connect("clicked", lambda _button: self._stop())
        cancel = Gtk.Button.new_with_mnemonic("_Cancel")
        cancel.set_tooltip_text("End the drag and leave the image as it was")
        cancel.connect("clicked", lambda _button: self.cancel_event.set())
        window.connect("delete-event", self._closed)
        buttons.pack_end(cancel, False, False, 0)
        buttons.pack_end(self.stop_button, False, False, 0)
        for widget in (self.label, self.bar, buttons):
            box.pack_start(widget, False, False, 0)
        window.add(box)
        try:  # over the image window, as GIMP's own plug-in dialogs (the window manager keeps it there)
            GimpUi.window_set_transient(window)
        except (AttributeError, TypeError):
            pass
        window.show_all()
        self.stop_button.grab_focus()
        return window

    def _closed(self, _window, _event):
        self.cancel_event.set()  # closing the window is Cancel
        return True  # the window stays until the daemon confirms; close() destroys it

    def _stop(self):
        self.stop_event.set()
        self.stop_button.set_sensitive(False)

    def pump(self):
        """Let Gtk draw the window and handle its buttons (the main thread otherwise waits on HTTP)."""
        while Gtk.events_pending():
            Gtk.main_iteration_do(False)

    def show_status(self, status):
        shown = workflow.progress(status)
        self.window.set_title(TITLE + shown.text)
        self.label.set_text(shown.text)
        self.bar.set_fraction(shown.fraction)
        if not self.stop_event.is_set():
            # during the inversion, Stop ends the fitting early and the drag starts from the fit so far
            fitting = status.get("kind") == "invert"
            self.stop_button.set_label("_Drag now with this fit" if fitting else "_Stop and keep")
            self.stop_button.set_sensitive(True)

    def show_preview(self, png, status):
        """Replace the preview layer with this picture (the source layer's size, at its place)."""
        layer = self.load_layer(png, workflow.preview_layer_name(status))
        _, ox, oy = self.source.get_offsets()
        self.image.undo_freeze()
        try:
            self._remove_preview()
            self.image.insert_layer(layer, self.source.get_parent(), self.image.get_item_position(self.source))
            layer.set_offsets(ox, oy)
            self.preview = layer
        finally:
            self.image.undo_thaw()
        Gimp.displays_flush()

    def _remove_preview(self):
        if self.preview is not None and self.preview.is_valid():
            self.image.remove_layer(self.preview)
        self.preview = None

    def close(self):
        """Take the preview layer away (outside the undo history) and close the window."""
        if self.preview is not None:
            self.image.undo_freeze()
            try:
                self._remove_preview()
            finally:
                self.image.undo_thaw()
            self.image.set_selected_layers([self.source])
            Gimp.displays_flush()
        self.window.destroy()
        self.pump()
