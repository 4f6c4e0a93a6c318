"""A real DragGAN daemon (`python -m backend.cli serve`) on a free loopback port, serving a tiny
random generator, for the GIMP plug-in tests. Its test gate is on, so a test can hold a job in
progress (tests/editor_gate.py) instead of hoping the job lasts long enough."""
from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny"


def write_tiny_model(models_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_generator  # noqa: E402
    from draggan_core.formats import native

    models_dir.mkdir(parents=True, exist_ok=True)
    native.write(make_generator(img_resolution=64, channel_base=2048, channel_max=48, z_dim=32, w_dim=32),
                 str(models_dir / f"{MODEL}.safetensors"))


def dead_url() -> str:
    """A loopback URL where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def running_daemon(models_dir: Path, token: str | None = None, log_path: Path | None = None):
    """Yields the daemon's base URL; the daemon is stopped afterwards."""
    cmd = [sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--models",
           str(models_dir), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DRAGGAN_TEST_GATE="1")
    env.pop("DRAGGAN_TOKEN", None)
    if token:
        cmd += ["--token", token]
    log = open(log_path or os.devnull, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
            log.write(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            first = None
        match = re.search(r"listening on (http://\S+?)/api/v1", first or "")
        if not match:
            raise RuntimeError(f"the daemon did not start: {first!r} (see {log_path})")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
