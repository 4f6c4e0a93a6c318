"""Editing sessions: one image being edited, with its model, latent and drag state, kept between drags.

A session holds a DragSession (latent, optimiser moments, tracked handles), so a second drag
continues where the first stopped, and the mapping between the client's pixels and the model's.
Sessions created by /generate know their latent; sessions of real layers get theirs from an
invert job, and carry the layer, the inversion's tuned generator copy and its reconstruction,
which is why the generator is reached through the session's DragSession rather than the
catalogue. Real-layer sessions are also indexed by a key (layer, region, model, inversion
settings), so the same layer sent again finds its session.

The store is bounded by count and by the estimated memory of the sessions' tensors (tuned
generator copies and layers included), dropping the least recently used idle session first. A
session with a queued or running job is never dropped, and neither is the one being added: when
only busy sessions are left to drop, the new session is refused (429) instead.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time

import torch
from torch import nn

from draggan_core.drag import DragSession

from .errors import ApiError, busy, not_found
from .geometry import LayerMapping, Mapping, Point
from .models import LoadedModel

log = logging.getLogger("draggan.daemon")


def new_id() -> str:
    """Unguessable ids: knowing one is what lets a client see, change or stop a session or job."""
    return secrets.token_hex(12)


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
    bytes: int = 0
    # Sessions of real images (made by inversion): the layer as sent (uint8 RGBA, the compositing
    # base), the inversion's job and result, and its reconstruction (what "changed" is measured against).
    layer: object = None  # numpy uint8 [H, W, 4]
    key: str | None = None  # the store's reuse key (sha256 of layer, region, model and inversion settings)
    invert_job: str | None = None
    inversion: object = None  # draggan_core.invert.Inversion once inverted (its tuned generator lives here)
    reference: torch.Tensor | None = None  # the reconstruction [1, 3, H, W]

    @property
    def ready(self) -> bool:
        """Whether drags can start: False while the inversion runs."""
        return self.drag is not None

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
        return (estimate_bytes(self.drag) if self.drag is not None else 0) + self.extra_bytes()

    def describe(self) -> dict:
        region = fit = None
        if isinstance(self.mapping, LayerMapping):
            rm = self.mapping.region_mapping
            region = rm.region.to_dict()
            fit = {"content": rm.content.to_dict(), "scale": list(rm.scale), "padding": list(rm.padding)}
        return {"session_id": self.id, "model": self.model.entry.name, "width": self.mapping.width,
                "height": self.mapping.height, "model_width": self.mapping.model_width,
                "model_height": self.mapping.model_height, "handles": [list(p) for p in self.handles],
                "targets": [list(p) for p in self.targets], "active_job": self.active_job,
                "created": self.created, "last_used": self.last_used, "region": region, "fit": fit,
                "invert_job": self.invert_job, "ready": self.ready}


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
    def __init__(self, max_sessions: int, max_bytes: int):
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._by_key: dict[str, str] = {}  # reuse key -> session id, for sessions of real images
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

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
            raise not_found("session", sid)
        return session

    def _remove(self, sid: str) -> Session:
        session = self._sessions.pop(sid)
        if session.key is not None and self._by_key.get(session.key) == sid:
            del self._by_key[session.key]
        return session

    def claim(self, sid: str, job_id: str) -> Session:
        """Mark the session busy with a job; one job per session at a time keeps its state linear."""
        with self._lock:
            session = self._touch(sid)
            if session.active_job is not None:
                raise ApiError(409, "session_busy", f"session {sid} already has job {session.active_job}; "
                                                    f"wait for it, stop it or cancel it first")
            session.active_job = job_id
            return session

    def _touch(self, sid: str) -> Session:
        session = self._sessions.get(sid)
        if session is None:
            raise not_found("session", sid)
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
        """Drop least recently used idle sessions until the limits hold (with room_for added)."""
        count = len(self._sessions) + (room_for is not None)
        total = sum(s.bytes for s in self._sessions.values()) + (room_for.bytes if room_for else 0)
        for sid in list(self._sessions):
            if count <= self.max_sessions and total <= self.max_bytes:
                return
            session = self._sessions[sid]
            if session.active_job is None and session is not keep:
                self._remove(sid)
                count, total = count - 1, total - session.bytes
                log.info("session %s dropped (least recently used; limits %d sessions, %d MiB)",
                         sid, self.max_sessions, self.max_bytes // 2 ** 20)
        if room_for is not None and (count > self.max_sessions or (total > self.max_bytes and self._sessions)):
            raise busy("sessions_full", f"the daemon holds {len(self._sessions)} sessions that all have work "
                                        f"queued or running (at most {self.max_sessions} sessions, "
                                        f"{self.max_bytes // 2 ** 20} MiB)", retry_after=10)
