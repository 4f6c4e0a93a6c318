"""Runs blocking calls (HTTP through the shared client, PNG decoding) off Krita's GUI thread.

Each task runs in a daemon thread and hands back plain data through a Qt signal; the queued
connection delivers it on the GUI thread, where the callbacks may touch libkis and widgets.
"""
import threading
import traceback

from PyQt5.QtCore import QObject, pyqtSignal


class Worker(QObject):
    _done = pyqtSignal(object, object, object)  # callback, result, error

    def __init__(self, parent=None):
        super(Worker, self).__init__(parent)
        self._done.connect(self._deliver)
        self.busy = 0

    def submit(self, fn, args=(), on_result=None, on_error=None):
        """Run fn(*args) in a thread; then on_result(result) or on_error(exception) on the GUI thread."""
        self.busy += 1

        def run():
            try:
                result, error = fn(*args), None
            except Exception as exc:  # noqa: BLE001 - everything is reported to the GUI thread
                result, error = None, exc
                exc.traceback_text = traceback.format_exc()
            self._done.emit((on_result, on_error), result, error)

        t = threading.Thread(target=run, name="draggan-worker", daemon=True)
        t.start()
        return t

    def _deliver(self, callbacks, result, error):
        self.busy -= 1
        on_result, on_error = callbacks
        try:
            if error is None:
                if on_result is not None:
                    on_result(result)
            elif on_error is not None:
                on_error(error)
        except Exception:  # noqa: BLE001 - never let Krita's modal exception dialog open
            traceback.print_exc()
