"""A daemon with several devices (`draggan serve --device cpu,cpu`: two workers on the CPU), over real HTTP:
two sessions drag at the same time, each on its own device; a new session goes to the device with the least
work and its later jobs stay there; /health reports each device in counts; a failure on one device fails only
its job. Jobs are held at a step with the daemon's test gate (tests/editor_gate.py), never timed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

import editor_gate
from backend import editing
from backend.cli import main as draggan_main
from backend.geometry import Mapping
from backend.sessions import Session, SessionStore
from daemon_process import MODEL, serve_process, write_model
from draggan_client.client import DaemonClient
from draggan_core.devices import pick_devices
from draggan_core.drag import DragSession
from draggan_core.precision import resolve
from test_daemon_support import TINY, models_dir, running_daemon, wait_for  # noqa: F401

FAR = dict(handles=[[20, 20]], targets=[[50, 44]], steps=50)  # no drag ends within the gate's HOLD_STEP steps


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Iterator[str]:
    """A real `draggan serve --device cpu,cpu` process with its test gate on: its URL."""
    folder = tmp_path_factory.mktemp("devices")
    with serve_process(write_model(folder / "models"), folder, "--device", "cpu,cpu",
                       env={"DRAGGAN_TEST_GATE": "1"}) as serve:
        yield serve.url


def per_device(client: DaemonClient, field: str) -> list:
    return [device[field] for device in client.health()["devices"]]


def held(url: str, count: int) -> None:
    wait_for(lambda: editor_gate.held(url) == count, timeout=120, what=f"{count} job(s) held at the gate")


def test_two_sessions_drag_at_the_same_time_each_on_its_own_device(two_workers):
    client = DaemonClient(two_workers, timeout=60)
    health = client.health()
    assert health["device"] == "cpu,cpu" and [d["device"] for d in health["devices"]] == ["cpu", "cpu"]
    first = client.generate(seed=1, model=MODEL)["session_id"]
    assert per_device(client, "sessions") == [1, 0]
    second = client.generate(seed=2, model=MODEL)["session_id"]
    assert per_device(client, "sessions") == [1, 1]  # no steps queued anywhere: the device with less memory
    with editor_gate.holding(two_workers):
        jobs = [client.drag(sid, **FAR)["job_id"] for sid in (first, second)]
        held(two_workers, 2)  # a worker runs one job at a time: both are running at once, on both devices
        assert per_device(client, "jobs_running") == [1, 1] and per_device(client, "queue_length") == [0, 0]
        assert per_device(client, "queued_steps") == [FAR["steps"] - editor_gate.HOLD_STEP] * 2
    finals = [client.wait(job, poll_interval=0.05, timeout=120) for job in jobs]
    assert [f["state"] for f in finals] == ["done", "done"]
    for sid in (first, second):
        client.delete_session(sid)


def test_a_new_session_goes_to_the_idle_device_and_later_jobs_stay_on_theirs(two_workers):
    client = DaemonClient(two_workers, timeout=60)
    start = per_device(client, "sessions")
    mine = client.generate(seed=3, model=MODEL)
    lane = [a - b for a, b in zip(per_device(client, "sessions"), start)].index(1)
    other = 1 - lane
    with editor_gate.holding(two_workers):
        job = client.drag(mine["session_id"], **FAR)["job_id"]
        held(two_workers, 1)
        running = per_device(client, "jobs_running")
        assert running[lane] == 1 and running[other] == 0
        before = per_device(client, "sessions")
        newcomer = client.generate(seed=4, model=MODEL)["session_id"]  # its own device has steps queued
        after = per_device(client, "sessions")
        assert after[other] == before[other] + 1 and after[lane] == before[lane]
    assert client.wait(job, poll_interval=0.05, timeout=120)["state"] == "done"
    with editor_gate.holding(two_workers):  # a later drag of the session runs on its device again
        again = client.drag(mine["session_id"], **FAR)["job_id"]
        held(two_workers, 1)
        running = per_device(client, "jobs_running")
        assert running[lane] == 1 and running[other] == 0
    assert client.wait(again, poll_interval=0.05, timeout=120)["state"] == "done"
    before = per_device(client, "sessions")
    copy = client.create_session(client.session_image(mine["session_id"]), from_session=mine["session_id"])
    after = per_device(client, "sessions")
    assert after[lane] == before[lane] + 1 and after[other] == before[other]  # a copy lives with its source
    for sid in (mine["session_id"], newcomer, copy["session_id"]):
        client.delete_session(sid)


def test_health_reports_each_device_in_counts_never_ids(two_workers):
    client = DaemonClient(two_workers, timeout=60)
    made = client.generate(seed=5, model=MODEL)
    job = client.drag(made["session_id"], handles=[[20, 20]], targets=[[22, 21]], steps=2)
    client.wait(job["job_id"], poll_interval=0.05, timeout=120)
    health = client.health()
    text = json.dumps(health)
    assert made["session_id"] not in text and job["job_id"] not in text and made["state_id"] not in text
    assert health["node"] is None and health["models_loaded"] == [MODEL]
    for index, device in enumerate(health["devices"]):
        assert device["index"] == index and device["memory_allocated"] is None  # no CUDA: the estimate only
        assert device["session_bytes"] >= 0 and device["jobs_running"] in (0, 1)
    assert health["sessions"] == sum(per_device(client, "sessions"))
    assert sum(d["session_bytes"] > 0 for d in health["devices"]) >= 1
    assert per_device(client, "torch_threads") == [1, 1]  # the fixture's OMP_NUM_THREADS=1, shared by two
    client.delete_session(made["session_id"])


@pytest.mark.parametrize("devices", ["cpu,cpu", "cpu"])
def test_cpu_workers_share_the_cores_out(devices, tmp_path: Path):
    """Several CPU workers split the threads torch would take (one per core, at most OMP_NUM_THREADS) between
    them; a single CPU worker keeps them all."""
    env = {"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}
    cores = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                               env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout)
    workers = len(devices.split(","))
    with serve_process(write_model(tmp_path / "models"), tmp_path, "--device", devices, env=env) as serve:
        client = DaemonClient(serve.url, timeout=60)
        wait_for(lambda: None not in per_device(client, "torch_threads"), timeout=60, what="the workers started")
        assert per_device(client, "torch_threads") == [max(1, cores // workers)] * workers


@pytest.mark.parametrize("asked", ["fp32", "bf16", "auto"])
def test_sessions_drag_in_the_precision_the_daemon_was_given(asked, models_dir):  # noqa: F811
    """serve --precision reaches a new session and its drags (whose settings are rebuilt per request), and
    /health says what it became on each device ('auto': bf16 here only if this CPU multiplies bf16 natively)."""
    expected = resolve(asked, torch.device("cpu"))
    with running_daemon(models_dir, precision=asked) as server:
        client = DaemonClient(server.url, timeout=60)
        assert per_device(client, "precision") == [expected]
        made = client.generate(seed=1, model=TINY)
        job = client.drag(made["session_id"], handles=[[20, 20]], targets=[[24, 22]], steps=3, r1=3)
        assert client.wait(job["job_id"], poll_interval=0.02, timeout=60)["state"] == "done"
        session = server.app.extensions["draggan"].sessions.get(made["session_id"])
        assert session.drag.config.precision == asked
        assert session.drag.precision == resolve(asked, torch.device("cpu"), 64)  # the test model: 64 px


def test_a_failure_on_one_device_fails_only_its_job(models_dir, monkeypatch):  # noqa: F811
    """Out of GPU memory on device 0 (raised in its drag) fails that drag only: the drag on device 1 is done,
    and device 0 runs the session's next drag."""
    real_drag = editing.run_drag

    def out_of_memory_on_device_0(session, *args):
        if session.lane == 0:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated on device 0)")
        return real_drag(session, *args)

    monkeypatch.setattr(editing, "run_drag", out_of_memory_on_device_0)
    with running_daemon(models_dir, device="cpu,cpu") as server:
        client = DaemonClient(server.url, timeout=60)
        sessions = [client.generate(seed=seed, model=TINY)["session_id"] for seed in (1, 2)]
        jobs = [client.drag(sid, handles=[[20, 20]], targets=[[26, 23]], steps=5)["job_id"] for sid in sessions]
        failed, done = (client.wait(job, poll_interval=0.02, timeout=60) for job in jobs)
        assert failed["state"] == "failed" and failed["error"]["code"] == "out_of_memory"
        assert done["state"] == "done"
        monkeypatch.setattr(editing, "run_drag", real_drag)
        again = client.drag(sessions[0], handles=[[20, 20]], targets=[[26, 23]], steps=5)
        assert client.wait(again["job_id"], poll_interval=0.02, timeout=60)["state"] == "done"


def test_each_device_holds_its_own_sessions_within_the_limits(small_generator):
    """max_sessions bounds each device: a new session drops the least recently used idle one of its own device."""
    def session(lane: int) -> Session:
        return Session(model=None, drag=DragSession(small_generator, 0), mapping=Mapping(32, 32, 32, 32), lane=lane)

    store = SessionStore(max_sessions=1, max_bytes=10 ** 9)
    first, second = store.add(session(0)), store.add(session(1))
    assert store.get(first.id) and store.get(second.id) and store.usage(0)[0] == store.usage(1)[0] == 1
    third = store.add(session(0))
    assert len(store) == 2 and store.get(third.id) and store.get(second.id)


def test_ids_carry_the_node_name_and_name_their_daemon_when_missing():
    store = SessionStore(max_sessions=4, max_bytes=10 ** 9, node="box2")
    sid = store.new_id()
    assert sid.startswith("box2.") and len(sid) == len("box2.") + 24
    with pytest.raises(Exception) as lost:
        store.get("box1." + "0" * 24)
    assert lost.value.status == 404 and "daemon 'box1' made it" in lost.value.message
    with pytest.raises(Exception) as plain:
        store.get("0" * 24)
    assert "the daemon restarted" in plain.value.message


def test_device_lists():
    assert pick_devices("cpu,cpu") == [torch.device("cpu")] * 2 and pick_devices(" cpu ") == [torch.device("cpu")]
    for spec, words in (("cpu,,cpu", "empty device name"), ("gpu", "unknown device 'gpu'"),
                        ("cuda:x", "unknown device" if torch.cuda.is_available() else "no CUDA GPU")):
        with pytest.raises(ValueError, match=words):
            pick_devices(spec)


@pytest.mark.parametrize("args, words", [
    (["--device", "cpu,gpu"], "unknown device 'gpu'"),
    (["--node", "box.1"], "--node must be 1 to 32 letters"),
    (["--device", "all"], "no CUDA GPU"),
    (["--device", "cpu", "--precision", "fp16"], "needs a CUDA device"),
])
def test_serve_refuses_unusable_devices_and_node_names(args, words, tmp_path: Path, capsys):
    if args[-1] == "all" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: 'all' is usable here")
    assert draggan_main(["serve", "--port", "0", "--models", str(tmp_path), *args]) == 1
    assert words in capsys.readouterr().err
