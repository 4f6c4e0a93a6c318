"""A real `draggan serve` process for tests: of what only a process shows (signals, raw sockets, its log),
and as the daemon of the editor tests and the workflow tests (running_daemon: its test gate on, so a
test can hold a job in progress with tests/editor_gate.py instead of hoping it lasts).

The daemon serves a tiny random generator on a free loopback port, with one torch thread (the
test machines have two cores, shared).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from conftest import make_generator
from draggan_core.formats import native

REPO = Path(__file__).resolve().parents[1]
MODEL = "tiny"
START_TIMEOUT_S = 120  # importing torch on a loaded machine


def write_model(models_dir: Path) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    native.write(make_generator(seed=1, img_resolution=64, channel_base=128, channel_max=16),
                 str(models_dir / f"{MODEL}.safetensors"))
    return models_dir


def write_tiny_model(models_dir: Path) -> None:
    """The editor tests' model: wider than write_model's, so that drags and inversions visibly change pixels."""
    models_dir.mkdir(parents=True, exist_ok=True)
    native.write(make_generator(img_resolution=64, channel_base=2048, channel_max=48, z_dim=32, w_dim=32),
                 str(models_dir / f"{MODEL}.safetensors"))


def dead_url() -> str:
    """A loopback URL where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@dataclasses.dataclass
class ServeProcess:
    proc: subprocess.Popen
    port: int
    stdout: list[str]  # lines so far (a thread reads them)
    stderr_path: Path  # the log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def output(self) -> str:
        """Everything it printed so far: stdout, then its log (stderr)."""
        return "".join(self.stdout) + self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(models_dir: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None,
                  log_name: str = "serve.log") -> Iterator[ServeProcess]:
    """`python -m backend.cli serve --port 0 --device cpu --models DIR ARGS...`; killed afterwards if it still runs."""
    cmd = [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--device", "cpu", "--models",
           str(models_dir), *args]
    environ = {k: v for k, v in os.environ.items() if k != "DRAGGAN_TOKEN"}
    environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    environ.update(env or {})  # may set the threads too
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / log_name
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: list[str] = []
    first: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            first.put(line)
        first.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        try:
            line = first.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            line = None
        match = re.search(r"listening on http://\S+:(\d+)/api/v1", line or "")
        if not match:
            raise RuntimeError(f"draggan serve did not start: {line!r}\n{stderr_path.read_text()}")
        yield ServeProcess(proc, int(match.group(1)), lines, stderr_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@contextlib.contextmanager
def running_daemon(models_dir: Path, token: str | None = None, log_path: Path | None = None) -> Iterator[str]:
    """The base URL of a daemon with its test gate on, listening on 127.0.0.1; ended by SIGTERM afterwards,
    as an artist's launcher ends it. log_path: where its log goes (a fresh temporary folder when None)."""
    log_path = log_path or Path(tempfile.mkdtemp(prefix="draggan-daemon-")) / "daemon.log"
    args = ["--host", "127.0.0.1"] + (["--token", token] if token else [])
    with serve_process(models_dir, log_path.parent, *args, env={"DRAGGAN_TEST_GATE": "1"},
                       log_name=log_path.name) as serve:
        try:
            yield serve.url
        finally:
            serve.proc.terminate()
            try:
                serve.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass  # serve_process kills it
