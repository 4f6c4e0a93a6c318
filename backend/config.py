"""The daemon's settings: where it listens, which device and models it uses, and its limits.

Limits exist so that one careless or hostile request cannot exhaust the machine: every request
field that scales work or memory has a ceiling, and every ceiling is answered with a 4xx that
names it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclasses.dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024  # whole request; base64 PNGs travel inside the JSON
    max_pixels: int = 16_000_000  # width * height of any image or mask sent
    max_side: int = 8192  # pixels per side of any image or mask sent
    max_points: int = 64  # handle/target pairs per drag
    max_steps: int = 2000  # optimisation steps per drag job
    max_invert_steps: int = 2000  # optimisation steps per inversion stage (w, w+, pti)
    max_sessions: int = 16  # least recently used idle sessions beyond this are dropped; busy ones never (429)
    max_session_bytes: int = 2 * 1024 ** 3  # estimated tensor memory of all sessions together
    max_finished_jobs: int = 32  # finished job records (with their result PNGs) kept for polling
    max_finished_job_bytes: int = 512 * 1024 ** 2  # ... and the bytes of their PNGs together
    max_loaded_models: int = 2  # generators kept in memory
    call_timeout_s: float = 300.0  # how long /generate or /sessions waits for the worker (clients wait longer)
    max_queued_jobs: int = 8  # drag and invert jobs waiting for the worker, all clients together (429 queue_full)
    max_jobs_per_client: int = 4  # queued or running jobs of one client address, so no client fills the queue
    max_waiting_calls: int = 4  # request threads waiting for the worker (/generate, /sessions); fewer than
    #                             DaemonConfig.threads, so status, stop and cancel always find a free thread


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    models_dir: Path | None = None  # None: draggan_core.registry.models_dir()
    token: str | None = None  # when set, every request needs "Authorization: Bearer <token>"
    threads: int = 8  # waitress request threads (the GPU work itself runs on one worker thread)
    test_gate: bool = False  # end-to-end tests only: jobs can be held at a step (backend/testgate.py)
    limits: Limits = dataclasses.field(default_factory=Limits)
