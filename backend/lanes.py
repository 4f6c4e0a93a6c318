"""The daemon's devices: one lane per device (its worker thread and its model cache), and where a new session goes.

A session's tensors (latent, optimiser moments, a real layer's tuned generator copy) live on one
device, so a session is placed once, when it is made, on the lane with the least work, and every
later call and job of it runs on that lane. A failure on one lane (a CUDA out-of-memory error, say)
ends only that lane's job: the workers share nothing but the session and job records.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Iterator

import torch

from draggan_core import precision as precisions
from draggan_core.drag import DragConfig

from .config import Limits
from .jobs import Job, Worker
from .models import ModelCache, ModelCatalogue
from .sessions import Session, SessionStore
from .testgate import StepGate


@dataclasses.dataclass(eq=False)
class Lane:
    index: int
    device: torch.device
    worker: Worker
    models: ModelCache
    precision: str = "auto"  # the drag steps' number type asked for (DaemonConfig.precision)
    placing: int = 0  # new sessions being made on it right now (guarded by Lanes._lock)

    def new_drag_config(self, learning_rate: float) -> DragConfig:
        """A new session's drag settings on this lane: the model's step size in the daemon's precision."""
        return DragConfig(learning_rate=learning_rate, precision=self.precision)

    def memory_allocated(self) -> int | None:
        """Bytes of tensors on the lane's GPU as torch counts them (models, sessions, a running job's
        activations); None off CUDA, where only the session store's estimate is known."""
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.memory_allocated(self.device))

    def load(self, sessions: SessionStore) -> tuple[int, int, int, int]:
        """How busy the lane is, smallest first: the optimisation steps ahead of a new job, the sessions being
        placed on it now (so that requests arriving together spread), then the memory in use (torch's count
        on a GPU, the session store's estimate elsewhere), then its index (the first of equals)."""
        memory = self.memory_allocated()
        if memory is None:
            memory = sessions.usage(self.index)[1]
        return self.worker.pending_steps(), self.placing, memory, self.index

    def describe(self, sessions: SessionStore) -> dict:
        """Counts only, as /health gives them: never a session or job id."""
        count, estimated = sessions.usage(self.index)
        return {"index": self.index, "device": str(self.device), "queue_length": self.worker.queue_length(),
                "jobs_running": int(self.worker.running is not None), "queued_steps": self.worker.pending_steps(),
                "sessions": count, "session_bytes": estimated, "memory_allocated": self.memory_allocated(),
                "torch_threads": self.worker.torch_threads,
                "precision": precisions.resolve(self.precision, self.device),  # for generators of 128 px and more
                "models_loaded": list(self.models.loaded())}


def cpu_threads_per_worker(devices: list[torch.device]) -> int | None:
    """Torch threads for each CPU worker when there are several: the cores shared out between them.

    Each worker left at torch's default (a thread per core) would run cores x workers threads, and
    on a small box their spin-waits starve each other and the HTTP threads (benchmarks/README.md,
    "Several devices": a quarter of the throughput). One CPU worker keeps torch's default.
    """
    n_cpu = sum(1 for d in devices if d.type == "cpu")
    if n_cpu < 2:
        return None
    return max(1, torch.get_num_threads() // n_cpu)


class Lanes:
    """Every lane of the daemon, in the order of `draggan serve --device`."""

    def __init__(self, devices: list[torch.device], catalogue: ModelCatalogue, limits: Limits,
                 gate: StepGate | None, precision: str = "auto") -> None:
        threads = cpu_threads_per_worker(devices)
        self.all = [Lane(i, device,
                         Worker(limits.max_queued_jobs, limits.max_jobs_per_client, limits.max_waiting_calls, gate,
                                device=device, name=f"draggan-worker-{i}",
                                torch_threads=threads if device.type == "cpu" else None),
                         ModelCache(catalogue, device, limits.max_loaded_models), precision)
                    for i, device in enumerate(devices)]
        self._lock = threading.Lock()

    def of(self, owner: Session | Job) -> Lane:
        """The lane that holds a session, or runs a job."""
        return self.all[owner.lane]

    @contextlib.contextmanager
    def placing(self, sessions: SessionStore) -> Iterator[Lane]:
        """The lane for a new session, counted as busier while the block makes the session there."""
        with self._lock:
            lane = min(self.all, key=lambda candidate: candidate.load(sessions))
            lane.placing += 1
        try:
            yield lane
        finally:
            with self._lock:
                lane.placing -= 1

    def device_names(self) -> str:
        """'cpu', or 'cuda:0,cuda:1' for several lanes: what /health and the start line call the device."""
        return ",".join(str(lane.device) for lane in self.all)

    def loaded_models(self) -> dict:
        """The models loaded on any lane, by name (any one lane's copy: they are the same checkpoint)."""
        return {name: model for lane in self.all for name, model in lane.models.loaded().items()}

    def close(self, timeout: float = 10.0) -> None:
        """Stop every worker (all are told first, so their running jobs stop together), then wait for them."""
        for lane in self.all:
            lane.worker.shut()
        for lane in self.all:
            lane.worker.join(timeout)
