"""The plug-in's model: connection, per-document points and session, the running job.

A QObject on the GUI thread. Network calls go through `daemon.py` (which wraps the shared
client module) on the worker thread; answers come back as plain data on the GUI thread, where
the document is read and written through kritadoc.py. The docker and the canvas tool only talk
to this object.
"""
import time

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import daemon, jobspec, kritadoc
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
        self.job = None  # dict (see _new_job): id, kind (generated/layer), phase (start/invert/drag), doc, ...
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
        if info is None or jobspec.is_layer_session(info):
            return self._run_layer(doc, source, info, pts, mask, req, w, h)
        layer_bgra = None
        if (info.get("width"), info.get("height")) != (w, h):
            # the layer shows the document's picture at another size: a session made from the document's
            layer_bgra = kritadoc.layer_pixels(source, w, h)
        self.job = self._new_job(doc, source, mask, w, h, info.get("model") or self.settings.model, req,
                                 info.get("session_id"), "generated")
        self.job_changed.emit()
        client, session = self.client(), self.job["session"]

        def start():  # on the worker thread: PNG encoding included
            png = jobspec.session_request(layer_bgra, w, h) if layer_bgra is not None else None
            return daemon.start_drag(client, session, png, req)
        self.worker.submit(start, (), self._started, self._start_failed)
        return True

    def _new_job(self, doc, source, mask, w, h, model, req, session, kind):
        job = {"id": None, "doc": doc, "source": source, "layer": None, "mask": mask, "w": w, "h": h,
               "model": model, "n": len(req["handles"]), "req": req, "preview_step": None, "stopping": False,
               "cancelling": False, "t0": time.time(), "session": session, "kind": kind, "phase": "start",
               "inversion": None}
        self.progress = None
        self.say("Starting the drag (%d point pair%s)..." % (job["n"], "" if job["n"] == 1 else "s"))
        return job

    def _run_layer(self, doc, source, info, pts, mask, req, w, h):
        """A layer the daemon did not generate: send it (with the selection's bounding box) for inversion,
        unless the document's saved session for it fits; then drag in layer pixels."""
        layer_bgra = kritadoc.layer_pixels(source, w, h)
        model = self.settings.model or None
        bbox = jobspec.selection_bbox(mask, w, h)
        invert = jobspec.invert_settings(self.settings.params)
        fingerprint = jobspec.layer_fingerprint(layer_bgra, w, h)
        saved = jobspec.reusable_layer_session(info, model, w, h, self.settings.url, bbox, fingerprint, invert)
        self.job = self._new_job(doc, source, mask, w, h, model, req, saved, "layer")
        self.job.update(bbox=bbox, invert=invert, fingerprint=fingerprint, asked_model=model)
        if saved is None:
            self.say("Sending the layer to the daemon (%s)..." % (model or "default model"))
        self.job_changed.emit()
        client, create = self.client(), jobspec.layer_session_request(model, bbox, invert)

        def start():
            return daemon.start_layer(client, saved, lambda: jobspec.session_request(layer_bgra, w, h), create, req)
        self.worker.submit(start, (), self._started, self._start_failed)
        return True

    def _remember_layer_session(self, job):
        if not kritadoc.document_open(job["doc"]):
            return
        old = self.session_info(job["doc"]) or {}
        region = job.get("region") or (old.get("region") if old.get("session_id") == job["session"] else None)
        kritadoc.write_annotation(job["doc"], jobspec.ANNOTATION_SESSION, jobspec.layer_session_info_json(
            job["session"], job["asked_model"], job["w"], job["h"], self.settings.url, jobspec.region_list(region),
            job["bbox"], job["fingerprint"], job["invert"]))

    def _started(self, answer):
        job = self.job
        if job is None:
            return
        new_session = answer["session_id"] != job["session"]
        job["session"] = answer["session_id"]
        job["phase"] = answer.get("phase", "drag")
        job["id"] = answer["invert_job"] if job["phase"] == "invert" else answer["job_id"]
        if answer.get("region") is not None:
            job["region"] = answer["region"]
        if job["kind"] == "layer":
            job["reused"] = answer.get("reused")
            job["model"] = answer.get("model") or job["model"]
            if job["phase"] == "drag":
                self._remember_layer_session(job)
        elif new_session and kritadoc.document_open(job["doc"]):
            old = self.session_info(job["doc"]) or {}
            kritadoc.write_annotation(job["doc"], jobspec.ANNOTATION_SESSION, jobspec.session_info_json(
                job["session"], job["model"], old.get("seed"), job["w"], job["h"], self.settings.url))
        if kritadoc.document_open(job["doc"]):
            name = "DragGAN preview (inverting)" if job["phase"] == "invert" else "DragGAN preview (running)"
            job["layer"] = kritadoc.add_layer_above(job["doc"], job["source"], name)
        if job["phase"] == "invert":
            self.say("Inverting the layer: the daemon fits %s into the model first%s..." % (
                "the selection" if job.get("bbox") else "the layer",
                " (reusing the inversion that is still running)" if job.get("reused") else ""))
        else:
            self.say("Dragging (%d point pair%s)..." % (job["n"], "" if job["n"] == 1 else "s"))
        self._send_pending(job)
        self._poll_timer.start()

    def _send_pending(self, job):
        """A Stop or Cancel pressed before the daemon named the job is sent now."""
        if job.get("cancelling"):
            self.worker.submit(daemon.cancel, (self.client(), job["id"]), None, self._failed)
        elif job.get("stopping"):
            self.worker.submit(daemon.stop, (self.client(), job["id"]), None, self._failed)

    def _start_failed(self, exc):
        job = self.job
        if job is not None and job["layer"] is not None:  # a drag after the inversion: not started
            self._finish(None, daemon.describe_error(exc, self.settings.url))
            return
        self.job = None
        self.say(daemon.describe_error(exc, self.settings.url), True)
        self.job_changed.emit()

    def stop(self):
        """Drag: end after the current step keeping the edit. Inversion: end it keeping the best
        result so far, then drag."""
        job = self.job
        if job is None:
            return
        job["stopping"] = True
        self.say("Stopping the inversion (keeping the best so far)..." if job["phase"] == "invert"
                 else "Stopping after the current step...")
        if job["id"] is not None:
            self.worker.submit(daemon.stop, (self.client(), job["id"]), None, self._failed)

    def cancel(self):
        """End the job without a result: a drag's session goes back to before it; an inversion's
        session is dropped."""
        job = self.job
        if job is None:
            return
        job["cancelling"] = True
        self.say("Cancelling...")
        if job["id"] is not None:
            self.worker.submit(daemon.cancel, (self.client(), job["id"]), None, self._failed)

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
        if pts is not None and self.progress.handles and self.progress.kind == "drag":
            pts.set_handles(self.progress.handles)
        if preview is not None and open_doc and job["layer"] is not None:
            job["preview_step"] = preview["step"]
            # a layer session's previews are the whole layer with the edit (or the reconstruction) in it
            pixels = preview["bgra"] if job["kind"] == "layer" else jobspec.result_layer_pixels(preview["bgra"],
                                                                                                job["mask"])
            kritadoc.write_layer(job["doc"], job["layer"], pixels, job["w"], job["h"])
        if self.tool is not None:
            self.tool.status_text = self.progress.text()
            self.tool.refresh()
        self.job_changed.emit()
        if self.progress.finished:
            self._poll_timer.stop()
            if job["phase"] == "invert":
                self._inverted(job)
            elif self.progress.succeeded:
                self.worker.submit(daemon.result, (self.client(), job["id"], job["w"], job["h"]),
                                   self._got_result, self._poll_failed)
            else:
                self._finish(None, self.progress.text())

    def _inverted(self, job):
        """The inversion ended: drag now (done, also when stopped early), else give up."""
        pr = self.progress
        job["inversion"] = {"text": pr.text(), "psnr": pr.psnr, "reason": pr.reason,
                            "quality": (pr.job.get("result") or {}).get("quality"), "job_id": job["id"]}
        if not pr.succeeded or job.get("cancelling"):
            self._finish(None, pr.text())
            return
        self._remember_layer_session(job)
        if not kritadoc.document_open(job["doc"]):
            self._finish(None, "The document was closed before the drag could start.")
            return
        job.update(phase="drag", id=None, stopping=False, preview_step=None)
        if job["layer"] is not None and kritadoc.document_open(job["doc"]):
            job["layer"].setName("DragGAN preview (running)")
        self.say("%s. Dragging (%d point pair%s)..." % (pr.text(), job["n"], "" if job["n"] == 1 else "s"))
        self.worker.submit(daemon.start_drag, (self.client(), job["session"], None, job["req"], True),
                           self._drag_started, self._start_failed)

    def _drag_started(self, answer):
        job = self.job
        if job is None:
            return
        job["id"] = answer["job_id"]
        self.progress = None
        self.job_changed.emit()
        self._send_pending(job)
        self._poll_timer.start()

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
            cancelled = self.progress is not None and self.progress.state == "cancelled"
            self.last_result = {"ok": False, "error": error, "cancelled": cancelled, "inversion": job["inversion"]}
            self.say(error or "The drag failed.", not cancelled)
        elif job["kind"] == "layer" and not (self.progress.job.get("changed") if self.progress else None):
            if job["layer"] is not None and open_doc:
                kritadoc.remove_layer(job["layer"])
            text = self.progress.text() if self.progress is not None else "Done"
            self.last_result = {"ok": True, "layer": None, "text": text, "seconds": time.time() - job["t0"],
                                "inversion": job["inversion"], "session": job["session"], "changed": None}
            self.say("%s, but no pixel changed: no layer added." % text)
        else:
            name = jobspec.result_layer_name(job["model"], job["n"])
            changed = self.progress.job.get("changed") if self.progress is not None else None
            if job["kind"] == "layer":  # the full-size result, only its changed rectangle needs pixels
                pixels = jobspec.changed_layer_pixels(result["bgra"], job["w"], job["h"], changed)
            else:
                pixels = jobspec.result_layer_pixels(result["bgra"], job["mask"])
            if open_doc:
                layer = job["layer"] or kritadoc.add_layer_above(job["doc"], job["source"], name)
                kritadoc.write_layer(job["doc"], layer, pixels, job["w"], job["h"])
                layer.setName(name)
                job["doc"].setActiveNode(layer)
                pts = self.points_for(job["doc"])
                if pts is not None:
                    kritadoc.write_annotation(job["doc"], ANNOTATION_POINTS, pts.to_json())
            text = self.progress.text() if self.progress is not None else "Done"
            self.last_result = {"ok": True, "layer": name, "text": text, "seconds": time.time() - job["t0"],
                                "inversion": job["inversion"], "session": job["session"], "changed": changed,
                                "kind": job["kind"]}
            self.say("%s. Result layer: %s" % (text, name))
        self.points_changed.emit()
        self.job_changed.emit()

    def shutdown(self):
        self._poll_timer.stop()
