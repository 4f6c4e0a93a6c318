"""GIMP's Cancel kills the plug-in process (SIGKILL): its watchdog must then cancel the job on the
daemon, which puts the session back as it was. Real daemon, the plug-in's own files, system python3
(the interpreter GIMP uses), no GIMP needed."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "gimp"))
from gimp_daemon import MODEL, REPO, running_daemon, write_tiny_model  # noqa: E402

PLUGIN = REPO / "plugin_gimp" / "draggan"
sys.path.insert(0, str(PLUGIN))
from draggan_client import DaemonClient  # noqa: E402

TOKEN = "cancel-test-token-0123456789"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

# What the plug-in does around a job (draggan.py uses the same Watchdog), then dies as GIMP's Cancel makes it die.
PLUGIN_STAND_IN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, ".")
    from draggan_watchdog import Watchdog
    url, job, mode = sys.argv[1:4]
    watchdog = Watchdog(url, os.environ["T"])
    watchdog.job(job)
    if mode == "done":
        watchdog.done()
        sys.exit(0)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    write_tiny_model(models)
    with running_daemon(models, token=TOKEN, log_path=tmp_path_factory.mktemp("log") / "daemon.log") as url:
        yield url


def start_long_drag(client):
    made = client.generate(seed=1, model=MODEL)
    job = client.drag(made["session_id"], handles=[[10, 10]], targets=[[50, 50]], steps=2000, preview_every=0)
    return made["session_id"], job["job_id"]


def wait_state(client, job_id, states, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.job(job_id)
        if status["state"] in states:
            return status
        time.sleep(0.2)
    return client.job(job_id)


def run_stand_in(url, job_id, mode):
    return subprocess.run([PYTHON, "-I", "-c", PLUGIN_STAND_IN, url, job_id, mode], cwd=PLUGIN,
                          env={"PATH": "/usr/bin:/bin", "T": TOKEN}, timeout=60)


def test_a_killed_plugin_gets_its_job_cancelled(daemon):
    client = DaemonClient(daemon, token=TOKEN)
    session_id, job_id = start_long_drag(client)
    assert wait_state(client, job_id, ("running",))["state"] == "running"
    p = run_stand_in(daemon, job_id, "kill")
    assert p.returncode == -signal.SIGKILL
    status = wait_state(client, job_id, ("cancelled", "done", "failed"))
    assert status["state"] == "cancelled", status
    assert client.session(session_id)["handles"] == []  # the session is back as before the job


def test_a_plugin_that_finishes_leaves_its_job_alone(daemon):
    client = DaemonClient(daemon, token=TOKEN)
    session_id, job_id = start_long_drag(client)
    try:
        assert run_stand_in(daemon, job_id, "done").returncode == 0
        time.sleep(1.0)
        assert client.job(job_id)["state"] in ("queued", "running")
    finally:
        client.cancel(job_id)
        wait_state(client, job_id, ("cancelled", "done", "failed"))
