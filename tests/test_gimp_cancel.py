"""GIMP's Cancel kills the plug-in process (SIGKILL): its watchdog must then cancel the job on the
daemon (a drag: the session goes back as it was; a real layer's inversion: the session is dropped).
Real daemon, the plug-in's own files, system python3 (the interpreter GIMP uses), no GIMP needed.
The jobs are held at the daemon's test gate while the plug-in's stand-in acts, so they are still in
progress on any machine. Also the plug-in's whole conversation for a real layer (the shared
draggan_client.workflow with the dialog's settings from draggan_logic) against that daemon."""
from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "gimp"))
import editor_gate as gate  # noqa: E402
from daemon_process import MODEL, REPO, running_daemon, write_tiny_model  # noqa: E402

PLUGIN = REPO / "plugin_gimp" / "draggan"
sys.path.insert(0, str(PLUGIN))
sys.path.insert(0, str(REPO))  # draggan_client from the repository, not the plug-in folder's copy (maybe stale)
import draggan_logic as logic  # noqa: E402
from draggan_client import workflow  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402
from draggan_client.pngcodec import encode_png  # noqa: E402

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
def installed(tmp_path_factory):
    """The plug-in folder as the install script writes it (with its copy of the client side)."""
    plugins = tmp_path_factory.mktemp("plug-ins")
    subprocess.run(["bash", str(REPO / "scripts" / "install_gimp_plugin.sh"), str(plugins)], check=True,
                   capture_output=True)
    return plugins / "draggan"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    write_tiny_model(models)
    with running_daemon(models, token=TOKEN, log_path=tmp_path_factory.mktemp("log") / "daemon.log") as url:
        yield url


def start_held_drag(client, url):
    """(session id, job id) of a drag that waits at the test gate (armed by the caller) until it is
    cancelled or the gate opens."""
    made = client.generate(seed=1, model=MODEL)
    job = client.drag(made["session_id"], handles=[[10, 10]], targets=[[50, 50]], steps=50, preview_every=0)
    assert gate.wait_held(url, TOKEN), client.job(job["job_id"])
    return made["session_id"], job["job_id"]


def wait_state(client, job_id, states, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.job(job_id)
        if status["state"] in states:
            return status
        time.sleep(0.2)
    return client.job(job_id)


def run_stand_in(folder, url, job_id, mode):
    return subprocess.run([PYTHON, "-I", "-c", PLUGIN_STAND_IN, url, job_id, mode], cwd=folder,
                          env={"PATH": "/usr/bin:/bin", "T": TOKEN}, timeout=60)


def test_a_killed_plugin_gets_its_job_cancelled(daemon, installed):
    client = DaemonClient(daemon, token=TOKEN)
    with gate.holding(daemon, TOKEN):
        session_id, job_id = start_held_drag(client, daemon)
        p = run_stand_in(installed, daemon, job_id, "kill")
        assert p.returncode == -signal.SIGKILL
        status = wait_state(client, job_id, ("cancelled", "done", "failed"))
    assert status["state"] == "cancelled", status
    assert client.session(session_id)["handles"] == []  # the session is back as before the job


def test_a_plugin_that_finishes_leaves_its_job_alone(daemon, installed):
    client = DaemonClient(daemon, token=TOKEN)
    with gate.holding(daemon, TOKEN):
        session_id, job_id = start_held_drag(client, daemon)
        try:
            assert run_stand_in(installed, daemon, job_id, "done").returncode == 0
            time.sleep(1.0)  # room for a wrong cancel to arrive
            assert client.job(job_id)["state"] == "running"  # still held: nobody cancelled it
        finally:
            client.cancel(job_id)
            wait_state(client, job_id, ("cancelled", "done", "failed"))


def plain_layer(client):
    """A 200x150 RGBA layer the daemon did not make: the tiny model's picture pasted off-centre on grey."""
    pic = np.asarray(Image.open(io.BytesIO(client.generate(seed=3, model=MODEL)["image"])).convert("RGBA"))
    layer = np.full((150, 200, 4), 200, np.uint8)
    layer[..., 3] = 255
    layer[40:104, 70:134] = pic
    return layer


def test_a_killed_plugin_gets_its_inversion_cancelled(daemon, installed):
    client = DaemonClient(daemon, token=TOKEN)
    layer = plain_layer(client)
    with gate.holding(daemon, TOKEN):
        made = client.create_session(encode_png(200, 150, 4, layer.tobytes()), model=MODEL,
                                     invert=logic.invert_settings(2000, 0, 0))
        job_id = made["job_id"]
        assert job_id and not made["reused"]
        assert gate.wait_held(daemon, TOKEN), client.job(job_id)
        assert run_stand_in(installed, daemon, job_id, "kill").returncode == -signal.SIGKILL
        status = wait_state(client, job_id, ("cancelled", "done", "failed"))
    assert status["state"] == "cancelled", status
    with pytest.raises(DaemonError) as e:  # a cancelled inversion leaves no session behind
        client.session(made["session_id"])
    assert e.value.code == "unknown_session"


class Counting(DaemonClient):
    """The real client, counting the layers sent to the daemon."""

    sent_layers = 0

    def create_session(self, image_png, from_session=None, **kwargs):
        self.sent_layers += from_session is None
        return super().create_session(image_png, from_session=from_session, **kwargs)


def test_the_plugins_edit_of_a_real_layer(daemon):
    """What DragGAN Drag does on a plain layer (draggan.py's _drag): invert the selected part, drag,
    full-size result with the layer's own bytes outside the selection; the same layer again, with the
    image's record, gets the daemon's session for its pixels; the result layer, with its own record,
    is dragged on that session without sending anything but the drag."""
    client = Counting(daemon, token=TOKEN)
    layer = plain_layer(client)
    mask = np.zeros((150, 200), np.uint8)
    mask[50:95, 80:125] = 255
    drags = [((95.0, 70.0), (105.0, 75.0))]
    jobs, kinds = [], set()

    def edit(pixels, record, trusted):
        edit = workflow.Edit(200, 150, pixels.tobytes(), 4, drags, workflow.editable_mask(mask.tobytes(), 200, 150),
                             logic.drag_settings(8, 20.0, feather=4), model=MODEL,
                             invert=logic.invert_settings(20, 0, 10), trusted=trusted)
        return workflow.run(client, record, edit, on_job=jobs.append, on_status=lambda s: kinds.add(s.get("kind")))

    first = edit(layer, None, True)
    assert first.real and first.psnr is not None and client.sent_layers == 1
    assert kinds == {"invert", "drag"} and len(jobs) == 2
    x, y, width, height = first.record.region
    assert x <= 80 and y <= 50 and x + width >= 125 and y + height >= 95
    assert first.record.origin == workflow.REAL and first.record.selection_bbox == [80, 50, 45, 45]
    result = np.asarray(Image.open(io.BytesIO(first.png)).convert("RGBA"))
    assert result.shape == layer.shape
    outside = mask == 0
    assert (result[outside] == layer[outside]).all()  # bit-exact outside the selection
    assert np.abs(result[~outside].astype(int) - layer[~outside]).mean() > 1
    ch = first.changed
    assert ch and ch["x"] >= 80 and ch["y"] >= 50 and ch["x"] + ch["width"] <= 125 and ch["y"] + ch["height"] <= 95

    jobs.clear()
    again = edit(layer, first.record, False)  # the source layer again: only the image remembers the session
    assert again.record.session_id == first.record.session_id and client.sent_layers == 2
    assert len(jobs) == 1  # the daemon found its session for these pixels: no new inversion
    jobs.clear()
    shown = np.asarray(Image.open(io.BytesIO(again.png)).convert("RGBA"))
    on_result = edit(shown, again.record, True)  # the result layer: its own record, nothing sent but the drag
    assert on_result.record.session_id == first.record.session_id and len(jobs) == 1 and client.sent_layers == 2
