"""Editing sessions: one image being edited, with its model, latent and drag state, kept between drags.

A session holds a DragSession (latent, optimiser moments, tracked handles), so a second drag
continues where the first stopped, and the mapping between the client's pixels and the model's.
Sessions created by /generate know their latent; sessions of real images will also carry a tuned
generator after inversion (issue 5), which is why the generator is reached through the session's
DragSession rather than the catalogue.

The store is bounded by count and by the estimated memory of the sessions' tensors, dropping the
least recently used idle session first; a session with a queued or running job is never dropped.
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

from .errors import ApiError, not_found
from .geometry import Mapping, Point
from .models import LoadedModel

log = logging.getLogger("draggan.daemon")


def new_id() -> str:
    """Unguessable ids: knowing one is what lets a client see, change or stop a session or job."""
    return secrets.token_hex(12)


@dataclasses.dataclass(eq=False)
class Session:
    model: LoadedModel
    drag: DragSession
    mapping: Mapping
    id: str = dataclasses.field(default_factory=new_id)
    created: float = dataclasses.field(default_factory=time.time)
    last_used: float = dataclasses.field(default_factory=time.time)
    handles: list[Point] = dataclasses.field(default_factory=list)  # client pixels, as last tracked
    targets: list[Point] = dataclasses.field(default_factory=list)
    active_job: str | None = None
    bytes: int = 0

    def describe(self) -> dict:
        return {"session_id": self.id, "model": self.model.entry.name, "width": self.mapping.width,
                "height": self.mapping.height, "model_width": self.mapping.model_width,
                "model_height": self.mapping.model_height, "handles": [list(p) for p in self.handles],
                "targets": [list(p) for p in self.targets], "active_job": self.active_job,
                "created": self.created, "last_used": self.last_used}


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
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> Session:
        session.bytes = estimate_bytes(session.drag)
        with self._lock:
            self._sessions[session.id] = session
            self._evict()
        return session

    def get(self, sid: str) -> Session:
        """The session, marked as just used."""
        with self._lock:
            return self._touch(sid)

    def delete(self, sid: str) -> Session:
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is None:
            raise not_found("session", sid)
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
        """The session's job ended: re-estimate its memory and apply the limits it may now exceed."""
        session.bytes = estimate_bytes(session.drag)
        with self._lock:
            session.active_job = None
            self._evict()

    def _evict(self) -> None:
        total = sum(s.bytes for s in self._sessions.values())
        for sid in list(self._sessions):
            if len(self._sessions) <= self.max_sessions and total <= self.max_bytes:
                return
            session = self._sessions[sid]
            if session.active_job is None and len(self._sessions) > 1:
                del self._sessions[sid]
                total -= session.bytes
                log.info("session %s dropped (least recently used; limits %d sessions, %d MiB)",
                         sid, self.max_sessions, self.max_bytes // 2 ** 20)
