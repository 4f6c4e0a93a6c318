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
    max_decoded_bytes: int = 256 * 1024 ** 2  # decoded pixels that all requests in flight hold together
    #                                           (backend/budget.py): two 16 Mpixel RGB layers, which cost 8 bytes
    #                                           a pixel while they become RGBA; past it a request waits, then 503 busy
    decode_wait_s: float = 5.0  # how long a request waits for room in max_decoded_bytes before that 503
    max_png_chunks: int = 100_000  # chunks in one PNG (400 bad_png): writers use a few to some thousands (8-64 KiB
    #                                image data chunks); millions of empty ones only burn CPU time in the parser
    max_points: int = 64  # handle/target pairs per drag
    max_steps: int = 2000  # optimisation steps per drag job
    max_invert_steps: int = 2000  # optimisation steps per inversion stage (w, w+, pti)
    max_sessions: int = 16  # sessions a device holds: the least recently used idle ones beyond this are dropped;
    #                         busy ones never (429). Per device: a box with four GPUs holds four times as many
    max_session_bytes: int = 2 * 1024 ** 3  # estimated tensor memory of one device's sessions together (their
    #                                         states too): docs/studio.md sizes a session at 256 to 1024 px
    max_states_per_session: int = 16  # states a session keeps for drags to start from (from_state), its initial
    #                                   one included (at least 2 are kept); past it the oldest non-initial one is
    #                                   dropped (410 state_gone). One is a latent, its optimiser moments and the
    #                                   handles' templates, some 60 KB for a 512 px model, counted in the above
    max_finished_jobs: int = 32  # finished job records (with their result PNGs) kept for polling
    max_finished_job_bytes: int = 512 * 1024 ** 2  # ... and the bytes of their PNGs together
    max_loaded_models: int = 2  # generators kept in memory, on each device (each has its own copies)
    call_timeout_s: float = 300.0  # how long /generate or /sessions waits for a worker (clients wait longer)
    max_queued_jobs: int = 8  # drag and invert jobs waiting for one device's worker, all clients together (429
    #                           queue_full); each device has its own queue, and a session's jobs wait in its device's
    max_jobs_per_client: int = 4  # queued or running jobs of one client address on one device, so no client fills
    #                               a queue
    max_waiting_calls: int = 4  # request threads waiting for one device's worker (/generate, /sessions); with
    #                             several devices the HTTP threads grow so that these waits together stay fewer
    #                             than them (DaemonConfig.request_threads): status, stop and cancel always find one
    max_downloads: int = 2  # model downloads running at once, each on its own thread (never the GPU worker's);
    #                         more would only split the same bandwidth
    max_queued_downloads: int = 8  # downloads waiting for one of those threads (429 download_queue_full)
    max_download_bytes: int = 4 * 1024 ** 3  # one checkpoint whose size the catalogue does not give; the largest
    #                                          public StyleGAN pickles are a few hundred MB. Past it the job fails
    download_timeout_s: float = 30.0  # to connect, and the longest silence from the server mid-download, before
    #                                   the job fails (downloading again resumes it)


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold, enforced by backend/httpserver.py before the app sees a request, so that
    slow, idle or unauthorised clients cannot starve the daemon of connections, threads or memory."""
    max_connections: int = 256  # open connections in all; past it a new connection closes the one idle longest
    max_connections_per_client: int = 32  # ... and of one client address (all local clients share 127.0.0.1)
    header_timeout_s: float = 10.0  # a request line and headers must be complete this long after their first
    #                                 byte; an idle connection (keep-alive, or nothing sent yet) closes after it
    body_grace_s: float = 10.0  # after the headers, a body may take this long before its rate is checked:
    min_body_bytes_per_s: int = 32 * 1024  # ... then it must have arrived at this rate on average, or it closes
    max_header_bytes: int = 64 * 1024  # request line and headers together (431 headers_too_large)
    linger_s: float = 5.0  # after an error answer that ends a connection (401, 413...), what the client still
    #                        sends is read and dropped this long, so that it gets the answer rather than a reset
    shutdown_grace_s: float = 5.0  # on SIGTERM/SIGINT: time for the running job's last step and in-flight answers


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps, a comma-separated list of those (one worker each,
    #                       'cpu,cpu' in tests) or all (every CUDA GPU): draggan_core.devices.pick_devices
    node: str | None = None  # this daemon's name behind a load balancer, carried by its session and job ids
    precision: str = "auto"  # the drag steps' number type on every device (draggan_core.precision: 'auto' is bf16
    #                          on a CPU with native bf16, else fp32; /health says what each device resolved it to)
    models_dir: Path | None = None  # None: draggan_core.registry.models_dir()
    catalogue: Path | None = None  # a studio's catalogue file (JSON) added to the built-in registry; checked at start
    token: str | None = None  # when set, every request needs "Authorization: Bearer <token>"
    trusted_proxy: str | None = None  # a load balancer's IP address: requests from it come from the client its
    #                                   X-Forwarded-For names (waitress's trusted_proxy), for the per-client bounds
    threads: int = 8  # waitress request threads for one device (the GPU work runs on the devices' worker threads)
    test_gate: bool = False  # end-to-end tests only: jobs can be held at a step (backend/testgate.py)
    limits: Limits = dataclasses.field(default_factory=Limits)
    connections: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)

    def request_threads(self, devices: int) -> int:
        """HTTP request threads for a daemon with `devices` workers: `threads`, and room for each further device's
        waiting calls, so that however many wait for workers, `threads - max_waiting_calls` stay free."""
        return self.threads + self.limits.max_waiting_calls * (devices - 1)
