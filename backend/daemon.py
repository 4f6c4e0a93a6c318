"""The daemon's state: device, models, sessions, jobs, the worker and the decode budget, owned by one app."""
from __future__ import annotations

import dataclasses

import torch
from flask import current_app

from draggan_core import registry
from draggan_core.devices import pick_device

from .budget import DecodeBudget
from .config import DaemonConfig
from .jobs import JobStore, Worker
from .models import ModelCatalogue
from .sessions import SessionStore
from .testgate import StepGate


@dataclasses.dataclass(eq=False)
class Daemon:
    config: DaemonConfig
    device: torch.device
    catalogue: ModelCatalogue
    sessions: SessionStore
    jobs: JobStore
    worker: Worker
    gate: StepGate | None  # end-to-end tests only
    decode_budget: DecodeBudget

    @classmethod
    def start(cls, config: DaemonConfig) -> "Daemon":
        """Pick the device (ValueError when the requested one is missing) and start the worker thread."""
        device = pick_device(config.device)
        limits = config.limits
        gate = StepGate() if config.test_gate else None
        return cls(config, device,
                   ModelCatalogue(config.models_dir or registry.models_dir(), device, limits.max_loaded_models),
                   SessionStore(limits.max_sessions, limits.max_session_bytes), JobStore(limits.max_finished_jobs, limits.max_finished_job_bytes),
                   Worker(limits.max_queued_jobs, limits.max_jobs_per_client, limits.max_waiting_calls, gate), gate,
                   DecodeBudget(limits.max_decoded_bytes, limits.decode_wait_s))

    def close(self) -> None:
        self.worker.close()


def current() -> Daemon:
    """The state of the app serving the current request."""
    return current_app.extensions["draggan"]
