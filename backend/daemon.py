"""The daemon's state: its devices (lanes), models, sessions, jobs, downloads and decode budget, owned by one app."""
from __future__ import annotations

import dataclasses
import logging

from flask import current_app

from draggan_core import registry
from draggan_core.devices import pick_devices

from .budget import DecodeBudget
from .config import DaemonConfig
from .downloads import DownloadManager
from .jobs import JobStore
from .lanes import Lanes
from .models import ModelCatalogue
from .sessions import SessionStore
from .testgate import StepGate

log = logging.getLogger("draggan.daemon")


@dataclasses.dataclass(eq=False)
class Daemon:
    config: DaemonConfig
    lanes: Lanes  # one worker and model cache per device
    catalogue: ModelCatalogue
    sessions: SessionStore
    jobs: JobStore
    gate: StepGate | None  # end-to-end tests only
    decode_budget: DecodeBudget
    downloads: DownloadManager  # model downloads, on their own threads (never a device's worker)

    @classmethod
    def start(cls, config: DaemonConfig) -> "Daemon":
        """Read the catalogue file (registry.CatalogueError when it is unusable), pick the devices (ValueError when
        a requested one is missing) and start their workers and the download threads."""
        zoo = registry.load_catalogue(config.catalogue)
        if config.catalogue is not None:
            replaced = sorted(n for n in registry.ZOO if zoo[n] is not registry.ZOO[n])
            log.info("catalogue %s: %d models of its own%s", config.catalogue,
                     sum(1 for n in zoo if n not in registry.ZOO),
                     f", replacing the built-in {', '.join(replaced)}" if replaced else "")
        devices = pick_devices(config.device)
        limits = config.limits
        gate = StepGate() if config.test_gate else None
        catalogue = ModelCatalogue(config.models_dir or registry.models_dir(), zoo)
        jobs = JobStore(limits.max_finished_jobs, limits.max_finished_job_bytes, config.node)
        return cls(config, Lanes(devices, catalogue, limits, gate, config.precision), catalogue,
                   SessionStore(limits.max_sessions, limits.max_session_bytes, config.node), jobs, gate,
                   DecodeBudget(limits.max_decoded_bytes, limits.decode_wait_s),
                   DownloadManager(catalogue, jobs, limits))

    def close(self) -> None:
        """Stop downloads (at once: their partial files are kept for a later resume) and the workers."""
        self.downloads.close()
        self.lanes.close()


def current() -> Daemon:
    """The state of the app serving the current request."""
    return current_app.extensions["draggan"]
