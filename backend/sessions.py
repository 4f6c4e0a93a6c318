"""Editing sessions: one image being edited, with its model, latent and drag state, kept between drags.

A session holds a DragSession (latent, optimiser moments, tracked handles), so a second drag
continues where the first stopped, and the mapping between the client's pixels and the model's.
Sessions created by /generate know their latent; sessions of real layers get theirs from an
invert job, and carry the layer, the inversion's tuned generator copy and its reconstruction,
which is why the generator is reached through the session's DragSession rather than the
catalogue. Real-layer sessions are also indexed by a key (layer, region, model, inversion
settings), so the same layer sent again finds its session.

The store is bounded, on each device (a session's lane), by count and by the estimated memory of
the sessions' tensors (tuned generator copies and layers included), dropping the least recently
used idle session of that device first. A session with a queued or running job is never dropped,
and neither is the one being added: when only busy sessions are left to drop, the new session is
refused (429) instead. Session and job ids may carry the daemon's node name (`draggan serve
--node`), which is how a load balancer in front of several daemons routes them (docs/studio.md).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import secrets
import threading
import time

import torch
from torch import nn

from draggan_core.drag import DragSession

from .errors import ApiError, busy, not_found, short
from .geometry import LayerMapping, Mapping, Point
from .models import LoadedModel

log = logging.getLogger("draggan.daemon")

# What a session reports of its alignment (draggan_core.alignment.AlignedMapping.to_dict, less the sizes the
# session gives already): framing, landmarks, box, scale, quad.
ALIGN_FIELDS = ("framing", "landmarks", "box", "scale", "quad")
DROPPED_IDS_KEPT = 256  # ids of dropped states a session remembers, to answer 410 state_gone rather than 404


def new_id(node: str | None = None) -> str:
    """Unguessable ids: knowing one is what lets a client see, change or stop a session or job. With a node name
    ('box1.3fa2...') a load balancer can tell which daemon holds the session or job from the path alone."""
    token = secrets.token_hex(12)
    return f"{node}.{token}" if node else token


def copy_drag(drag: DragSession) -> DragSession:
    """An independent copy of a DragSession's state (latent, optimiser, points); the generator is shared."""
    return copy.deepcopy(drag, {id(drag.G): drag.G})


@dataclasses.dataclass(eq=False)
class SessionState:
    """A state a drag can start from: a copy of the DragSession (latent, Adam's moments, tracked
    templates; the generator, a real layer's tuned copy included, shared by reference) and the
    handles and targets in client pixels. Never changed once made: starting from it copies it."""
    drag: DragSession
    handles: list[Point]
    targets: list[Point]
    job_id: str | None = None  # the drag that made it; None for a session's initial state
    id: str = dataclasses.field(default_factory=new_id)
    created: float = dataclasses.field(default_factory=time.time)
    bytes: int = 0

    def __post_init__(self) -> None:
        self.bytes = estimate_bytes(self.drag)

    @classmethod
    def of(cls, drag: DragSession, handles: list[Point], targets: list[Point], job_id: str | None = None
           ) -> "SessionState":
        """A snapshot of `drag`. Its mask (editable region and reference features, the biggest tensors a
        DragSession holds) is left out: every drag sets its own mask before it runs."""
        memo: dict[int, object] = {id(drag.G): drag.G}
        for mask_tensor in (drag.fixed, drag.fixed_reference):
            if mask_tensor is not None:
                memo[id(mask_tensor)] = None  # deepcopy answers None for these instead of copying them
        return cls(copy.deepcopy(drag, memo), list(handles), list(targets), job_id)

    def renamed(self, handles: list[Point], targets: list[Point]) -> "SessionState":
        """The same snapshot under a new id (for a copy of the session), sharing its DragSession copy."""
        return SessionState(self.drag, list(handles), list(targets))

    def describe(self) -> dict:
        return {"state_id": self.id, "job_id": self.job_id, "created": self.created, "bytes": self.bytes}


@dataclasses.dataclass(eq=False)
class Session:
    model: LoadedModel
    drag: DragSession | None  # None while the session's inversion runs
    mapping: Mapping | LayerMapping
    id: str = dataclasses.field(default_factory=new_id)
    created: float = dataclasses.field(default_factory=time.time)
    last_used: float = dataclasses.field(default_factory=time.time)
    handles: list[Point] = dataclasses.field(default_factory=list)  # client pixels, as last tracked
    targets: list[Point] = dataclasses.field(default_factory=list)
    active_job: str | None = None
    lane: int = 0  # the device that holds its tensors and runs its jobs (backend/lanes.py)
    bytes: int = 0
    # Sessions of real images (made by inversion): the layer as sent (uint8 RGBA, the compositing
    # base), the inversion's job and result, and its reconstruction (what "changed" is measured against).
    layer: object = None  # numpy uint8 [H, W, 4]
    key: str | None = None  # the store's reuse key (sha256 of layer, region, model and inversion settings)
    invert_job: str | None = None
    inversion: object = None  # draggan_core.invert.Inversion once inverted (its tuned generator lives here)
    reference: torch.Tensor | None = None  # the reconstruction [1, 3, H, W]
    # States, oldest first; [0] is the initial state, kept as long as the session. The list is replaced,
    # never changed in place, so request threads may read it while the worker records a state.
    states: list[SessionState] = dataclasses.field(default_factory=list)
    state_id: str | None = None  # the state the DragSession is in (None while the inversion runs)
    dropped_states: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=DROPPED_IDS_KEPT))

    @property
    def ready(self) -> bool:
        """Whether drags can start: False while the inversion runs."""
        return self.drag is not None

    def start_states(self, states: list[SessionState] | None = None) -> None:
        """Record the session's first state(s): a snapshot of its DragSession now, or given ones (a copy
        of another session: its initial and current states), the last being the current one."""
        self.states = states or [SessionState.of(self.drag, self.handles, self.targets)]
        self.state_id = self.states[-1].id

    @property
    def initial_state(self) -> SessionState:
        return self.states[0]

    @property
    def current_state(self) -> SessionState:
        return self.find_state(self.state_id)

    def find_state(self, state_id: str) -> SessionState:
        """A kept state; 410 state_gone for one dropped to keep within the bound, 404 for one never seen."""
        for state in self.states:
            if state.id == state_id:
                return state
        if state_id in self.dropped_states:
            raise ApiError(410, "state_gone", f"session {self.id} no longer keeps state {short(state_id)} (the "
                                              f"oldest states are dropped to stay within the daemon's bound); "
                                              f"regenerate or re-invert the picture to edit it")
        raise ApiError(404, "unknown_state", f"session {self.id} has no state {short(state_id)}; a state belongs "
                                             f"to the session whose drag made it")

    def add_state(self, state: SessionState, keep: int) -> None:
        """Record a drag's state as the current one, keeping at most `keep` states (at least the initial
        one and this one): the oldest others are dropped first."""
        states = self.states + [state]
        dropped = []
        while len(states) > max(2, keep):
            dropped.append(states.pop(1))
        self.states, self.state_id = states, state.id
        for old in dropped:
            self.dropped_states.append(old.id)
            log.info("session %s: state %s dropped (at most %d states a session; the oldest go first)",
                     self.id, old.id, max(2, keep))

    def restore(self, state: SessionState) -> None:
        """Put the session in `state`: its latent, optimiser moments, templates and handles."""
        self.drag = copy_drag(state.drag)
        self.handles, self.targets, self.state_id = list(state.handles), list(state.targets), state.id

    def states_bytes(self) -> int:
        return sum(s.bytes for s in self.states)

    def extra_bytes(self) -> int:
        """Memory beyond the DragSession's tensors: the layer, the reconstruction and the inversion's
        tuned generator copy (or its noise maps)."""
        total = 0 if self.layer is None else int(self.layer.nbytes)
        if self.reference is not None:
            total += self.reference.nelement() * self.reference.element_size()
        if self.inversion is not None:
            total += int(self.inversion.extra_bytes)
        return total

    def estimate(self) -> int:
        return (estimate_bytes(self.drag) if self.drag is not None else 0) + self.extra_bytes() + self.states_bytes()

    def describe(self) -> dict:
        region = fit = align = None
        if isinstance(self.mapping, LayerMapping):
            rm = self.mapping.region_mapping
            region = rm.region.to_dict()
            if self.mapping.aligned:
                align = {k: v for k, v in rm.to_dict().items() if k in ALIGN_FIELDS}
            else:
                fit = {"content": rm.content.to_dict(), "scale": list(rm.scale), "padding": list(rm.padding)}
        states = self.states
        return {"session_id": self.id, "model": self.model.entry.name, "width": self.mapping.width,
                "height": self.mapping.height, "model_width": self.mapping.model_width,
                "model_height": self.mapping.model_height, "handles": [list(p) for p in self.handles],
                "targets": [list(p) for p in self.targets], "active_job": self.active_job,
                "created": self.created, "last_used": self.last_used, "region": region, "fit": fit, "align": align,
                "invert_job": self.invert_job, "ready": self.ready, "state_id": self.state_id,
                "initial_state_id": states[0].id if states else None, "states": [s.describe() for s in states],
                "bytes": self.bytes}


def estimate_bytes(drag: DragSession) -> int:
    """Bytes held by the tensors a DragSession owns (latent, optimiser moments, templates, mask
    reference features), not counting the generator, which sessions of one model share."""
    seen: set[int] = set()
    total = 0
    stack: list[object] = [vars(drag)]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, nn.Module):
            continue
        seen.add(id(obj))
        if torch.is_tensor(obj):
            total += obj.nelement() * obj.element_size()
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return total


class SessionStore:
    """The daemon's sessions by id, bounded per device (max_sessions, max_bytes) as the module says."""

    def __init__(self, max_sessions: int, max_bytes: int, node: str | None = None):
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.node = node  # this daemon's name in ids (None: plain ids)
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._by_key: dict[str, str] = {}  # reuse key -> session id, for sessions of real images
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def new_id(self) -> str:
        return new_id(self.node)

    def usage(self, lane: int) -> tuple[int, int]:
        """(sessions, estimated bytes) on one device: what /health reports and new sessions are placed by."""
        with self._lock:
            on_lane = [s.bytes for s in self._sessions.values() if s.lane == lane]
        return len(on_lane), sum(on_lane)

    def add(self, session: Session) -> Session:
        """Store a new session, dropping idle ones to make room; 429 when only busy ones are left."""
        session.bytes = session.estimate()
        with self._lock:
            self._evict(room_for=session)
            self._sessions[session.id] = session
            if session.key is not None:
                self._by_key[session.key] = session.id
        return session

    def find(self, key: str) -> Session | None:
        """The session made from the same layer, region, model and inversion settings, marked as used."""
        with self._lock:
            sid = self._by_key.get(key)
            return self._touch(sid) if sid is not None and sid in self._sessions else None

    def discard(self, session: Session) -> None:
        """Drop a session whose inversion failed or was cancelled (it has nothing to drag)."""
        with self._lock:
            session.active_job = None
            if self._sessions.get(session.id) is session:
                self._remove(session.id)

    def get(self, sid: str) -> Session:
        """The session, marked as just used."""
        with self._lock:
            return self._touch(sid)

    def delete(self, sid: str) -> Session:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None:
                self._remove(sid)
        if session is None:
            raise not_found("session", sid, self.node)
        return session

    def _remove(self, sid: str) -> Session:
        session = self._sessions.pop(sid)
        if session.key is not None and self._by_key.get(session.key) == sid:
            del self._by_key[session.key]
        return session

    def claim(self, sid: str, job_id: str, from_state: str | None = None) -> tuple[Session, SessionState | None]:
        """Mark the session busy with a job (one job per session at a time keeps its states linear), with
        the kept state it starts from (None: the session's current state)."""
        with self._lock:
            session = self._touch(sid)
            _check_idle(session)
            start = session.find_state(from_state) if from_state is not None else None
            session.active_job = job_id
            return session, start

    def reset(self, sid: str) -> Session:
        """Put an idle session back in its initial state: drags forgotten, handles cleared, a real
        layer's inversion kept. Its other states stay, so result layers can still go on from them."""
        with self._lock:
            session = self._touch(sid)
            _check_idle(session)
            session.restore(session.initial_state)
        log.info("session %s reset to its initial state %s", sid, session.state_id)
        return session

    def _touch(self, sid: str) -> Session:
        session = self._sessions.get(sid)
        if session is None:
            raise not_found("session", sid, self.node)
        self._sessions.move_to_end(sid)
        session.last_used = time.time()
        return session

    def release(self, session: Session) -> None:
        """The session's job ended: re-estimate its memory and apply the limits it may now exceed
        (dropping others first: the session just released is about to be used)."""
        session.bytes = session.estimate()
        with self._lock:
            session.active_job = None
            self._evict(keep=session)

    def _evict(self, room_for: Session | None = None, keep: Session | None = None) -> None:
        """Drop least recently used idle sessions of the same device until its limits hold (with room_for added)."""
        lane = (room_for or keep).lane
        on_lane = [sid for sid, s in self._sessions.items() if s.lane == lane]
        count = len(on_lane) + (room_for is not None)
        total = sum(self._sessions[sid].bytes for sid in on_lane) + (room_for.bytes if room_for else 0)
        for sid in on_lane:
            if count <= self.max_sessions and total <= self.max_bytes:
                return
            session = self._sessions[sid]
            if session.active_job is None and session is not keep:
                self._remove(sid)
                count, total = count - 1, total - session.bytes
                log.info("session %s dropped (least recently used; limits %d sessions, %d MiB a device)",
                         sid, self.max_sessions, self.max_bytes // 2 ** 20)
        if room_for is not None and (count > self.max_sessions or (total > self.max_bytes and count > 1)):
            raise busy("sessions_full", f"the daemon holds {count - 1} sessions on this device that all have work "
                                        f"queued or running (at most {self.max_sessions} sessions, "
                                        f"{self.max_bytes // 2 ** 20} MiB a device)", retry_after=10)


def _check_idle(session: Session) -> None:
    if not session.ready:
        raise ApiError(409, "session_inverting", f"session {session.id} is still being inverted (job "
                                                 f"{session.invert_job}); wait until that job is done, or stop "
                                                 f"it to keep the best inversion so far")
    if session.active_job is not None:
        raise ApiError(409, "session_busy", f"session {session.id} already has job {session.active_job}; "
                                            f"wait for it, stop it or cancel it first")
