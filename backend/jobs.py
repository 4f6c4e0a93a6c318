"""Jobs and the worker thread that owns a device (a daemon has one per device: backend/lanes.py).

Everything that touches the device's generators runs on its worker: long jobs (drag, invert)
from a FIFO queue, and short synchronous calls (generate, open a session) that request threads
hand over and wait for. The worker runs pending short calls before each job and between the
steps of a running job, so a new image is ready within one drag step even while another
client's long drag runs. Request threads only read and flag job records, so status, progress,
stop and cancel are always answered at once.

A job's failure, of any kind, ends that job with an error message; the worker goes on.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from .errors import ApiError, busy, describe_failure, not_found
from .geometry import Point
from .sessions import new_id

if TYPE_CHECKING:
    from .testgate import StepGate

log = logging.getLogger("draggan.daemon")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)

# work(job, between_steps) runs on the worker and returns the final state (DONE or CANCELLED).
Work = Callable[["Job", Callable[[], None]], str]


def position_in(queue: Iterable[object], job: object) -> int | None:
    """The job's place in a queue, 1 first; None when it is not there. By identity: a job record equals
    no other."""
    for place, queued in enumerate(queue, 1):
        if queued is job:
            return place
    return None


@dataclasses.dataclass
class JobClock:
    """When a job started running and when it ended, which its elapsed time and ETA are measured from.
    Drag, invert and download jobs each keep one."""
    started: float | None = None
    finished: float | None = None

    def enter(self, state: str) -> None:
        now = time.time()
        if state == RUNNING:
            self.started = now
        elif state in FINAL_STATES:
            self.finished = now

    def elapsed(self) -> float | None:
        """Seconds it has run so far, or ran until it ended; None before it started."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


@dataclasses.dataclass(eq=False)
class Job:
    kind: str  # 'drag' or 'invert'
    session_id: str
    max_steps: int
    work: Work
    on_end: Callable[["Job", str], None]  # called once with the final state, before clients can see it
    client: str = ""  # who asked (the remote address): the queue bounds the jobs of each client
    lane: int = 0  # the device whose worker runs it: its session's (backend/lanes.py)
    targets: list[Point] = dataclasses.field(default_factory=list)
    handles: list[Point] = dataclasses.field(default_factory=list)
    id: str = dataclasses.field(default_factory=new_id)
    state: str = QUEUED
    created: float = dataclasses.field(default_factory=time.time)
    clock: JobClock = dataclasses.field(default_factory=JobClock)
    step: int = 0
    loss: float | None = None
    distance: float | None = None
    first_distance: float | None = None
    reason: str | None = None  # reached | max_steps | stalled | stopped (drag), finished | reached | stopped (invert)
    error: ApiError | None = None
    preview_png: bytes | None = None
    preview_step: int | None = None
    result_png: bytes | None = None
    result_size: tuple[int, int] | None = None
    changed: dict | None = None  # {x, y, width, height}: the layer pixels a composited result changed
    stage: str | None = None  # invert jobs: the running stage ('w', 'w+', 'pti'), its step and budget, PSNR
    stage_step: int = 0
    stage_steps: int = 0
    psnr: float | None = None
    quality: dict | None = None  # invert jobs once done: {stage: {psnr, ssim, steps, seconds, stopped}}
    from_state: str | None = None  # drag jobs: the kept state it started from (None: the session's current one)
    preset: str | None = None  # drag jobs: the named settings it runs with (draggan_core/presets.py)
    state_id: str | None = None  # once done: the session state it made (a drag's result, an inversion's start)
    stop_requested: bool = False
    cancel_requested: bool = False
    closed: bool = False  # the job's outcome is decided; stop and cancel come too late
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def should_stop(self) -> bool:
        return self.stop_requested or self.cancel_requested

    def close(self) -> bool:
        """Decide the outcome: True when a cancel arrived before (the work then restores its session)."""
        with self._lock:
            self.closed = True
            return self.cancel_requested

    def request(self, cancel: bool) -> bool:
        """Flag a stop or cancel for the running job; False when its outcome is already decided."""
        with self._lock:
            if self.closed or self.state in FINAL_STATES:
                return False
            if cancel:
                self.cancel_requested = True
            else:
                self.stop_requested = True
            return True

    def progress(self, step: int, handles: list[Point], loss: float, distance: float) -> None:
        if self.first_distance is None:
            self.first_distance = distance
        self.step, self.handles, self.loss, self.distance = step, handles, loss, distance

    def invert_progress(self, step: int, stage: str, stage_step: int, stage_steps: int, loss: float,
                        psnr: float) -> None:
        self.stage, self.stage_step, self.stage_steps = stage, stage_step, stage_steps
        self.step, self.loss, self.psnr = step, loss, psnr

    def set_state(self, state: str, reason: str | None = None, error: ApiError | None = None) -> None:
        self.state, self.reason, self.error = state, reason, error
        self.clock.enter(state)
        detail = f" ({reason})" if reason else f": {error.message}" if error else ""
        log.info("job %s %s on session %s: %s%s (step %d/%d)", self.id, self.kind, self.session_id, state,
                 detail, self.step, self.max_steps)

    def eta_seconds(self) -> float | None:
        """Remaining time from the step rate, capped by how fast the handles have been closing in."""
        elapsed = self.clock.elapsed()
        if self.state != RUNNING or not self.step or elapsed is None:
            return None
        remaining = self.max_steps - self.step
        closed_in = (self.first_distance or 0.0) - (self.distance or 0.0)
        if closed_in > 0 and self.distance is not None:
            remaining = min(remaining, math.ceil(self.distance / (closed_in / self.step)))
        return remaining * elapsed / self.step

    def describe(self, queue_position: int | None) -> dict[str, Any]:
        return {
            "job_id": self.id, "kind": self.kind, "session_id": self.session_id, "state": self.state,
            "queue_position": queue_position, "step": self.step, "max_steps": self.max_steps,
            "handles": [list(p) for p in self.handles], "targets": [list(p) for p in self.targets],
            "loss": _finite(self.loss), "distance": self.distance, "eta_seconds": self.eta_seconds(),
            "elapsed_seconds": self.clock.elapsed(), "reason": self.reason,
            "error": self.error.body()["error"] if self.error else None, "preview_step": self.preview_step,
            "result": self.describe_result(), "changed": self.changed,
            "from_state": self.from_state, "preset": self.preset, "state_id": self.state_id,
            "inversion": {"stage": self.stage, "stage_step": self.stage_step, "stage_steps": self.stage_steps,
                          "psnr": _finite(self.psnr)} if self.kind == "invert" else None,
        }

    def stored_bytes(self) -> int:
        """Memory the record holds beyond its small fields: the preview and result PNGs."""
        return len(self.preview_png or b"") + len(self.result_png or b"")

    def describe_result(self) -> dict | None:
        if not self.result_size:
            return None
        result: dict[str, Any] = {"width": self.result_size[0], "height": self.result_size[1]}
        if self.quality is not None:
            result["quality"] = self.quality
        return result


def _finite(value: float | None) -> float | None:
    """A diverging optimisation can give an infinite or NaN loss, which JSON cannot carry."""
    return value if value is not None and math.isfinite(value) else None


class JobStore:
    """Job records by id; finished ones (with their PNGs) are kept for polling, oldest dropped first.

    Two bounds, checked whenever a job is added: a count, and the bytes of their PNGs (results are
    full layers, up to max_pixels each). The newest finished job is kept whatever its size, so the
    client that just started a new job can still fetch the previous result.
    """

    def __init__(self, max_finished: int, max_bytes: int, node: str | None = None):
        self.max_finished, self.max_bytes = max_finished, max_bytes
        self.node = node  # this daemon's name in ids (None: plain ids)
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return new_id(self.node)

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._drop_old_finished()

    def _drop_old_finished(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINAL_STATES]
        total = sum(j.stored_bytes() for j in finished)
        for i, old in enumerate(finished):
            too_many = len(finished) - i > self.max_finished
            too_big = total > self.max_bytes and i < len(finished) - 1
            if not (too_many or too_big):
                break
            del self._jobs[old.id]
            total -= old.stored_bytes()

    def get(self, jid: str) -> Job:
        with self._lock:
            job = self._jobs.get(jid)
        if job is None:
            raise not_found("job", jid, self.node)
        return job


@dataclasses.dataclass(eq=False)
class _Call:
    fn: Callable[[], Any]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False


class Worker:
    """The thread that runs one device's jobs and calls, with bounded waiting on both sides.

    The queue holds at most max_queued jobs and max_per_client of one client (queued or running),
    so one client cannot fill it; at most max_waiting_calls request threads may wait for a call,
    so the others stay free for status, stop and cancel. Past a bound the request is refused with
    429/503 and Retry-After rather than queued without end.
    """

    def __init__(self, max_queued: int = 8, max_per_client: int = 4, max_waiting_calls: int = 4,
                 gate: "StepGate | None" = None, device: torch.device | None = None, name: str = "draggan-worker",
                 torch_threads: int | None = None) -> None:
        self.max_queued, self.max_per_client, self.max_waiting_calls = max_queued, max_per_client, max_waiting_calls
        self._gate = gate
        self._device = device
        self._torch_threads = torch_threads  # None: torch's own count (one per core, or OMP_NUM_THREADS)
        self.torch_threads: int | None = None  # what the worker's thread runs with, once it has started
        self._waiting_calls = 0
        self._queue: collections.deque[Job] = collections.deque()
        self._calls: collections.deque[_Call] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self.running: Job | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ request side

    def submit(self, job: Job) -> None:
        """Queue the job, or refuse it (ApiError) when the daemon is closing or the queue is full."""
        with self._cv:
            self._check_room(job.client)
            self._queue.append(job)
            self._cv.notify()
        job.set_state(QUEUED)

    def _check_room(self, client: str) -> None:
        if self._closed:
            raise ApiError(503, "shutting_down", "the daemon is shutting down")
        if len(self._queue) >= self.max_queued:
            raise busy("queue_full", f"{len(self._queue)} jobs are already waiting for the daemon's worker "
                                     f"(at most {self.max_queued})", retry_after=10)
        mine = sum(1 for j in self._queue if j.client == client)
        if self.running is not None and self.running.client == client:
            mine += 1
        if mine >= self.max_per_client:
            raise busy("too_many_jobs", f"you already have {mine} jobs queued or running (at most "
                                        f"{self.max_per_client} per client); wait for one to finish", retry_after=10)

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run fn on the worker and return its result (or raise its exception) in the calling thread."""
        call = _Call(fn)
        with self._cv:
            if self._closed:
                raise ApiError(503, "shutting_down", "the daemon is shutting down")
            if self._waiting_calls >= self.max_waiting_calls:
                raise busy("busy", f"{self._waiting_calls} requests are already waiting for the daemon's worker",
                           retry_after=2, status=503)
            self._waiting_calls += 1
            self._calls.append(call)
            self._cv.notify()
        try:
            if not call.done.wait(timeout):
                call.abandoned = True
                raise busy("busy", f"the daemon's worker did not get to this request within {timeout:.0f} s",
                           retry_after=10, status=503)
        finally:
            with self._cv:
                self._waiting_calls -= 1
        if call.error is not None:
            raise call.error
        return call.result

    def queue_length(self) -> int:
        return len(self._queue)

    def pending_steps(self) -> int:
        """The work ahead of a job submitted now, in optimisation steps: every queued job's budget and what is
        left of the running one's (a device with less of it gets the next new session)."""
        with self._cv:
            queued = sum(job.max_steps for job in self._queue)
            running = self.running
        return queued + (max(0, running.max_steps - running.step) if running is not None else 0)

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; None unless queued."""
        with self._cv:
            return position_in(self._queue, job)

    def stop(self, job: Job, cancel: bool) -> bool:
        """Stop (keep the edit so far) or cancel (undo it); False when the job's outcome is already decided.
        A job that has not started is cancelled either way."""
        with self._cv:
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
        if queued:
            self._end(job, CANCELLED)
            return True
        return job.request(cancel)

    def close(self, timeout: float = 10.0) -> None:
        self.shut()
        self.join(timeout)

    def shut(self) -> None:
        """Refuse new work, cancel the queued jobs and calls and stop the running job at its next step; join()
        then waits for the thread (a daemon with several devices shuts them all before waiting for any)."""
        with self._cv:
            self._closed = True
            pending, calls = list(self._queue), list(self._calls)
            self._queue.clear()
            self._calls.clear()
            self._cv.notify()
        for job in pending:
            self._end(job, CANCELLED)
        for call in calls:
            call.error = ApiError(503, "shutting_down", "the daemon is shutting down")
            call.done.set()
        if self.running is not None:
            self.running.request(cancel=False)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ------------------------------------------------------------- worker side

    def run_pending_calls(self) -> None:
        while True:
            with self._cv:
                if not self._calls:
                    return
                call = self._calls.popleft()
            if call.abandoned:
                continue
            try:
                call.result = call.fn()
            except BaseException as exc:  # handed to the waiting request thread, which reports it
                call.error = exc
                _free_gpu_memory(exc)
            call.done.set()

    def _loop(self) -> None:
        if self._device is not None and self._device.type == "cuda" and self._device.index is not None:
            torch.cuda.set_device(self._device)  # what this thread allocates, and empty_cache(), go to its own GPU
        if self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)  # OpenMP's count is per thread: this worker's only
        self.torch_threads = torch.get_num_threads()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._calls or self._queue)
                if self._closed:
                    return
                job = self._queue.popleft() if self._queue and not self._calls else None
                self.running = job
            self.run_pending_calls()
            if job is not None:
                self._run(job)
                self.running = None

    def _run(self, job: Job) -> None:
        job.set_state(RUNNING)
        try:
            state = job.work(job, self._between_steps(job))
        except Exception as exc:
            error = describe_failure(exc, f"job {job.id}")
            if error.status >= 500:
                log.error("job %s failed", job.id, exc_info=exc)
            _free_gpu_memory(exc)
            self._end(job, FAILED, error=error)
            return
        self._end(job, state)

    def _between_steps(self, job: Job) -> Callable[[], None]:
        if self._gate is None:
            return self.run_pending_calls
        return lambda: self._gate.pause(job, self.run_pending_calls)

    @staticmethod
    def _end(job: Job, state: str, error: ApiError | None = None) -> None:
        job.closed = True
        job.on_end(job, state)  # first: a client that sees the final state may use the session at once
        job.set_state(state, reason=job.reason if state == DONE else None, error=error)


def _free_gpu_memory(exc: BaseException) -> None:
    """After an out-of-memory error, hand the cached blocks back so the next job starts clean."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
