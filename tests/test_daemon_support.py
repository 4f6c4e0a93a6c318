"""Fixtures and helpers for the daemon tests: a real daemon (waitress, loopback, a free port) over
tiny random generators, the stdlib client pointed at it, and a way to pace the drag loop."""
from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import torch
from PIL import Image

from draggan_client.client import DaemonClient
from backend.config import DaemonConfig, Limits
from backend.daemon import Daemon
from backend.server import DaemonServer
from conftest import make_generator
from draggan_core.drag import DragSession
from draggan_core.formats import native

TINY = "tiny"  # 64 px, the model most tests drag
SMALL = "small"  # 32 px
LIMITS = Limits(max_body_bytes=2 * 1024 * 1024, max_pixels=250_000, max_side=1024, max_points=8, max_steps=500,
                max_sessions=32, max_finished_jobs=128)


def write_models(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    native.write(make_generator(seed=1, img_resolution=64, channel_base=128, channel_max=16),
                 str(directory / f"{TINY}.safetensors"))
    native.write(make_generator(seed=2, img_resolution=32, channel_base=128, channel_max=16),
                 str(directory / f"{SMALL}.safetensors"))
    return directory


@contextlib.contextmanager
def running_daemon(models_dir: Path, **overrides) -> Iterator[DaemonServer]:
    """A daemon serving in a background thread until the block ends, on one torch thread (the test
    models are tiny: more threads only fight over the 2 cores)."""
    settings = dict(host="127.0.0.1", port=0, device="cpu", models_dir=models_dir, limits=LIMITS)
    settings.update(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    server = DaemonServer(DaemonConfig(**settings))
    server.start_thread()
    try:
        yield server
    finally:
        server.close()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(models_dir) -> Iterator[DaemonServer]:
    with running_daemon(models_dir) as s:
        yield s


@pytest.fixture
def client(server) -> DaemonClient:
    return DaemonClient(server.url, timeout=30)


def http_session() -> requests.Session:
    """requests without the environment's proxies, which must not capture loopback traffic."""
    session = requests.Session()
    session.trust_env = False
    return session


def state(server: DaemonServer) -> Daemon:
    return server.app.extensions["draggan"]


class StepControl:
    """Paces DragSession.run: after every step the worker waits for `gate` and sleeps `delay` s."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.delay = 0.0


@pytest.fixture
def steps(monkeypatch) -> Iterator[StepControl]:
    control = StepControl()
    original = DragSession.run

    def paced_run(self, *args, **kwargs):
        for step in original(self, *args, **kwargs):
            yield step
            control.gate.wait(30)
            time.sleep(control.delay)

    monkeypatch.setattr(DragSession, "run", paced_run)
    yield control
    control.gate.set()


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_of(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def wait_idle(client: DaemonClient) -> None:
    wait_for(lambda: (lambda h: h["jobs_running"] == 0 and h["queue_length"] == 0)(client.health()),
             what="the worker to be idle")
