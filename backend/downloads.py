"""Model downloads: jobs that fetch catalogue checkpoints into the models folder on their own threads.

They never run on a device's worker (backend/jobs.py): a download waits on the network, not the GPU,
and must not hold up drags. At most Limits.max_downloads run at once and max_queued_downloads
wait; their records live in the daemon's JobStore beside drag and invert jobs, so /jobs/<id> finds
them. A cancelled or failed download keeps its partial file, which the next download of the same
model resumes; a file whose checksum does not match is deleted, never kept as the model.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from draggan_core.download import Cancel, ChecksumMismatch, DownloadCancelled, DownloadError, download

from .config import Limits
from .errors import ApiError, busy, describe_failure
from .jobs import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, JobClock, JobStore, position_in
from .models import ModelCatalogue
from .sessions import new_id

log = logging.getLogger("draggan.daemon")

DOWNLOAD = "download"  # the kind of these jobs, beside 'drag' and 'invert'


@dataclasses.dataclass(eq=False)
class DownloadJob:
    """One model's download. Its URL and file come from the catalogue entry, never from the request."""
    model: str
    url: str
    dest: Path
    size: int | None  # bytes, when the catalogue says
    sha256: str | None
    client: str = ""  # who asked (the remote address), for the log
    kind: str = DOWNLOAD
    id: str = dataclasses.field(default_factory=new_id)
    state: str = QUEUED
    created: float = dataclasses.field(default_factory=time.time)
    clock: JobClock = dataclasses.field(default_factory=JobClock)
    bytes_done: int = 0
    bytes_total: int | None = None
    resumed_from: int | None = None  # bytes already there from an earlier download, once the transfer starts
    error: ApiError | None = None
    cancel: Cancel = dataclasses.field(default_factory=Cancel, repr=False)

    def __post_init__(self) -> None:
        self.bytes_total = self.size

    def progress(self, done: int, total: int | None) -> None:
        """The downloader's callback, on the download's thread; request threads only read these fields."""
        if self.resumed_from is None:
            self.resumed_from = done
        self.bytes_done = done
        if total is not None:
            self.bytes_total = total

    def set_state(self, state: str, error: ApiError | None = None) -> None:
        self.state, self.error = state, error
        self.clock.enter(state)
        detail = f": {error.message}" if error else ""
        log.info("job %s download of %s: %s%s (%d of %s bytes)", self.id, self.model, state, detail,
                 self.bytes_done, self.bytes_total if self.bytes_total is not None else "?")

    def eta_seconds(self) -> float | None:
        """Remaining time at the rate of this transfer so far (bytes resumed from an earlier one do not count)."""
        elapsed = self.clock.elapsed()
        fetched = self.bytes_done - (self.resumed_from or 0)
        if self.state != RUNNING or not elapsed or fetched <= 0 or self.bytes_total is None:
            return None
        return max(0, self.bytes_total - self.bytes_done) * elapsed / fetched

    def stored_bytes(self) -> int:
        """What the record holds for JobStore's memory bound: no PNGs, only small fields."""
        return 0

    def describe(self, queue_position: int | None) -> dict[str, Any]:
        return {
            "job_id": self.id, "kind": self.kind, "model": self.model, "state": self.state,
            "queue_position": queue_position, "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
            "resumed_from": self.resumed_from, "eta_seconds": self.eta_seconds(),
            "elapsed_seconds": self.clock.elapsed(), "error": self.error.body()["error"] if self.error else None,
        }


class DownloadManager:
    """Runs download jobs on a fixed pool of max_downloads threads, from a queue of at most max_queued_downloads.

    One model is downloaded by one job at a time (its partial file is that job's alone), so a second request
    for it is refused until the first has ended, also while a cancelled one is winding down.
    """

    def __init__(self, catalogue: ModelCatalogue, jobs: JobStore, limits: Limits) -> None:
        self.catalogue, self.jobs, self.limits = catalogue, jobs, limits
        self._queue: collections.deque[DownloadJob] = collections.deque()
        self._running: set[DownloadJob] = set()
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"draggan-download-{i + 1}", daemon=True)
                         for i in range(max(1, limits.max_downloads))]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ request side

    def start(self, name: str, client: str = "") -> DownloadJob:
        """Queue the download of the catalogue model `name`, or refuse it with an ApiError that says why."""
        with self._cv:
            if self._closed:
                raise ApiError(503, "shutting_down", "the daemon is shutting down")
            info, dest = self.catalogue.download_target(name)
            if info.name in self._active_names():
                raise ApiError(409, "download_running", f"model {info.name!r} is already being downloaded (or its "
                                                        f"cancelled download is ending); wait until it ends")
            if len(self._queue) >= self.limits.max_queued_downloads:
                raise busy("download_queue_full", f"{len(self._queue)} downloads are already waiting (at most "
                                                  f"{self.limits.max_queued_downloads})", retry_after=30)
            job = DownloadJob(info.name, info.url or "", dest, info.size, info.sha256, client=client,
                              id=self.jobs.new_id())
            self.jobs.add(job)
            self._queue.append(job)
            self._cv.notify()
        log.info("job %s download of %s queued for %s", job.id, job.model, client or "?")
        return job

    def _active_names(self) -> set[str]:
        return {job.model for job in (*self._queue, *self._running)}

    def active_names(self) -> set[str]:
        """Models whose download is queued or running."""
        with self._cv:
            return self._active_names()

    def queue_position(self, job: DownloadJob) -> int | None:
        """1 for the next download to start; None unless queued."""
        with self._cv:
            return position_in(self._queue, job)

    def stop(self, job: DownloadJob, cancel: bool = True) -> bool:
        """Cancel the download (a stop is the same: a download has no partial result to keep other than its
        partial file, which is kept either way); False when it has already ended."""
        with self._cv:
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
            elif job.state in FINAL_STATES:
                return False
        if queued:
            job.set_state(CANCELLED)
        else:
            job.cancel.cancel()  # the transfer stops within a chunk; its thread then marks the job cancelled
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything (partial files are kept) and wait up to `timeout` s for the threads. A download still
        connecting cannot be interrupted and ends within Limits.download_timeout_s on its daemon thread."""
        with self._cv:
            self._closed = True
            pending, running = list(self._queue), list(self._running)
            self._queue.clear()
            self._cv.notify_all()
        for job in pending:
            job.set_state(CANCELLED)
        for job in running:
            job.cancel.cancel()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------- thread side

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._queue)
                if self._closed:
                    return
                job = self._queue.popleft()
                self._running.add(job)
            state, error = self._run(job)
            with self._cv:  # first: once clients see the final state, a new download of the model may start
                self._running.discard(job)
            job.set_state(state, error)

    def _run(self, job: DownloadJob) -> tuple[str, ApiError | None]:
        """The download's final state and error; its failures end the job, never the thread."""
        job.set_state(RUNNING)
        try:
            download(job.url, job.dest, size=job.size, sha256=job.sha256, progress=job.progress,
                     timeout=self.limits.download_timeout_s, cancel=job.cancel,
                     max_bytes=self.limits.max_download_bytes)
        except DownloadCancelled:
            return CANCELLED, None
        except ChecksumMismatch as e:
            return FAILED, ApiError(502, "checksum_mismatch", str(e))
        except DownloadError as e:
            return FAILED, ApiError(502, "download_failed", str(e))
        except OSError as e:
            return FAILED, ApiError(500, "cannot_write", f"could not write the model file in the daemon's models "
                                                         f"folder: {e.strerror or 'input/output error'}")
        except Exception as exc:  # a bug: the details go to the log under the job's name
            log.error("job %s failed", job.id, exc_info=exc)
            return FAILED, describe_failure(exc, f"job {job.id}")
        return DONE, None
