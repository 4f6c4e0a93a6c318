"""One drag's conversation with the daemon, the same for every editor.

Both plug-ins read the editor (layer pixels, points, selection) and write it back (layers, notes on
the document); everything between (which daemon session shows the layer, whether it must be
regenerated or the layer inverted, the drag request, retries while the daemon is busy, what the
progress says, what the result layer remembers) lives here, so Krita and GIMP behave the same.

The conversation comes in steps, because Krita polls jobs from its GUI and GIMP waits on a worker
thread: begin() finds or makes the session and starts the first job (an inversion for a layer the
daemon must fit, else the drag); after an inversion, start_drag() starts the drag; finish() fetches
the result. run() chains them for callers that can block (GIMP, scripts).

Two kinds of sessions: a picture the daemon generated (its latent is known; after a daemon restart
it is regenerated from its seed) and any other layer, a "real" one, which the daemon fits into its
model by GAN inversion (after a restart it is inverted anew).

Standard library only, Python 3.8 syntax: carried by both plug-ins with the rest of draggan_client.
"""
import json
import math
import time
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .catalogue import format_size
from .client import DaemonError
from .pngcodec import encode_png

Point = Tuple[float, float]
Drag = Tuple[Point, Point]  # (handle, target) in layer pixels

GENERATED, DRAGGED, REAL = "generated", "drag", "layer"  # where a session's picture came from
BUSY = ("session_busy", "session_inverting")  # the session is still finishing a job: retry shortly
GONE = ("unknown_session",)
STATE_GONE = ("state_gone", "unknown_state")  # the daemon no longer keeps the state a layer was made from
NOT_THIS_PICTURE = ("different_picture", "inversion_unavailable")  # from_session refused the pixels
BUSY_PATIENCE_S = 10.0  # how long a drag start waits for a session that is finishing its last job
BUSY_RETRY_S = 0.2
STAGES = {"w": "W projection", "w+": "W+ projection", "pti": "pivotal tuning"}
REASONS = {"reached": "targets reached", "max_steps": "step limit", "stalled": "handles stopped moving",
           "stopped": "stopped"}
# The daemon's named drag settings (draggan_core/presets.py; tests check the two agree) as the editors
# offer them: the published algorithm first, the default.
PRESETS = (("paper", "Published DragGAN"),
           ("quick", "Quick (lands more drags, fastest to land)"),
           ("studio", "Studio (lands the most drags, slower steps)"),
           ("move", "Move (carries the whole part under the points)"))
PRESET_NAMES = tuple(name for name, _label in PRESETS)
PRESETS_HELP = ("Published DragGAN: the algorithm as in the paper. Quick: clicks snapped onto the part and larger "
                "steps while a handle is far: more drags land, in the least time. Studio: also coarser features "
                "for context, what lies far from the drag held still, and a single point first carries the "
                "whole part under it, and a drag that stalls goes on with the finer details free to change: "
                "the most drags land, but each step costs more (demo benchmark: Published 43%, Studio 90% of "
                "drags land). Move: first shifts the picture under every point with them, then drags as "
                "Quick: for moving a whole part (a head, an object) with several points; two points dragged "
                "alike move everything.")


class WorkflowError(Exception):
    """A message for the artist (the input is wrong, or the daemon's answer ends the edit)."""


# ----------------------------------------------------------------------------- what travels

@dataclass
class SessionRecord:
    """What a layer or document remembers about the daemon session that shows its picture.

    handles/targets are the session's state when the record was written: when the session has
    moved on since (another drag), it no longer shows this picture. state_id names the daemon's
    snapshot of the session that shows it (daemons since session states), so a drag starts from the
    picture the layer shows, whatever the session did since. region, selection_bbox,
    fingerprint, invert and align describe a real layer's session: the part of the layer it fits, the
    selection it was made for, a checksum of the pixels, the inversion settings and the alignment
    it was framed by (Edit.align)."""
    session_id: str
    url: str
    width: int
    height: int
    origin: str = GENERATED
    model: Optional[str] = None
    seed: Optional[int] = None
    psi: Optional[float] = None
    handles: List[List[float]] = field(default_factory=list)
    targets: List[List[float]] = field(default_factory=list)
    region: Optional[List[int]] = None
    selection_bbox: Optional[List[int]] = None
    fingerprint: Optional[str] = None
    invert: Optional[Dict[str, Any]] = None
    state_id: Optional[str] = None
    align: Optional[Dict[str, Any]] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> "Optional[SessionRecord]":
        """The record from its JSON (str or bytes), or None when there is none or it is unreadable;
        notes written by older plug-in versions (Krita's "daemon"/"kind"/"layer" keys) are read too."""
        if not text:
            return None
        try:
            data = json.loads(bytes(text).decode("utf-8") if isinstance(text, (bytes, bytearray)) else text)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
            return None
        data.setdefault("url", data.pop("daemon", None) or "")
        if data.pop("kind", None) == REAL:
            data["origin"] = REAL
        if isinstance(data.get("layer"), str):
            data["fingerprint"] = data.pop("layer")
        data["region"] = region_list(data.get("region"))
        known = {f.name for f in fields(cls)}
        try:
            record = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None
        return record if record.well_formed() else None

    def well_formed(self) -> bool:
        """Whether every field has its shape: a damaged or hand-edited note reads as no record, so
        the layer is sent as any other picture instead of breaking the drag."""
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def points(v: Any) -> bool:
            return isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and all(map(number, p)) for p in v)

        def box(v: Any) -> bool:
            return v is None or (isinstance(v, list) and len(v) == 4 and all(map(integer, v)))

        return (isinstance(self.session_id, str) and bool(self.session_id) and isinstance(self.url, str)
                and integer(self.width) and integer(self.height) and self.width > 0 and self.height > 0
                and self.origin in (GENERATED, DRAGGED, REAL) and isinstance(self.model, (str, type(None)))
                and (self.seed is None or integer(self.seed)) and (self.psi is None or number(self.psi))
                and points(self.handles) and points(self.targets) and box(self.region) and box(self.selection_bbox)
                and isinstance(self.fingerprint, (str, type(None))) and isinstance(self.invert, (dict, type(None)))
                and isinstance(self.align, (dict, type(None)))
                and (self.state_id is None or (isinstance(self.state_id, str) and bool(self.state_id))))


@dataclass
class DragSettings:
    """The drag's options; None lets the daemon choose (the model's defaults)."""
    steps: int = 200
    mask_lambda: Optional[float] = None
    preview_every: Optional[int] = None
    learning_rate: Optional[float] = None
    r1: Optional[float] = None
    r2: Optional[int] = None
    w_layers: Optional[int] = None
    feather: Optional[int] = None  # real layers: the blend width at the mask's edge
    preset: Optional[str] = None  # one of PRESETS' names; None: the daemon's default (the published one)

    def options(self) -> Dict[str, Any]:
        """The request's fields. The default preset is left out like None: a daemon from before presets
        refuses fields it does not know, and an artist who never chose one should still reach it."""
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "preset" and v == PRESETS[0][0])}


@dataclass
class Edit:
    """One drag as the editor read it: the layer (width x height, 8-bit RGBA or RGB pixels), the
    drags and the editable mask in layer pixels (None: the whole layer), and how to run it.

    model: the model for a real layer (None: the record's, else the daemon's default); invert: the
    inversion settings (invert_settings()); trusted: the record is the layer's own. An untrusted
    record (the image's or the document's) is trusted only where its fingerprint matches the
    layer's pixels; otherwise the daemon compares the pixels before a generated session is reused.
    align: how a real layer's subject is framed for the model (the `align` of DaemonClient.
    create_session, layer pixels); None fits the selection's box (or the whole layer) as it is."""
    width: int
    height: int
    pixels: bytes
    channels: int
    drags: List[Drag]
    mask: Optional[bytes] = None
    settings: DragSettings = field(default_factory=DragSettings)
    model: Optional[str] = None
    invert: Optional[Dict[str, Any]] = None
    trusted: bool = True
    align: Optional[Dict[str, Any]] = None

    def png(self) -> bytes:
        return encode_png(self.width, self.height, self.channels, self.pixels)

    def fingerprint(self) -> str:
        return layer_fingerprint(self.pixels, self.width, self.height)

    def box(self) -> Optional[List[int]]:
        return selection_box(self.mask, self.width, self.height, self.drags)


@dataclass
class Started:
    """A job the workflow started. phase "invert": the daemon is fitting the layer (wait for job_id,
    then start_drag()); "drag": the drag runs. real: the session is a real layer's; reused: its
    inversion was reused instead of made."""
    session_id: str
    job_id: str
    phase: str
    real: bool
    reused: bool = False
    model: Optional[str] = None
    region: Optional[List[int]] = None
    inversion: Optional[Dict[str, Any]] = None  # the inversion job's final status, once it ended


@dataclass
class Finished:
    """A drag that produced a picture: its final status, the result PNG (the whole layer for a real
    layer, changed only inside `changed`), the record the result layer keeps, and the model's fit of
    a real layer in dB."""
    final: Dict[str, Any]
    png: bytes
    record: SessionRecord
    real: bool
    psnr: Optional[float] = None

    @property
    def changed(self) -> Optional[Dict[str, int]]:
        return self.final.get("changed")


# ----------------------------------------------------------------------------- reading the editor

def editable_mask(selection: Optional[bytes], width: int, height: int) -> Optional[bytes]:
    """The mask to send from a layer-sized cut of the selection (0..255, soft values kept): None when
    there is no selection or it covers the whole layer, an error when it misses the layer."""
    if selection is None:
        return None
    selection = bytes(selection)
    if len(selection) != width * height:
        raise ValueError("mask has {} bytes, not {}x{}".format(len(selection), width, height))
    if not selection.strip(b"\x00"):
        raise WorkflowError("The selection does not touch this layer, so nothing could change. Select the region "
                            "the drag may edit, or select nothing to edit the whole layer.")
    if not selection.strip(b"\xff"):
        return None
    return selection


def selection_box(mask: Optional[bytes], width: int, height: int, drags: Sequence[Drag] = ()) -> Optional[List[int]]:
    """[x, y, width, height] of the mask's non-zero pixels grown to hold every drag point: the part of
    a real layer the daemon fits (it adds a margin). None without a mask (the whole layer)."""
    if mask is None:
        return None
    if len(mask) != width * height:
        raise ValueError("mask has {} bytes, not {}x{}".format(len(mask), width, height))
    x0, y0, x1, y1 = width, height, -1, -1
    for row in range(height):
        line = mask[row * width:(row + 1) * width]
        stripped = line.lstrip(b"\x00")
        if stripped:
            x0, x1 = min(x0, width - len(stripped)), max(x1, len(line.rstrip(b"\x00")) - 1)
            y0, y1 = min(y0, row), row
    for drag in drags:
        for x, y in drag:
            x0, x1 = min(x0, int(math.floor(x))), max(x1, int(math.ceil(x)))
            y0, y1 = min(y0, int(math.floor(y))), max(y1, int(math.ceil(y)))
    if x1 < 0:
        return None
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def layer_fingerprint(pixels: bytes, width: int, height: int) -> str:
    """A short checksum of a layer's pixels: a real layer's session is reused only for the same picture."""
    return "%dx%d:%08x" % (width, height, zlib.crc32(bytes(pixels)) & 0xFFFFFFFF)


def invert_settings(steps_w: Optional[int] = None, steps_wplus: Optional[int] = None,
                    steps_pti: Optional[int] = None, preview_every: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """The `invert` object of a real layer's session; None in a field is the daemon's default for the
    model and device, 0 skips the W+ or the tuning stage. None when everything is the default."""
    settings = {"steps_w": steps_w, "steps_wplus": steps_wplus, "steps_pti": steps_pti,
                "preview_every": preview_every}
    settings = {k: int(v) for k, v in settings.items() if v is not None}
    return settings or None


def drag_request(edit: Edit) -> Dict[str, Any]:
    """Keyword arguments of DaemonClient.drag: points rounded to 1/1000 px, the mask as a gray PNG.
    A handle outside the editable mask is refused (it could not move)."""
    if not edit.drags:
        raise WorkflowError("Place at least one handle and its target first.")
    if edit.mask is not None:
        for (x, y), _target in edit.drags:
            col, row = min(max(int(round(x)), 0), edit.width - 1), min(max(int(round(y)), 0), edit.height - 1)
            if edit.mask[row * edit.width + col] == 0:
                raise WorkflowError("The handle at ({:.0f}, {:.0f}) lies outside the selection; the selection is "
                                    "the region that may change, so it must hold the handles.".format(x, y))
    request = dict(edit.settings.options(),
                   handles=[[round(h[0], 3), round(h[1], 3)] for h, _ in edit.drags],
                   targets=[[round(t[0], 3), round(t[1], 3)] for _, t in edit.drags])
    if edit.mask is not None:
        request["mask_png"] = encode_png(edit.width, edit.height, 1, edit.mask)
    return request


# ----------------------------------------------------------------------------- the conversation

def begin(client: Any, record: Optional[SessionRecord], edit: Edit,
          sleep: Callable[[float], None] = time.sleep) -> Started:
    """Find or make the session that shows the layer and start its first job.

    A session the daemon still has is reused when it shows this picture; a generated picture whose
    session is gone (the daemon restarted) is regenerated from its seed; anything else is sent as a
    real layer, which the daemon fits by inversion (or finds among its sessions for the same pixels
    and settings)."""
    request = drag_request(edit)
    found = find_session(client, record, edit)
    if found is not None:
        session_id, from_state = found
        real = record is not None and record.origin == REAL and session_id == record.session_id
        if from_state is not None:
            request["from_state"] = from_state
        try:
            job = _drag(client, session_id, request, edit, real, sleep)
            return Started(session_id, job["job_id"], "drag", real, reused=real,
                           model=record.model if record else None, region=record.region if real else None)
        except DaemonError as exc:
            if exc.code not in GONE + STATE_GONE:  # lost since the check: go on as if it was gone
                raise
    model = edit.model or (record.model if record is not None else None)
    framing = {"align": edit.align} if edit.align else {"selection_bbox": edit.box()}
    made = client.create_session(edit.png(), model=model, invert=edit.invert, **framing)
    started = Started(made["session_id"], "", "invert", True, reused=bool(made.get("reused")),
                      model=made.get("model") or model, region=region_list(made.get("region")))
    if made.get("job_id") and not made.get("ready", False):
        started.job_id = made["job_id"]
        return started
    # A reused session was made from these very pixels: the drag starts from its first state, not from
    # where earlier drags (whose result layers may be undone) left it.
    return start_drag(client, started, edit, sleep, from_state=made.get("initial_state_id") if started.reused else None)


def start_drag(client: Any, started: Started, edit: Edit, sleep: Callable[[float], None] = time.sleep,
               inversion: Optional[Dict[str, Any]] = None, from_state: Optional[str] = None) -> Started:
    """Start the drag on a session whose inversion ended (inversion: that job's final status), from the
    session's current state or from_state."""
    request = drag_request(edit)
    if from_state is not None:
        request["from_state"] = from_state
    job = _drag(client, started.session_id, request, edit, started.real, sleep)
    return Started(started.session_id, job["job_id"], "drag", started.real, started.reused, started.model,
                   started.region, inversion or started.inversion)


def finish(client: Any, started: Started, final: Dict[str, Any], record: Optional[SessionRecord],
           edit: Edit) -> Finished:
    """The result of a drag that ended done (also when stopped early), and what its layer remembers."""
    done = finished_job(final)
    png = client.result(started.job_id)
    session = client.session(started.session_id)
    if started.real:
        new = real_record(client.url, started, edit, session)
        new.fingerprint = None  # the result layer shows other pixels than the layer it was made from
        psnr = _fit_psnr(client, started.inversion, session)
    else:
        new = SessionRecord(started.session_id, client.url, session["width"], session["height"], DRAGGED,
                            model=session.get("model") or (record.model if record else None),
                            seed=record.seed if record else None, psi=record.psi if record else None)
        psnr = None
    new.handles, new.targets = _points(session.get("handles")), _points(session.get("targets"))
    new.state_id = done.get("state_id")
    return Finished(done, png, new, started.real, psnr)


def real_record(url: str, started: Started, edit: Edit, session: Optional[Dict[str, Any]] = None) -> SessionRecord:
    """What the edited layer remembers about its real layer's session (session: its state after a
    drag; None right after the inversion), so that a later drag of the same pixels reuses it."""
    session = session or {}
    return SessionRecord(started.session_id, url, edit.width, edit.height, REAL,
                         model=session.get("model") or started.model,
                         region=region_list(session.get("region")) or started.region, selection_bbox=edit.box(),
                         fingerprint=edit.fingerprint(), invert=edit.invert,
                         state_id=session.get("state_id") or (started.inversion or {}).get("state_id"),
                         align=edit.align)


def generated_record(made: Dict[str, Any], url: str, seed: int, psi: Optional[float] = None,
                     pixels: Optional[bytes] = None) -> SessionRecord:
    """What a picture the daemon generated remembers (made: DaemonClient.generate's answer): its seed, to
    regenerate it after a daemon restart, and its first state. pixels (RGBA): a fingerprint, for a record
    that is not the layer's own (a document's), trusted only for those pixels."""
    width, height = made["width"], made["height"]
    return SessionRecord(made["session_id"], url, width, height, GENERATED, model=made.get("model"), seed=int(seed),
                         psi=psi, fingerprint=layer_fingerprint(pixels, width, height) if pixels is not None else None,
                         state_id=made.get("initial_state_id") or made.get("state_id"))


def reset(client: Any, record: SessionRecord) -> SessionRecord:
    """Reset to original: the record's session forgets its drags (a real layer keeps its inversion) and
    the record names its first state, with no tracked handles. A session the daemon lost raises
    DaemonError (unknown_session): the next drag regenerates or re-inverts the picture anyway."""
    session = client.reset_session(record.session_id)
    return replace(record, handles=[], targets=[], origin=GENERATED if record.origin == DRAGGED else record.origin,
                   state_id=session.get("state_id") or session.get("initial_state_id"))


def run(client: Any, record: Optional[SessionRecord], edit: Edit,
        on_status: Callable[[Dict[str, Any]], None] = lambda status: None,
        on_job: Callable[[str], None] = lambda job_id: None,
        sleep: Callable[[float], None] = time.sleep,
        on_preview: Optional[Callable[[bytes, Dict[str, Any]], None]] = None,
        stop_event: Any = None, cancel_event: Any = None) -> Finished:
    """The whole drag, blocking: every job id goes to on_job (e.g. a watchdog that cancels them if
    the editor kills the plug-in), every status to on_status, every preview (the layer's size, the
    inversion's fit and then the drag's) to on_preview.

    stop_event / cancel_event (threading.Event, set by the editor's buttons): stop keeps the
    drag so far (during the inversion it ends the fitting early and the drag goes on from that fit);
    cancel ends the job and the edit raises WorkflowError."""
    started = begin(client, record, edit, sleep)
    on_job(started.job_id)
    if started.phase == "invert":
        inverted = finished_job(client.wait(started.job_id, on_progress=on_status, on_preview=on_preview,
                                            stop_event=stop_event, cancel_event=cancel_event))
        if stop_event is not None and stop_event.is_set():
            stop_event.clear()  # the stop ended the fitting; the drag itself runs until stopped again
        started = start_drag(client, started, edit, sleep, inversion=inverted)
        on_job(started.job_id)
    final = client.wait(started.job_id, on_progress=on_status, on_preview=on_preview, stop_event=stop_event,
                        cancel_event=cancel_event)
    return finish(client, started, final, record, edit)


def find_session(client: Any, record: Optional[SessionRecord], edit: Edit) -> Optional[Tuple[str, Optional[str]]]:
    """(session id, state to start from or None) of a daemon session that can show the layer's picture,
    or None: send it as a real layer.

    The record's own session when the daemon still keeps the record's state (a real layer's also when
    it was made from these pixels and settings and covers the drags); a session made from it when
    the layer shows its picture at another size; for a generated picture whose session or state is
    gone, a session regenerated from its seed."""
    if record is None:
        return None
    trusted = edit.trusted or (record.fingerprint is not None and record.fingerprint == edit.fingerprint())
    current = _session_or_none(client, record.session_id)
    kept = current is not None and _keeps_state(record, current)
    from_state = record.state_id if kept else None
    if current is not None and current.get("region") is not None:  # a real layer's session
        fits = trusted and kept and _real_session_fits(record, current, edit)
        return (record.session_id, from_state) if fits else None
    if record.origin == REAL:
        return None
    if current is not None:
        if trusted and kept and (current["width"], current["height"]) == (edit.width, edit.height):
            return record.session_id, from_state
        made = _from_session(client, edit, record.session_id)
        if made is not None:
            return made, None
    if trusted and record.origin == GENERATED and record.seed is not None:
        regenerated = client.generate(seed=int(record.seed), model=record.model, psi=record.psi)
        if (regenerated["width"], regenerated["height"]) == (edit.width, edit.height):
            return regenerated["session_id"], None
        made = _from_session(client, edit, regenerated["session_id"])
        return (made, None) if made is not None else None
    return None


def _keeps_state(record: SessionRecord, session: Dict[str, Any]) -> bool:
    """Whether the session can still show the record's picture: the daemon keeps the record's state
    (daemons since session states), or, for records without one, the session has not moved on."""
    if record.state_id is None:
        return _same_state(record, session)
    return record.state_id in [s.get("state_id") for s in session.get("states") or []] \
        or record.state_id == session.get("state_id")


def _real_session_fits(record: SessionRecord, current: Dict[str, Any], edit: Edit) -> bool:
    if (current["width"], current["height"]) != (edit.width, edit.height):
        return False
    if not current.get("ready", True):
        return False
    if edit.model is not None and edit.model != current.get("model"):
        return False
    if record.fingerprint is not None and record.fingerprint != edit.fingerprint():
        return False
    if (record.invert or None) != (edit.invert or None) or (record.align or None) != (edit.align or None):
        return False
    return _inside(region_list(current.get("region")), edit.box(), edit)


def _inside(region: Optional[List[int]], box: Optional[List[int]], edit: Edit) -> bool:
    """Whether a real layer's region holds every drag point and the selection's box (the whole layer
    without a selection)."""
    if region is None:
        return False
    x0, y0, w, h = region
    bx, by, bw, bh = box if box is not None else [0, 0, edit.width, edit.height]
    if not (x0 <= bx and y0 <= by and bx + bw <= x0 + w and by + bh <= y0 + h):
        return False
    return all(x0 <= x <= x0 + w - 1 and y0 <= y <= y0 + h - 1 for drag in edit.drags for x, y in drag)


def _from_session(client: Any, edit: Edit, session_id: str) -> Optional[str]:
    """A session made from `session_id` for this layer (the same picture at another size); None when
    the daemon finds other pixels or no longer has the session."""
    try:
        return client.create_session(edit.png(), from_session=session_id)["session_id"]
    except DaemonError as exc:
        if exc.code not in NOT_THIS_PICTURE + GONE:
            raise
    return None


def _session_or_none(client: Any, session_id: str) -> Optional[Dict[str, Any]]:
    try:
        return client.session(session_id)
    except DaemonError as exc:
        if exc.code not in GONE:
            raise
    return None


def _drag(client: Any, session_id: str, request: Dict[str, Any], edit: Edit, real: bool,
          sleep: Callable[[float], None]) -> Dict[str, Any]:
    """client.drag, retried while the session is finishing its last job (right after an inversion
    the daemon may need a moment to release it)."""
    request = dict(request)
    if not real:
        request.pop("feather", None)
    waited = 0.0
    while True:
        try:
            return client.drag(session_id, **request)
        except DaemonError as exc:
            if exc.code not in BUSY or waited >= BUSY_PATIENCE_S:
                raise
        sleep(BUSY_RETRY_S)
        waited += BUSY_RETRY_S


def _fit_psnr(client: Any, inverted: Optional[Dict[str, Any]], session: Dict[str, Any]) -> Optional[float]:
    """The PSNR of a real layer's inversion: from the job just waited for, else from the session's
    invert job while the daemon still keeps it."""
    status = inverted
    if status is None and session.get("invert_job"):
        try:
            status = client.job(session["invert_job"])
        except DaemonError:  # the daemon keeps only recent jobs
            return None
    psnr = ((status or {}).get("inversion") or {}).get("psnr")
    return float(psnr) if psnr is not None else None


def _same_state(record: SessionRecord, session: Dict[str, Any]) -> bool:
    return (_points(record.handles) == _points(session.get("handles"))
            and _points(record.targets) == _points(session.get("targets")))


def _points(value: Any) -> List[List[float]]:
    return [[float(p[0]), float(p[1])] for p in (value or [])]


def region_list(region: Any) -> Optional[List[int]]:
    """[x, y, width, height] from the daemon's region ({x, y, width, height}) or a list, else None."""
    try:
        if isinstance(region, dict):
            return [int(region["x"]), int(region["y"]), int(region["width"]), int(region["height"])]
        if isinstance(region, (list, tuple)) and len(region) == 4:
            return [int(v) for v in region]
    except (KeyError, TypeError, ValueError):
        pass
    return None


# ----------------------------------------------------------------------------- answers in words

def finished_job(status: Dict[str, Any]) -> Dict[str, Any]:
    """The final status of a job that produced a picture; a failed or cancelled job is an error."""
    state = status.get("state")
    if state == "done":
        return status
    what = "fitting of the model to the layer (GAN inversion)" if status.get("kind") == "invert" else "drag"
    if state == "cancelled":
        raise WorkflowError("The {} was cancelled; the image is unchanged.".format(what))
    error = status.get("error") or {}
    raise WorkflowError("The {} failed on the daemon: {}".format(what, error.get("message") or "no reason given"))


# ----------------------------------------------------------------------------- naming the layers

PREVIEW_LAYER = "DragGAN preview"  # both editors' preview layers are named so, then what they show


def preview_layer_name(status: Dict[str, Any]) -> str:
    """The preview layer's name for a job's status: a real layer's fit so far while it is inverted, else the
    drag's step. Both editors name their layers alike, so the artist and the docs speak of one thing."""
    if status.get("kind") == "invert":
        return PREVIEW_LAYER + " (fit)"
    return "{} (step {})".format(PREVIEW_LAYER, status.get("preview_step") or status.get("step") or 0)


def result_layer_name(final: Dict[str, Any], psnr: Optional[float] = None) -> str:
    """The result layer's name: how the drag ended, and for a real layer how closely the model reproduced
    it (psnr, dB), so a layer list tells the edits apart."""
    reasons = {"reached": "targets reached", "max_steps": "step limit", "stalled": "stalled", "stopped": "stopped"}
    extra = ", model fit {:.1f} dB".format(psnr) if psnr is not None else ""
    return "DragGAN drag ({} steps, {}{})".format(final.get("step", 0),
                                                  reasons.get(final.get("reason"), final.get("reason") or "done"),
                                                  extra)


@dataclass
class Progress:
    """What an editor shows for one job status: a fraction for its bar and a sentence."""
    fraction: float
    text: str
    finished: bool
    psnr: Optional[float] = None


def progress(status: Dict[str, Any]) -> Progress:
    state, kind = status.get("state"), status.get("kind") or "drag"
    step, total = int(status.get("step") or 0), int(status.get("max_steps") or 0)
    inversion = status.get("inversion") or {}
    psnr = float(inversion["psnr"]) if inversion.get("psnr") is not None else None
    finished = state in ("done", "failed", "cancelled")
    if kind == "download":
        step, total = int(status.get("bytes_done") or 0), int(status.get("bytes_total") or 0)
    fraction = 1.0 if state == "done" else (min(step / total, 1.0) if total else 0.0)
    return Progress(fraction, _progress_text(status, kind, state, step, total, inversion, psnr), finished, psnr)


def _progress_text(status: Dict[str, Any], kind: str, state: Any, step: int, total: int,
                   inversion: Dict[str, Any], psnr: Optional[float]) -> str:
    fit = ", PSNR {:.1f} dB".format(psnr) if psnr is not None else ""
    eta = format_eta(status.get("eta_seconds"))
    left = ", about {} left".format(eta) if eta else ""
    error = (status.get("error") or {}).get("message") if isinstance(status.get("error"), dict) else status.get("error")
    if state == "queued":
        place = status.get("queue_position")
        return "Waiting for the daemon{}...".format(" (place {} in the queue)".format(place) if place else "")
    if kind == "download":
        return _download_text(status, state, step, total, left, error)
    if kind == "invert":
        if state == "running":
            stage = inversion.get("stage")
            detail = " ({} {}/{})".format(STAGES.get(stage, stage), inversion.get("stage_step") or 0,
                                          inversion.get("stage_steps") or 0) if stage else ""
            return "Fitting the model to the layer{}{}{}".format(detail, fit, left)
        if state == "done":
            return "Fitted the model to the layer{}{}".format(fit, " (stopped early)" if status.get("reason") == "stopped" else "")
        return "Fitting cancelled" if state == "cancelled" else "Fitting failed: {}".format(error or "unknown error")
    if state == "running":
        distance = status.get("distance")
        to_go = ", {:.1f} px to go".format(distance) if distance is not None else ""
        return "Step {}/{}{}{}".format(step, total, to_go, left)
    if state == "done":
        reason = REASONS.get(status.get("reason"), status.get("reason") or "")
        return "Done after {} steps{}".format(step, " ({})".format(reason) if reason else "")
    return "Cancelled" if state == "cancelled" else "Failed: {}".format(error or "unknown error")


def _download_text(status: Dict[str, Any], state: Any, done: int, total: int, left: str, error: Any) -> str:
    name = status.get("model") or "the model"
    if state == "running":
        of = " of {}".format(format_size(total)) if total else ""
        return "Downloading {}: {}{}{}".format(name, format_size(done), of, left)
    if state == "done":
        return "Downloaded {} ({})".format(name, format_size(done))
    if state == "cancelled":
        return "Download of {} cancelled; the next download goes on from {}".format(name, format_size(done))
    return "Download of {} failed: {}".format(name, error or "unknown error")


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(math.ceil(seconds)))
    if seconds >= 3600:
        return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)
    if seconds >= 60:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d s" % seconds
