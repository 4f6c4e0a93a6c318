"""The plug-in's model: connection, the selected layer's points, what each layer remembers about
its daemon state (history.py), the running job, Reset to original.

A QObject on the GUI thread. Network calls go through `daemon.py` (which wraps the shared
client module) on the worker thread; answers come back as plain data on the GUI thread, where
the document is read and written through kritadoc.py. The docker and the canvas tool only talk
to this object (and to its `local`, the managed local daemon: localdaemon.py). Besides drags it
follows model downloads (`download`), which run on the daemon beside them.
"""
import dataclasses
import time

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import align, daemon, history, jobspec, kritadoc
from .draggan_client import catalogue as cat
from .draggan_client import workflow
from .localdaemon import LocalDaemonControl
from .points import ANNOTATION_POINTS, PointList
from .settings import Settings
from .worker import Worker

POLL_MS = 250
LAYER_POLL_MS = 300  # how often the selected layer is looked at (Krita has no signal for it)
MAX_POLL_ERRORS = 8  # consecutive failed status polls before the job is given up


@dataclasses.dataclass
class Job:
    """The running drag: where it came from (document, the layer it runs on, what the layer remembered),
    what the daemon said so far, and the preview layer that becomes the result."""
    GENERATED, REAL = "generated", "layer"  # kind: a picture the daemon generated, or a layer it fitted
    START, INVERT, DRAG = "start", "invert", "drag"  # phase: finding the session, inverting, dragging

    doc: object
    source: object  # the layer the drag runs on (libkis Node)
    source_id: object  # its uniqueId (str)
    edit: workflow.Edit
    record: object  # the workflow.SessionRecord it starts from, or None
    model: object = None
    id: object = None  # the daemon's job id (str) once started
    phase: str = START
    kind: str = GENERATED
    started: object = None  # workflow.Started
    session: object = None  # the session id
    layer: object = None  # the preview layer, then the result layer
    preview_step: object = None
    stopping: bool = False
    cancelling: bool = False
    poll_errors: int = 0
    inversion: object = None  # dict: how the inversion ended (text, psnr, reason, quality, job_id)
    t0: float = dataclasses.field(default_factory=time.time)

    @property
    def w(self):
        return self.edit.width

    @property
    def h(self):
        return self.edit.height

    @property
    def mask(self):
        return self.edit.mask

    @property
    def n(self):
        return len(self.edit.drags)


@dataclasses.dataclass
class Download:
    """A model download the docker follows (the daemon's download job)."""
    model: str
    job_id: object = None  # str once the daemon answered
    status: object = None  # its last job status (dict)
    cancelling: bool = False
    poll_errors: int = 0


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
        self.catalogue = []  # every model the daemon knows (DaemonClient.catalogue())
        self.models = []  # those it can use now
        self.download = None  # the running Download
        self.download_progress = None  # workflow.Progress of the last download status (kept when it ends)
        self.progress_source = "drag"  # which progress the docker shows: the one that changed last
        self.job = None  # the running Job
        self.progress = None  # workflow.Progress of the running job's last status
        self.status = None  # that status (the daemon's job JSON)
        self.last_message = ("", False)
        self.last_result = None  # dict about the last finished job (tests read it)
        self.last_reset = None  # dict about the last Reset to original (tests read it)
        self._docs = []  # [(doc, PointList)]
        self._aligns = []  # [(doc, align.Alignment)]: the document's landmarks (Align mode)
        self.tool = None
        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(POLL_MS)
        self._poll_timer.timeout.connect(self._poll_job)
        self._polling = False
        self._download_timer = QTimer(self)
        self._download_timer.setInterval(POLL_MS)
        self._download_timer.timeout.connect(self._poll_download)
        self._download_polling = False
        self.local = LocalDaemonControl(self)
        self._layer_timer = QTimer(self)
        self._layer_timer.setInterval(LAYER_POLL_MS)
        self._layer_timer.timeout.connect(self._follow_active_layer)
        self._layer_timer.start()

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
        self.health, catalogue = answer
        self._set_catalogue(catalogue)
        self.state = self.CONNECTED
        self.state_message = "Connected: DragGAN daemon %s on %s" % (self.health.get("version", "?"),
                                                                    self.health.get("device", "?"))
        if not self.models:
            self.state_message += " - but no model is downloaded yet: choose one and press Download"
        self.connection_changed.emit()

    def _connect_failed(self, exc):
        self.state, self.state_message = self.ERROR, daemon.describe_error(exc, self.settings.url)
        self.health = {}
        self._set_catalogue([])
        self.connection_changed.emit()
        self.say(self.state_message, True)

    def _set_catalogue(self, catalogue):
        self.catalogue = list(catalogue or [])
        self.models = [m for m in self.catalogue if cat.usable(m)]

    # -- the local daemon (localdaemon.py reports here) -------------------------------------------------
    def use_local_daemon(self, url):
        """The local daemon listens at url: use it (loopback: no token) and connect."""
        self.settings.url, self.settings.token = url, ""
        self.connect_daemon()

    def local_daemon_starting(self):
        self.state = self.CONNECTING
        self.state_message = "Starting the local DragGAN daemon (the first start can take a minute)..."
        self.connection_changed.emit()
        self.say(self.state_message)

    def local_daemon_failed(self, text):
        """It could not start, or it died: the status light turns red, the message area says why."""
        self.state, self.state_message = self.ERROR, text.split("\n", 1)[0]
        self.health = {}
        self._set_catalogue([])
        self.connection_changed.emit()
        self.say(text, True)

    def local_daemon_stopped(self):
        self.state, self.state_message = self.DISCONNECTED, "The local daemon was stopped."
        self.health = {}
        self._set_catalogue([])
        self.connection_changed.emit()
        self.say(self.state_message)

    # -- model downloads ----------------------------------------------------------------------------
    def model_entry(self, name=None):
        return cat.entry_for(self.catalogue, self.settings.model if name is None else name)

    def start_download(self, name):
        """Download a catalogue model (the docker asked the artist to accept its licence first)."""
        if self.download is not None:
            self.say("The model %s is being downloaded; wait for it or cancel it first." % self.download.model, True)
            return False
        entry = self.model_entry(name)
        if not cat.can_download(entry):
            if entry is None:
                self.say("The daemon does not list a model called %s." % name, True)
            elif cat.usable(entry):
                self.say("The model %s is downloaded already." % name, True)
            else:
                self.say(cat.not_usable_message(entry), True)
            return False
        self.download = Download(name)
        self.download_progress = workflow.Progress(0.0, "Starting the download of %s..." % name, False)
        self.progress_source = "download"
        self.job_changed.emit()
        self.say("Downloading %s..." % name)
        self.worker.submit(daemon.download, (self.client(), name), self._download_started, self._download_failed)
        return True

    def _download_started(self, job):
        d = self.download
        if d is None:
            return
        d.job_id, d.status = job["job_id"], job
        self._show_download(job)
        if d.cancelling:
            self.worker.submit(daemon.cancel, (self.client(), d.job_id), None, self._failed)
        self._download_timer.start()

    def _download_failed(self, exc):
        d, self.download = self.download, None
        self._download_timer.stop()
        name = d.model if d is not None else "the model"
        self.download_progress = workflow.Progress(0.0, "The download of %s did not start." % name, True)
        self.job_changed.emit()
        self.say(daemon.describe_error(exc, self.settings.url), True)
        self.refresh_catalogue()

    def cancel_download(self):
        """Stop the download; the daemon keeps the part it has, and the next download goes on from there."""
        d = self.download
        if d is None:
            return
        d.cancelling = True
        self.say("Cancelling the download of %s..." % d.model)
        if d.job_id is not None:
            self.worker.submit(daemon.cancel, (self.client(), d.job_id), None, self._failed)

    def _poll_download(self):
        d = self.download
        if d is None or d.job_id is None or self._download_polling:
            return
        self._download_polling = True
        self.worker.submit(daemon.job_status, (self.client(), d.job_id), self._download_polled,
                           self._download_poll_failed)

    def _download_poll_failed(self, exc):
        self._download_polling = False
        d = self.download
        if d is None:
            return
        d.poll_errors += 1
        if d.poll_errors < MAX_POLL_ERRORS:
            return
        self.download = None
        self._download_timer.stop()
        self.say("Lost track of the download of %s: %s" % (d.model, daemon.describe_error(exc, self.settings.url)),
                 True)
        self.job_changed.emit()

    def _download_polled(self, status):
        self._download_polling = False
        d = self.download
        if d is None:
            return
        d.poll_errors, d.status = 0, status
        progress = self._show_download(status)
        if not progress.finished:
            return
        self.download = None
        self._download_timer.stop()
        state = status.get("state")
        if state == "done":
            self.say("Downloaded the model %s; it is selected." % d.model)
            self.refresh_catalogue(select=d.model)
        else:
            self.say(progress.text, state != "cancelled")
            self.refresh_catalogue()

    def _show_download(self, status):
        self.download_progress = workflow.progress(status)
        self.progress_source = "download"
        self.job_changed.emit()
        return self.download_progress

    def refresh_catalogue(self, select=None):
        def got(catalogue):
            self._set_catalogue(catalogue)
            if select is not None and cat.entry_for(self.catalogue, select) is not None:
                self.settings.model = select
                self.save_settings()
            self.connection_changed.emit()
        self.worker.submit(daemon.catalogue, (self.client(),), got, self._failed)

    # -- points: the selected layer's ---------------------------------------------------------------
    def points_for(self, doc):
        """The document's point list: it holds the points of the layer last followed (see _follow)."""
        if doc is None:
            return None
        for i, (d, pts) in enumerate(list(self._docs)):
            try:
                if kritadoc.same_document(d, doc):
                    return pts
            except RuntimeError:
                self._docs.remove((d, pts))
        pts = PointList(doc.width(), doc.height())
        pts.set_pairs(self._document_pairs(doc))
        self._docs.append((doc, pts))
        return pts

    def current_points(self):
        """The points of the active document's selected layer (what the overlay draws and a Run uses)."""
        try:
            doc = kritadoc.active_document()
            pts = self.points_for(doc)
            if pts is not None:
                self._follow(doc, pts)
            return pts
        except RuntimeError:
            return None

    def _document_pairs(self, doc):
        """The artist's points of the document: what every layer but a result layer shows."""
        pts = PointList(doc.width(), doc.height())
        text = kritadoc.read_annotation(doc, ANNOTATION_POINTS)
        if text:
            pts.load_json(text)
        return pts.pairs

    def _show_layer(self, doc, pts, uid):
        """Put the points the layer uid shows into the document's point list: a result layer's tracked
        handles (or the points edited on it), else the artist's own."""
        pairs = self.history(doc).shown_pairs(uid, None)
        pts.layer = uid
        pts.set_pairs(pairs if pairs is not None else self._document_pairs(doc))

    def _follow(self, doc, pts):
        """Switch the point list to the selected layer's points when another layer is selected (the
        artist picked a layer, an undo removed one); the docker and the overlay are told right after."""
        uid = kritadoc.layer_id(kritadoc.active_layer(doc))
        if uid == pts.layer:
            return False
        self._show_layer(doc, pts, uid)
        QTimer.singleShot(0, self._layer_switched)
        return True

    def _layer_switched(self):
        self.points_changed.emit()
        if self.tool is not None:
            self.tool.refresh()

    def _follow_active_layer(self):
        """Timer: Krita tells nothing when the selected layer changes, so look."""
        try:
            self.current_points()
        except Exception:  # noqa: BLE001 - a timer must never raise into Krita (its modal dialog)
            import traceback
            traceback.print_exc()

    def points_edited(self):
        doc = kritadoc.active_document()
        pts = self.points_for(doc)
        if doc is not None and pts is not None:
            hist = self.history(doc)
            if hist.set_points(pts.layer, pts.pairs):  # a result layer keeps its own
                self._save_history(doc, hist)
            else:
                kritadoc.write_annotation(doc, ANNOTATION_POINTS, pts.to_json())
        self.points_changed.emit()
        if self.tool is not None:
            self.tool.refresh()

    def reset_points(self):
        pts = self.current_points()
        if pts is not None:
            pts.clear()
            self.points_edited()

    # -- alignment: the document's eye and mouth landmarks (Align mode) --------------------------------
    def alignment_for(self, doc):
        """The document's landmarks, read from its annotation the first time."""
        if doc is None:
            return None
        for d, al in list(self._aligns):
            try:
                if kritadoc.same_document(d, doc):
                    return al
            except RuntimeError:
                self._aligns.remove((d, al))
        al = align.Alignment(doc.width(), doc.height())
        text = kritadoc.read_annotation(doc, align.ANNOTATION_ALIGN)
        if text:
            al.load_json(text)
        self._aligns.append((doc, al))
        return al

    def current_alignment(self):
        try:
            return self.alignment_for(kritadoc.active_document())
        except RuntimeError:
            return None

    def framing(self, model=None):
        """How the model's training pictures were framed (GET /models "framing"), or None if unknown."""
        entry = self.model_entry(model)
        return entry.get("framing") if isinstance(entry, dict) else None

    def alignment_square(self):
        """The square the active document's landmarks frame for the selected model (the overlay draws it)."""
        al = self.current_alignment()
        if al is None:
            return None
        return al.square(self.framing() or "ffhq")

    def alignment_edited(self):
        doc = kritadoc.active_document()
        al = self.alignment_for(doc)
        if doc is not None and al is not None:
            kritadoc.write_annotation(doc, align.ANNOTATION_ALIGN, al.to_json())
            problem = al.problem(self.framing())
            if problem is not None and al.complete():
                self.say(problem, True)
        self.points_changed.emit()
        if self.tool is not None:
            self.tool.refresh()

    def clear_alignment(self):
        al = self.current_alignment()
        if al is not None:
            al.clear()
            self.alignment_edited()
            self.say("Alignment cleared: a Run sends the selection's box (or the whole layer) as it is.")

    def set_align_mode(self, on):
        """Arm the Drag tool in Align mode (clicks place the landmarks), or back to points."""
        if self.tool is None:
            return
        if on:
            self.tool.set_mode(self.tool.ALIGN)
            self.tool.set_armed(True)
        elif self.tool.mode == self.tool.ALIGN:
            self.tool.set_armed(False)

    def tool_armed_changed(self, armed):
        self.armed_changed.emit(armed)

    # -- what the document and its layers remember --------------------------------------------------
    def session_record(self, doc):
        """The document's record: its first picture (generated, or the source's inversion). A layer the
        document has no entry for (an older document, a copy of the source) falls back to it, trusted
        only for the pixels it was made from."""
        return workflow.SessionRecord.from_json(kritadoc.read_annotation(doc, jobspec.ANNOTATION_SESSION))

    def history(self, doc):
        return history.LayerHistory.from_json(kritadoc.read_annotation(doc, history.ANNOTATION_LAYERS))

    def layer_entry(self, doc, node):
        return self.history(doc).get(kritadoc.layer_id(node))

    def layer_record(self, doc, node):
        """The record a Run on the layer starts from: the layer's own, else the document's."""
        entry = self.layer_entry(doc, node)
        return entry.record if entry is not None else self.session_record(doc)

    def _save_history(self, doc, hist):
        if kritadoc.document_open(doc):
            kritadoc.write_annotation(doc, history.ANNOTATION_LAYERS, hist.to_json())

    def _write_record(self, doc, record):
        if kritadoc.document_open(doc):
            kritadoc.write_annotation(doc, jobspec.ANNOTATION_SESSION, record.to_json())

    def _remember_source(self, doc, uid, record, fingerprint):
        if uid and kritadoc.document_open(doc):
            hist = self.history(doc)
            hist.remember_source(uid, record, fingerprint)
            self._save_history(doc, hist)

    # -- new image from the model ----------------------------------------------------------------
    def new_image(self, model=None, seed=None):
        model = model if model is not None else self.settings.model
        seed = self.settings.seed if seed is None else seed
        self.settings.update({"model": model, "seed": seed})
        self.save_settings()
        entry = self.model_entry(model) if model else None
        if entry is not None and not cat.usable(entry):
            self.say(cat.not_usable_message(entry), True)
            return False
        self.say("Generating seed %d with %s..." % (seed, model or "the default model"))
        req = jobspec.generate_request(model, seed)
        self.worker.submit(daemon.generate, (self.client(), req), self._generated,
                           lambda exc: self._generate_failed(exc, model))
        return True

    def _generate_failed(self, exc, model):
        if getattr(exc, "code", None) == "model_not_downloaded":  # the catalogue shown was out of date
            entry = self.model_entry(model) or {"name": model}
            self.say(cat.not_usable_message(dict(entry, downloaded=False)), True)
            self.refresh_catalogue()
            return
        self._failed(exc)

    def _generated(self, answer):
        w, h, bgra = answer["width"], answer["height"], answer["bgra"]
        model, seed = answer.get("model") or self.settings.model, answer.get("seed", self.settings.seed)
        doc, node = kritadoc.new_document(w, h, "DragGAN %s seed %s" % (model, seed), bgra,
                                          "%s seed %s" % (model, seed))
        record = jobspec.generated_record(answer, self.settings.url)
        self._write_record(doc, record)
        self._remember_source(doc, kritadoc.layer_id(node), record, record.fingerprint)
        self.points_for(doc)
        if self.job is None:  # the last drag's progress belongs to another picture
            self.progress = self.status = None
            self.job_changed.emit()
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
        self._follow(doc, pts)  # the selected layer's points, even before the timer noticed the layer
        w, h = doc.width(), doc.height()
        try:
            if err:
                raise jobspec.RequestError(err)
            edit = jobspec.edit_request(pts, self.settings.params, kritadoc.layer_pixels(source, w, h), w, h,
                                        kritadoc.selection_bytes(doc), self.settings.model)
            workflow.drag_request(edit)  # the handles must lie in the selection: said before anything is sent
            record = self.layer_record(doc, source)
            # the landmarks frame a real layer; a generated picture's session needs none (the workflow
            # uses them only when it sends the layer to be fitted)
            landmarks, note = align.align_for_run(self.alignment_for(doc),
                                                  self.framing((record.model if record else None)
                                                               or self.settings.model))
        except (jobspec.RequestError, workflow.WorkflowError, align.AlignError) as exc:
            self.say(str(exc), True)
            return False
        if landmarks is not None:
            edit = dataclasses.replace(edit, align=landmarks)
        self.job = Job(doc, source, kritadoc.layer_id(source), edit, record,
                       model=(record.model if record else None) or self.settings.model)
        self.progress = self.status = None
        self.progress_source = "drag"
        self.say("Starting the drag (%d point pair%s%s)...%s" % (
            self.job.n, "" if self.job.n == 1 else "s",
            ", aligned by the landmarks" if landmarks and (record is None or record.origin == workflow.REAL) else "",
            " " + note if note else ""))
        self.job_changed.emit()
        self.worker.submit(workflow.begin, (self.client(), record, edit), self._started, self._start_failed)
        return True

    def _started(self, started):
        job = self.job
        if job is None:
            return
        job.started, job.session, job.phase, job.id = started, started.session_id, started.phase, started.job_id
        job.kind = Job.REAL if started.real else Job.GENERATED
        job.model = started.model or job.model
        if kritadoc.document_open(job.doc):
            kind = "invert" if job.phase == Job.INVERT else "drag"
            job.layer = kritadoc.add_layer_above(job.doc, job.source, workflow.preview_layer_name({"kind": kind}))
        if job.phase == Job.INVERT:
            self.say("Inverting the layer: the daemon fits %s into the model first%s..." % (
                "the selection" if job.edit.mask is not None else "the layer",
                " (reusing the inversion that is still running)" if started.reused else ""))
        else:
            self.say("Dragging (%d point pair%s)..." % (job.n, "" if job.n == 1 else "s"))
        self._send_pending(job)
        self._poll_timer.start()

    def _send_pending(self, job):
        """A Stop or Cancel pressed before the daemon named the job is sent now."""
        if job.cancelling:
            self.worker.submit(daemon.cancel, (self.client(), job.id), None, self._failed)
        elif job.stopping:
            self.worker.submit(daemon.stop, (self.client(), job.id), None, self._failed)

    def _start_failed(self, exc):
        job = self.job
        if job is not None and job.layer is not None:  # a drag after the inversion: not started
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
        job.stopping = True
        self.say("Stopping the inversion (keeping the best so far)..." if job.phase == Job.INVERT
                 else "Stopping after the current step...")
        if job.id is not None:
            self.worker.submit(daemon.stop, (self.client(), job.id), None, self._failed)

    def cancel(self):
        """End the job without a result: a drag's session goes back to before it; an inversion's
        session is dropped."""
        job = self.job
        if job is None:
            return
        job.cancelling = True
        self.say("Cancelling...")
        if job.id is not None:
            self.worker.submit(daemon.cancel, (self.client(), job.id), None, self._failed)

    def _poll_job(self):
        job = self.job
        if job is None or job.id is None or self._polling:
            return
        self._polling = True
        self.worker.submit(daemon.poll, (self.client(), job.id, job.preview_step, job.w, job.h),
                           self._polled, self._poll_failed)

    def _poll_failed(self, exc):
        self._polling = False
        job = self.job
        if job is None:
            return
        job.poll_errors += 1
        if job.poll_errors < MAX_POLL_ERRORS and self._poll_timer.isActive():
            return  # a slow or briefly unreachable daemon: keep polling
        self._poll_timer.stop()
        self._finish(None, daemon.describe_error(exc, self.settings.url))

    def _polled(self, answer):
        self._polling = False
        job = self.job
        if job is None:
            return
        job.poll_errors = 0
        status, preview = answer
        self.status, self.progress = status, workflow.progress(status)
        self.progress_source = "drag"
        open_doc = kritadoc.document_open(job.doc)
        pts = self.points_for(job.doc) if open_doc else None
        if (pts is not None and pts.layer in (job.source_id, kritadoc.layer_id(job.layer)) and status.get("handles")
                and status.get("kind", "drag") == "drag"):
            pts.set_handles([list(p) for p in status["handles"]])  # shown while it runs, not stored
        if preview is not None and open_doc and job.layer is not None:
            job.preview_step = preview["step"]
            # a layer session's previews are the whole layer with the edit (or the reconstruction) in it
            pixels = preview["bgra"] if job.kind == Job.REAL else jobspec.result_layer_pixels(preview["bgra"],
                                                                                               job.mask)
            kritadoc.write_layer(job.doc, job.layer, pixels, job.w, job.h)
            job.layer.setName(workflow.preview_layer_name(status))  # no undo step: libkis renames in place
        if self.tool is not None:
            self.tool.status_text = self.progress.text
            self.tool.refresh()
        self.job_changed.emit()
        if self.progress.finished:
            self._poll_timer.stop()
            if job.phase == Job.INVERT:
                self._inverted(job)
            elif status.get("state") == "done":
                self.worker.submit(daemon.finish, (self.client(), job.started, status, job.record, job.edit),
                                   self._got_result, self._poll_failed)
            else:
                self._finish(None, self.progress.text)

    def _inverted(self, job):
        """The inversion ended: drag now (done, also when stopped early), else give up. The layer's
        session is remembered first, so a later Run reuses the inversion even if this drag fails."""
        status, text = self.status, self.progress.text
        job.inversion = {"text": text, "psnr": self.progress.psnr, "reason": status.get("reason"),
                         "quality": (status.get("result") or {}).get("quality"), "job_id": job.id}
        if status.get("state") != "done" or job.cancelling:
            self._finish(None, text)
            return
        # the source's pixels and their fitted first state: every Run on the source starts from there
        record = workflow.real_record(self.settings.url, dataclasses.replace(job.started, inversion=status), job.edit)
        self._write_record(job.doc, record)
        self._remember_source(job.doc, job.source_id, record, job.edit.fingerprint())
        if not kritadoc.document_open(job.doc):
            self._finish(None, "The document was closed before the drag could start.")
            return
        job.phase, job.id, job.stopping, job.preview_step = Job.DRAG, None, False, None
        if job.layer is not None:
            job.layer.setName(workflow.preview_layer_name({"kind": "drag"}))
        self.say("%s. Dragging (%d point pair%s)..." % (text, job.n, "" if job.n == 1 else "s"))
        client, started, edit = self.client(), job.started, job.edit
        self.worker.submit(lambda: workflow.start_drag(client, started, edit, inversion=status), (),
                           self._drag_started, self._start_failed)

    def _drag_started(self, started):
        job = self.job
        if job is None:
            return
        job.started, job.id = started, started.job_id
        self.progress = self.status = None
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
        open_doc = kritadoc.document_open(job.doc)
        done, bgra = result if result is not None else (None, None)
        text = self.progress.text if self.progress is not None else "Done"
        base = {"inversion": job.inversion, "session": job.session, "kind": job.kind,
                "from_state": (self.status or {}).get("from_state"), "source_id": job.source_id}
        if error is not None or result is None:
            if job.layer is not None and open_doc:
                kritadoc.remove_layer(job.layer)
            cancelled = self.status is not None and self.status.get("state") == "cancelled"
            self.last_result = dict(base, ok=False, error=error, cancelled=cancelled)
            self.say(error or "The drag failed.", not cancelled)
        elif job.kind == Job.REAL and not done.changed:
            if job.layer is not None and open_doc:
                kritadoc.remove_layer(job.layer)
            self.last_result = dict(base, ok=True, layer=None, text=text, seconds=time.time() - job.t0, changed=None)
            self.say("%s, but no pixel changed: no layer added." % text)
        else:
            name = workflow.result_layer_name(done.final, done.psnr)
            changed = done.changed
            if job.kind == Job.REAL:  # the full-size result, only its changed rectangle needs pixels
                pixels = jobspec.changed_layer_pixels(bgra, job.w, job.h, changed)
            else:
                pixels = jobspec.result_layer_pixels(bgra, job.mask)
            uid = None
            if open_doc:
                layer = job.layer or kritadoc.add_layer_above(job.doc, job.source, name)
                kritadoc.write_layer(job.doc, layer, pixels, job.w, job.h)
                layer.setName(name)
                uid = kritadoc.layer_id(layer)
                # the layer remembers the state that made it, for the pixels it holds (as Krita reads them back)
                hist = self.history(job.doc)
                hist.remember_result(uid, done.record,
                                     jobspec.layer_fingerprint(kritadoc.layer_pixels(layer, job.w, job.h), job.w,
                                                               job.h), job.source_id)
                self._save_history(job.doc, hist)
                kritadoc.select_layer(job.doc, layer)
            self.last_result = dict(base, ok=True, layer=name, layer_id=uid, text=text, seconds=time.time() - job.t0,
                                    changed=changed, state_id=done.record.state_id)
            self.say("%s. Result layer: %s" % (text, name))
        if open_doc:  # the live tracked handles were only shown: the selected layer's own points again
            self._show_layer(job.doc, self.points_for(job.doc), kritadoc.layer_id(kritadoc.active_layer(job.doc)))
        self.points_changed.emit()
        self.job_changed.emit()

    # -- reset to original ---------------------------------------------------------------------------
    def reset_to_original(self):
        """Forget the drags of the selected layer's session (a real layer keeps its inversion): the layer
        it came from is selected (it shows the original picture) with the artist's original handles, and
        the next drag starts from the original. Result layers stay in the document."""
        if self.job is not None:
            self.say("A drag is running; stop or cancel it before Reset to original.", True)
            return False
        doc = kritadoc.active_document()
        if doc is None:
            self.say("Open an image first.", True)
            return False
        node = kritadoc.active_layer(doc)
        uid = kritadoc.layer_id(node)
        entry = self.layer_entry(doc, node)
        record = entry.record if entry is not None else self.session_record(doc)
        if entry is None and record is not None and record.fingerprint != jobspec.layer_fingerprint(
                kritadoc.layer_pixels(node, doc.width(), doc.height()), doc.width(), doc.height()):
            record = None  # the document's picture, but this layer shows other pixels
        if record is None:
            self.say("Nothing to reset: this layer has no DragGAN picture yet (run a drag on it first).", True)
            return False
        self.say("Resetting to the original picture...")
        self.worker.submit(workflow.reset, (self.client(), record),
                           lambda new: self._reset_done(doc, uid, new, False),
                           lambda exc: self._reset_failed(doc, uid, record, exc))
        return True

    def _reset_failed(self, doc, uid, record, exc):
        if getattr(exc, "code", None) in workflow.GONE:  # the next drag regenerates or re-inverts anyway
            self._reset_done(doc, uid, history.lost_session_record(record), True)
            return
        self.say(daemon.describe_error(exc, self.settings.url), True)

    def _reset_done(self, doc, uid, record, lost):
        if not kritadoc.document_open(doc):
            return
        hist = self.history(doc)
        target_uid, moved = history.reset_target(hist, uid, lambda u: kritadoc.find_layer(doc, u) is not None)
        target = kritadoc.find_layer(doc, target_uid)
        if target is None:  # the layer went away meanwhile
            self.say("The layer to reset is gone.", True)
            return
        kept_result = not moved and hist.get(uid) is not None and hist.get(uid).is_result
        hist.remember_source(target_uid, record,
                             jobspec.layer_fingerprint(kritadoc.layer_pixels(target, doc.width(), doc.height()),
                                                       doc.width(), doc.height()))
        self._save_history(doc, hist)
        if moved:
            kritadoc.select_layer(doc, target)
        pts = self.points_for(doc)
        if pts is not None:
            self._show_layer(doc, pts, target_uid)  # the tracked handles go: the original ones show
        self.last_reset = {"layer_id": target_uid, "moved": moved, "lost": lost, "state_id": record.state_id}
        self.say(history.reset_message(record, lost=lost, moved_to_original=moved, kept_result=kept_result))
        self.points_changed.emit()
        if self.tool is not None:
            self.tool.refresh()

    def shutdown(self):
        self._poll_timer.stop()
        self._download_timer.stop()
        self._layer_timer.stop()
