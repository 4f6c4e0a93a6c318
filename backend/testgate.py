"""A gate that holds running jobs at a chosen step, for end-to-end tests that act while a job runs.

Editor tests press Stop or Cancel, or look for a preview, while a job is in progress; on a fast,
quiet machine a small job ends before the editor's next poll. Armed at step k, the gate makes
every job that has done k steps wait before its next one until the test disarms it. While a job
waits, the worker still runs other clients' short calls, and stop and cancel end the wait at once.
It exists only when the daemon starts with DRAGGAN_TEST_GATE=1 (its endpoint is then
/api/v1/test/gate); a daemon started normally has neither the gate nor the endpoint.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from flask import Blueprint, request

from .validation import check_fields, integer, parse_json

if TYPE_CHECKING:
    from .jobs import Job

ENV = "DRAGGAN_TEST_GATE"
MAX_HOLD_S = 600.0  # a test that forgets to disarm the gate cannot hold a job for ever
POLL_S = 0.02  # how often a held job looks for short calls, stop/cancel and the gate's state


class StepGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hold_at_step: int | None = None
        self.held = 0  # jobs waiting at the gate now

    def arm(self, step: int | None) -> None:
        """Hold every job once it has done `step` steps; None lets every job go on."""
        with self._lock:
            self.hold_at_step = step

    def describe(self) -> dict:
        with self._lock:
            return {"hold_at_step": self.hold_at_step, "held": self.held}

    def _holds(self, job: "Job") -> bool:
        at = self.hold_at_step
        return at is not None and job.step >= at and not job.should_stop()

    def pause(self, job: "Job", run_calls: Callable[[], None]) -> None:
        """Between two steps of `job`, on the worker: wait while the gate holds it."""
        run_calls()
        if not self._holds(job):
            return
        with self._lock:
            self.held += 1
        try:
            deadline = time.monotonic() + MAX_HOLD_S
            while self._holds(job) and time.monotonic() < deadline:
                run_calls()
                time.sleep(POLL_S)
        finally:
            with self._lock:
                self.held -= 1


def gate_blueprint(gate: StepGate) -> Blueprint:
    """GET /api/v1/test/gate -> {hold_at_step, held}; PUT {"hold_at_step": k | null} arms or disarms it."""
    bp = Blueprint("test_gate", __name__, url_prefix="/api/v1/test")

    @bp.get("/gate")
    def state():
        return gate.describe()

    @bp.put("/gate")
    def arm():
        body = parse_json(request.get_data(), request.content_type)
        check_fields(body, ("hold_at_step",))
        gate.arm(integer(body, "hold_at_step", None, 0, 1_000_000))
        return gate.describe()

    return bp
