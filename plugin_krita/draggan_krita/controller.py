"""The plug-in's model: connection, per-document points and session, the running job.

A QObject on the GUI thread. Network calls go through `daemon.py` (which wraps the shared
client module) on the worker thread; answers come back as plain data on the GUI thread, where
the document is read and written through kritadoc.py. The docker and the canvas tool only talk
to this object.
"""
import time

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import daemon, imaging, jobspec, kritadoc
from .points import ANNOTATION_POINTS, PointList
from .settings import Settings
from .worker import Worker

POLL_MS = 250
MAX_POLL_ERRORS = 8  # consecutive failed status polls before the job is given up


class Controller(QObject):
    connection_changed = pyqtSignal()  # state, message, health, models
    points_changed = pyqtSignal()
    job_changed = pyqtSignal()  # progress (running/finished), message
    message = pyqtSignal(str, bool)  # text, is_error
    armed_changed = pyqtSignal(bool)

    DISCONNECTED, CONNECTING, CONNECTED, ERROR = "disconnected", "connecting", "connected", "error"

    def __init__(self):
        super(Controller, self).__init__()
        self.store = kritadoc.KritaSettingsStore()
        self.settings = Settings.load(self.store)
        self.worker = Worker(self)
        self.state = self.DISCONNECTED
        self.state_message = ""
        self.health = {}
        self.models = []
        self.job = None  # dict: id, doc, source, layer, mask, model, n, progress, preview_step, stopping
        self.progress = None
        self.last_message = ("", False)
        self.last_result = None  # dict about the last finished job (tests read it)
        self._docs = []  # [(doc, PointList)]
        self.tool = None
        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(POLL_MS)
        self._poll_timer.timeout.connect(self._poll_job)
        self._polling = False

    # -- messages --------------------------------------------------------------------------------
    def say(self, text, error=False):
        self.last_message = (text, error)
        self.message.emit(text, error)

    def client(self):
        return daemon.Daemon(self.settings.url, self.settings.token)

    def save_settings(self):
        self.settings.save(self.store)

    # -- connection --------------------------------------------------------------------------------
    def connect_daemon(self):
        self.save_settings()
        self.state, self.state_message = self.CONNECTING, "Connecting to %s..." % self.settings.url
        self.connection_changed.emit()
        self.worker.submit(daemon.check, (self.client(),), self._connected, self._connect_failed)

    def _connected(self, answer):
        self.health, self.models = answer
        self.state = self.CONNECTED
        self.state_message = "Connected: DragGAN daemon %s on %s" % (self.health.get("version", "?"),
                                                                    self.health.get("device", "?"))
        if not self.models:
            self.state_message += " - but it has no models; run 'draggan models download <name>' there"
        self.connection_changed.emit()

    def _connect_failed(self, exc):
        self.state, self.state_message = self.ERROR, daemon.describe_error(exc, self.settings.url)
        self.health, self.models = {}, []
        self.connection_changed.emit()
        self.say(self.state_message, True)

    # -- per-document points -----------------------------------------------------------------------
    def points_for(self, doc):
        if doc is None:
            return None
        for i, (d, pts) in enumerate(list(self._docs)):
            try:
                if kritadoc.same_document(d, doc):
                    return pts
            except RuntimeError:
                self._docs.remove((d, pts))
        pts = PointList(doc.width(), doc.height())
        text = kritadoc.read_annotation(doc, ANNOTATION_POINTS)
        if text:
            pts.load_json(text)
        self._docs.append((doc, pts))
        return pts

    def current_points(self):
        try:
            return self.points_for(kritadoc.active_document())
        except RuntimeError:
            return None

    def points_edited(self):
        doc = kritadoc.active_document()
        pts = self.points_for(doc)
        if doc is not None and pts is not None:
            kritadoc.write_annotation(doc, ANNOTATION_POINTS, pts.to_json())
        self.points_changed.emit()
        if self.tool is not None:
            self.tool.refresh()

    def reset_points(self):
        pts = self.current_points()
        if pts is not None:
            pts.clear()
            self.points_edited()

    def tool_armed_changed(self, armed):
        self.armed_changed.emit(armed)

    def session_info(self, doc):
        return jobspec.parse_session_info(kritadoc.read_annotation(doc, jobspec.ANNOTATION_SESSION))

    # -- new image from the model ----------------------------------------------------------------
    def new_image(self, model=None, seed=None):
        model = model if model is not None else self.settings.model
        seed = self.settings.seed if seed is None else seed
        self.settings.update({"model": model, "seed": seed})
        self.save_settings()
        self.say("Generating seed %d with %s..." % (seed, model or "the default model"))
        req = jobspec.generate_request(model, seed)
        self.worker.submit(daemon.generate, (self.client(), req), self._generated, self._failed)

    def _generated(self, answer):
        w, h, bgra = answer["width"], answer["height"], answer["bgra"]
        model, seed = answer.get("model") or self.settings.model, answer.get("seed", self.settings.seed)
        doc, node = kritadoc.new_document(w, h, "DragGAN %s seed %s" % (model, seed), bgra,
                                          "%s seed %s" % (model, seed))
        kritadoc.write_annotation(doc, jobspec.ANNOTATION_SESSION, jobspec.session_info_json(
            answer["session_id"], model, seed, w, h, self.settings.url))
        self.points_for(doc)
        self.say("New image: %s, seed %s (%dx%d). Arm the Drag tool and place points." % (model, seed, w, h))
        self.points_changed.emit()

    def _failed(self, exc):
        self.say(daemon.describe_error(exc, self.settings.url), True)

    # -- run / stop --------------------------------------------------------------------------------
    def running(self):
        return self.job is not None

    def run(self):
        if self.job is not None:
            self.say("A drag is already running; stop it first.", True)
            return False
        doc = kritadoc.active_document()
        if doc is None:
            self.say("Open an image first (or use 'New image from model').", True)
            return False
        err = kritadoc.check_color_mode(doc)
        source = doc.activeNode()
        if err is None and not kritadoc.is_paint_layer(source):
            err = "Select a paint layer to drag (the active layer is a %s)." % source.type()
        pts = self.points_for(doc)
        w, h = doc.width(), doc.height()
        try:
            if err:
                raise jobspec.RequestError(err)
            mask = jobspec.mask_from_selection(kritadoc.selection_bytes(doc), w, h)
            req = jobspec.drag_request(pts, self.settings.params, mask, w, h)
        except jobspec.RequestError as exc:
            self.say(str(exc), True)
            return False
        info = self.session_info(doc)
        layer_bgra = None
        if info is None or (info.get("width"), info.get("height")) != (w, h):
            # the daemon needs a session for this layer: made from the document's session when the
            # layer shows its picture at another size, else from the picture (needs inversion)
            layer_bgra = kritadoc.layer_pixels(source, w, h)
        self.job = {"id": None, "doc": doc, "source": source, "layer": None, "mask": mask, "w": w, "h": h,
                    "model": (info or {}).get("model") or self.settings.model, "n": len(req["handles"]),
                    "preview_step": None, "stopping": False, "t0": time.time(), "session": (info or {}).get("session_id")}
        self.progress = None
        self.say("Starting the drag (%d point pair%s)..." % (self.job["n"], "" if self.job["n"] == 1 else "s"))
        self.job_changed.emit()
        client, session = self.client(), self.job["session"]

        def start():  # on the worker thread: PNG encoding included
            png = jobspec.session_request(layer_bgra, w, h) if layer_bgra is not None else None
            return daemon.start_drag(client, session, png, req)
        self.worker.submit(start, (), self._started, self._start_failed)
        return True

    def _started(self, answer):
        job = self.job
        if job is None:
            return
        new_session = answer["session_id"] != job["session"]
        job["id"], job["session"] = answer["job_id"], answer["session_id"]
        if new_session and kritadoc.document_open(job["doc"]):
            old = self.session_info(job["doc"]) or {}
            kritadoc.write_annotation(job["doc"], jobspec.ANNOTATION_SESSION, jobspec.session_info_json(
                job["session"], job["model"], old.get("seed"), job["w"], job["h"], self.settings.url))
        if kritadoc.document_open(job["doc"]):
            job["layer"] = kritadoc.add_layer_above(job["doc"], job["source"], "DragGAN preview (running)")
        self._poll_timer.start()

    def _start_failed(self, exc):
        self.job = None
        self.say(daemon.describe_error(exc, self.settings.url), True)
        self.job_changed.emit()

    def stop(self):
        job = self.job
        if job is None or job["id"] is None:
            return
        job["stopping"] = True
        self.say("Stopping after the current step...")
        self.worker.submit(daemon.stop, (self.client(), job["id"]), None, self._failed)

    def _poll_job(self):
        job = self.job
        if job is None or job["id"] is None or self._polling:
            return
        self._polling = True
        self.worker.submit(daemon.poll, (self.client(), job["id"], job["preview_step"], job["w"], job["h"]),
                           self._polled, self._poll_failed)

    def _poll_failed(self, exc):
        self._polling = False
        job = self.job
        if job is None:
            return
        job["poll_errors"] = job.get("poll_errors", 0) + 1
        if job["poll_errors"] < MAX_POLL_ERRORS and self._poll_timer.isActive():
            return  # a slow or briefly unreachable daemon: keep polling
        self._poll_timer.stop()
        self._finish(None, daemon.describe_error(exc, self.settings.url))

    def _polled(self, answer):
        self._polling = False
        job = self.job
        if job is None:
            return
        job["poll_errors"] = 0
        status, preview = answer
        self.progress = jobspec.Progress(status)
        open_doc = kritadoc.document_open(job["doc"])
        pts = self.points_for(job["doc"]) if open_doc else None
        if pts is not None and self.progress.handles:
            pts.set_handles(self.progress.handles)
        if preview is not None and open_doc and job["layer"] is not None:
            job["preview_step"] = preview["step"]
            kritadoc.write_layer(job["doc"], job["layer"], jobspec.result_layer_pixels(preview["bgra"], job["mask"]),
                                 job["w"], job["h"])
        if self.tool is not None:
            self.tool.status_text = self.progress.text()
            self.tool.refresh()
        self.job_changed.emit()
        if self.progress.finished:
            self._poll_timer.stop()
            if self.progress.succeeded:
                self.worker.submit(daemon.result, (self.client(), job["id"], job["w"], job["h"]),
                                   self._got_result, self._poll_failed)
            else:
                self._finish(None, self.progress.text())

    def _got_result(self, answer):
        self._finish(answer, None)

    def _finish(self, result, error):
        job, self.job = self.job, None
        if self.tool is not None:
            self.tool.status_text = ""
            self.tool.refresh()
        if job is None:
            return
        open_doc = kritadoc.document_open(job["doc"])
        if error is not None or result is None:
            if job["layer"] is not None and open_doc:
                kritadoc.remove_layer(job["layer"])
            self.last_result = {"ok": False, "error": error}
            self.say(error or "The drag failed.", True)
        else:
            name = jobspec.result_layer_name(job["model"], job["n"])
            if open_doc:
                layer = job["layer"] or kritadoc.add_layer_above(job["doc"], job["source"], name)
                kritadoc.write_layer(job["doc"], layer, jobspec.result_layer_pixels(result["bgra"], job["mask"]),
                                     job["w"], job["h"])
                layer.setName(name)
                job["doc"].setActiveNode(layer)
                pts = self.points_for(job["doc"])
                if pts is not None:
                    kritadoc.write_annotation(job["doc"], ANNOTATION_POINTS, pts.to_json())
            text = self.progress.text() if self.progress is not None else "Done"
            self.last_result = {"ok": True, "layer": name, "text": text, "seconds": time.time() - job["t0"]}
            self.say("%s. Result layer: %s" % (text, name))
        self.points_changed.emit()
        self.job_changed.emit()

    def shutdown(self):
        self._poll_timer.stop()
