"""The daemon over real HTTP on loopback, driven by the plug-ins' stdlib client: generate, drag,
progress, stop, cancel, queueing, several clients, resized layers and failure isolation."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from draggan_client.client import DaemonClient, DaemonError
from backend.errors import ApiError
from backend.geometry import Mapping
from backend.jobs import Job, JobStore, Worker
from backend.sessions import Session, SessionStore
from draggan_core.drag import DragSession
from test_daemon_support import (SMALL, TINY, client, image_of, models_dir, png_of, server, state, steps,  # noqa: F401
                                 wait_for, wait_idle)

FAR = dict(handles=[[20, 20]], targets=[[50, 44]])  # far enough that no drag ends within a few steps


def test_health_and_models(client):
    health = client.health()
    assert health["api"] == "v1" and health["device"] == "cpu" and health["version"]
    names = {m["name"]: m for m in client.models()}
    assert {TINY, SMALL} <= set(names)
    assert names[TINY]["domain"] == "your own checkpoint"


def test_generate_then_drag_with_progress_and_result(client):
    made = client.generate(seed=5, model=TINY)
    assert image_of(made["image"]).size == (64, 64) and made["seed"] == 5
    job = client.drag(made["session_id"], handles=[[30, 30]], targets=[[36, 33]], steps=40, preview_every=2)
    assert job["state"] in ("queued", "running") and job["max_steps"] == 40
    seen, previews = [], []
    final = client.wait(job["job_id"], on_progress=seen.append, on_preview=lambda png, s: previews.append(png),
                        poll_interval=0.02)
    assert final["state"] == "done" and final["reason"] in ("reached", "max_steps", "stalled")
    assert final["error"] is None and final["result"] == {"width": 64, "height": 64}
    steps_seen = [s["step"] for s in seen]
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] == final["step"]
    assert all(image_of(p).size == (64, 64) for p in previews)
    assert image_of(client.result(job["job_id"])).size == (64, 64)
    session = client.session(made["session_id"])
    assert session["handles"] == final["handles"] and session["targets"] == [[36, 33]]
    assert session["active_job"] is None
    # A second drag continues from the tracked handles.
    again = client.wait(client.drag(made["session_id"], handles=final["handles"], targets=[[40, 35]], steps=3)["job_id"])
    assert again["state"] == "done"


def test_a_drag_runs_with_the_preset_it_names_and_reports_it(client):
    """Drags from the same state: the published settings twice give the same steps, the studio
    preset other ones (its coarse blocks, snapping and region change every step), and move spends
    these few steps fitting the warped picture (draggan_core/warp.py), then ends them."""
    made = client.generate(seed=5, model=TINY)
    start = client.session(made["session_id"])["initial_state_id"]

    def drag(**options) -> dict:
        job = client.drag(made["session_id"], handles=[[30, 30]], targets=[[40, 36]], steps=6, from_state=start,
                          **options)
        return client.wait(job["job_id"], poll_interval=0.02)

    paper, again, studio = drag(), drag(preset="paper"), drag(preset="studio")
    assert [j["preset"] for j in (paper, again, studio)] == ["paper", "paper", "studio"]
    assert paper["handles"] == again["handles"] and paper["loss"] == again["loss"]
    assert studio["state"] == "done" and (studio["handles"], studio["loss"]) != (paper["handles"], paper["loss"])
    move = drag(preset="move")
    assert move["preset"] == "move" and move["state"] == "done" and move["reason"] == "max_steps"
    assert move["loss"] != paper["loss"]


def test_a_request_preset_becomes_the_drag_settings_with_the_request_fields_on_top():
    from backend.editing import drag_config
    from backend.validation import parse_drag
    from draggan_core.drag import DragConfig
    from backend.config import Limits

    class Entry:
        learning_rate = 0.004

    class FakeSession:
        model = type("Model", (), {"entry": Entry})
        drag = type("Drag", (), {"config": DragConfig(precision="fp32")})

    req = parse_drag({"handles": [[1, 1]], "targets": [[5, 5]], "preset": "studio", "r2": 7}, Limits(),
                     Mapping(64, 64, 64, 64))
    assert drag_config(FakeSession, req) == DragConfig.preset("studio", learning_rate=0.004, r2=7, precision="fp32")


def test_stop_keeps_the_edit_so_far(client, steps):
    made = client.generate(seed=6, model=TINY)
    steps.gate.clear()  # the job pauses after each step until the gate opens
    job = client.drag(made["session_id"], steps=400, preview_every=1, **FAR)
    wait_for(lambda: client.job(job["job_id"])["step"] >= 1, what="the first step")
    assert client.preview(job["job_id"]) is not None
    assert client.stop(job["job_id"])["state"] == "running"  # stops after the current step
    steps.gate.set()
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "done" and final["reason"] == "stopped" and final["step"] <= 3
    result = np.asarray(image_of(client.result(job["job_id"])), dtype=np.float32)
    original = np.asarray(image_of(made["image"]), dtype=np.float32)
    assert result.shape == original.shape and np.abs(result - original).mean() > 0  # the edit so far is kept
    assert client.session(made["session_id"])["handles"] == final["handles"]


def test_cancel_puts_the_session_back(client, server, steps):
    made = client.generate(seed=7, model=TINY)
    sid = made["session_id"]
    first = client.wait(client.drag(sid, handles=[[30, 30]], targets=[[33, 31]], steps=5)["job_id"])
    session = state(server).sessions.get(sid)
    latent_before = session.drag.latent().clone()
    steps.gate.clear()
    job = client.drag(sid, steps=400, **FAR)
    wait_for(lambda: client.job(job["job_id"])["step"] >= 1, what="the first step")
    client.cancel(job["job_id"])
    steps.gate.set()
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "cancelled" and final["reason"] is None
    assert torch.equal(session.drag.latent(), latent_before)
    info = client.session(sid)
    assert info["handles"] == first["handles"] and info["targets"] == [[33, 31]] and info["active_job"] is None
    with pytest.raises(DaemonError) as e:
        client.result(job["job_id"])
    assert e.value.status == 409 and "cancelled" in str(e.value)
    with pytest.raises(DaemonError) as e:
        client.cancel(first["job_id"])
    assert e.value.status == 409 and e.value.code == "job_finished"


def test_jobs_queue_and_status_answers_at_once(client, steps):
    wait_idle(client)
    a, b = client.generate(seed=8, model=TINY), client.generate(seed=9, model=SMALL)
    steps.gate.clear()
    job_a = client.drag(a["session_id"], steps=400, **FAR)
    wait_for(lambda: client.job(job_a["job_id"])["state"] == "running", what="job a to run")
    job_b = client.drag(b["session_id"], handles=[[5, 5]], targets=[[9, 8]], steps=5)
    started = time.perf_counter()
    status_b, status_a, health = client.job(job_b["job_id"]), client.job(job_a["job_id"]), client.health()
    assert time.perf_counter() - started < 2.0
    assert status_b["state"] == "queued" and status_b["queue_position"] == 1
    assert status_a["state"] == "running" and status_a["queue_position"] is None
    assert health["jobs_running"] == 1 and health["queue_length"] == 1 and job_a["job_id"] not in str(health)
    with pytest.raises(DaemonError) as e:
        client.drag(a["session_id"], **FAR)
    assert e.value.status == 409 and e.value.code == "session_busy"
    with pytest.raises(DaemonError) as e:
        client.result(job_b["job_id"])
    assert e.value.status == 409
    assert client.preview(job_b["job_id"]) is None
    client.stop(job_a["job_id"])
    steps.gate.set()
    assert client.wait(job_a["job_id"])["reason"] == "stopped"
    assert client.wait(job_b["job_id"])["state"] == "done"
    assert image_of(client.result(job_b["job_id"])).size == (32, 32)


def test_generate_is_answered_while_another_job_runs(client, steps):
    steps.delay = 0.2  # slow steps, so the job cannot end (even by stalling) while generate runs
    made = client.generate(seed=10, model=TINY)
    job = client.drag(made["session_id"], steps=400, **FAR)
    wait_for(lambda: client.job(job["job_id"])["state"] == "running", what="the job to run")
    started = time.perf_counter()
    other = client.generate(seed=11, model=TINY)
    assert time.perf_counter() - started < 5.0
    assert client.job(job["job_id"])["state"] == "running" and image_of(other["image"]).size == (64, 64)
    client.cancel(job["job_id"])
    assert client.wait(job["job_id"])["state"] == "cancelled"


def test_stopping_a_queued_job_cancels_it(client, steps):
    wait_idle(client)
    a, b = client.generate(seed=12, model=TINY), client.generate(seed=13, model=TINY)
    steps.gate.clear()
    job_a = client.drag(a["session_id"], steps=400, **FAR)
    job_b = client.drag(b["session_id"], steps=400, **FAR)
    assert client.stop(job_b["job_id"])["state"] == "cancelled"
    assert client.session(b["session_id"])["active_job"] is None
    client.cancel(job_a["job_id"])
    steps.gate.set()
    assert client.wait(job_a["job_id"])["state"] == "cancelled"


def test_two_clients_at_once(server):
    outcomes, errors = [], []

    def edit(seed: int) -> None:
        try:
            c = DaemonClient(server.url)
            made = c.generate(seed=seed, model=TINY)
            job = c.drag(made["session_id"], handles=[[32, 32]], targets=[[36, 30]], steps=15)
            final = c.wait(job["job_id"], poll_interval=0.02)
            outcomes.append((final["state"], image_of(c.result(job["job_id"])).size))
            c.delete_session(made["session_id"])
        except Exception as e:  # reported below, with the thread's message
            errors.append(e)

    threads = [threading.Thread(target=edit, args=(seed,)) for seed in (21, 22)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and outcomes == [("done", (64, 64))] * 2


def test_resized_copy_of_a_generated_image(client):
    made = client.generate(seed=14, model=TINY)
    big = image_of(made["image"]).resize((128, 128), Image.BICUBIC)
    session = client.create_session(png_of(big), from_session=made["session_id"])
    assert (session["width"], session["height"], session["model_width"]) == (128, 128, 64)
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (20, 20, 110, 110))
    job = client.drag(session["session_id"], handles=[[60, 60]], targets=[[72, 64]], steps=10, preview_every=5,
                      mask_png=png_of(mask))
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "done" and final["result"] == {"width": 128, "height": 128}
    assert all(0 <= v <= 127 for p in final["handles"] for v in p)
    assert image_of(client.result(job["job_id"])).size == (128, 128)
    assert image_of(client.preview(job["job_id"])).size == (128, 128)
    # The source session is untouched by edits of the copy.
    assert client.session(made["session_id"])["handles"] == []


def test_a_different_picture_is_not_taken_for_a_copy(client):
    """from_session promises the layer shows that session's picture; anything else is refused with a
    pointer to inversion (tests/test_daemon_invert.py), which a request without from_session starts."""
    made = client.generate(seed=15, model=TINY)
    noise = Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(DaemonError) as e:
        client.create_session(png_of(noise), from_session=made["session_id"])
    assert e.value.status == 409 and e.value.code == "different_picture" and "inversion" in str(e.value)
    assert client.health()["api"] == "v1"


def test_delete_session_cancels_its_job(client, steps):
    made = client.generate(seed=16, model=TINY)
    steps.gate.clear()
    job = client.drag(made["session_id"], steps=400, **FAR)
    assert client.delete_session(made["session_id"]) == {"deleted": True, "session_id": made["session_id"]}
    steps.gate.set()
    assert client.wait(job["job_id"])["state"] == "cancelled"
    with pytest.raises(DaemonError) as e:
        client.session(made["session_id"])
    assert e.value.status == 404 and e.value.code == "unknown_session"


@pytest.mark.parametrize("failure", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                                     RuntimeError("something broke")])
def test_a_failing_job_fails_alone(client, server, monkeypatch, failure):
    made = client.generate(seed=17, model=TINY)
    session = state(server).sessions.get(made["session_id"])
    latent = session.drag.latent().clone()
    original = DragSession.run

    def failing_run(self, *args, **kwargs):
        for i, step in enumerate(original(self, *args, **kwargs)):
            if i == 2:
                raise failure
            yield step

    monkeypatch.setattr(DragSession, "run", failing_run)
    final = client.wait(client.drag(made["session_id"], steps=50, **FAR)["job_id"])
    assert final["state"] == "failed"
    expected = "out_of_memory" if isinstance(failure, torch.cuda.OutOfMemoryError) else "internal"
    assert final["error"]["code"] == expected and final["error"]["message"]
    assert torch.equal(session.drag.latent(), latent)  # the failed job left the session as it was
    monkeypatch.undo()
    assert client.wait(client.drag(made["session_id"], handles=[[30, 30]], targets=[[33, 31]], steps=3)["job_id"])[
        "state"] == "done"


def test_session_store_drops_least_recently_used_idle_sessions(small_generator):
    def session() -> Session:
        return Session(model=None, drag=DragSession(small_generator, 0), mapping=Mapping(32, 32, 32, 32))

    store = SessionStore(max_sessions=2, max_bytes=10 ** 9)
    a, b, c = session(), session(), session()
    store.add(a)
    store.add(b)
    store.claim(a.id, "job")  # busy: never dropped
    store.add(c)
    assert [s.id for s in (a, c) if store.get(s.id)] == [a.id, c.id]
    with pytest.raises(ApiError):
        store.get(b.id)
    one = a.bytes
    assert one > 0
    by_memory = SessionStore(max_sessions=10, max_bytes=int(2.5 * one))
    sessions = [by_memory.add(session()) for _ in range(4)]
    assert len(by_memory) == 2 and by_memory.get(sessions[-1].id)


def test_job_store_drops_the_oldest_finished_jobs_by_count_and_by_bytes():
    def job(state: str, png_bytes: int = 0) -> Job:
        j = Job("drag", "s", 1, work=lambda job, between: "done", on_end=lambda job, state: None)
        j.state, j.result_png = state, bytes(png_bytes) or None
        return j

    def kept(store: JobStore, jobs: list[Job]) -> list[int]:
        found = []
        for i, j in enumerate(jobs):
            try:
                store.get(j.id)
                found.append(i)
            except ApiError:
                pass
        return found

    by_count = JobStore(max_finished=2, max_bytes=10 ** 9)
    jobs = [job("done"), job("running"), job("failed"), job("cancelled"), job("queued")]
    for j in jobs:
        by_count.add(j)
    assert kept(by_count, jobs) == [1, 2, 3, 4]  # unfinished jobs are never dropped
    by_bytes = JobStore(max_finished=100, max_bytes=250)
    jobs = [job("done", 100), job("done", 100), job("running"), job("done", 100), job("done", 1000)]
    for j in jobs:
        by_bytes.add(j)
    assert kept(by_bytes, jobs) == [2, 4]  # the newest finished job stays even above the bound
    jobs.append(job("done", 10))
    by_bytes.add(jobs[-1])
    assert kept(by_bytes, jobs) == [2, 5]


def test_worker_runs_calls_between_steps_and_survives_failures():
    worker = Worker()
    try:
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0, timeout=5)
        assert worker.call(lambda: 42, timeout=5) == 42
        ended = []
        job = Job("drag", "s", 1, work=lambda job, between: (_ for _ in ()).throw(ValueError("bad points")),
                  on_end=lambda job, state: ended.append(state))
        worker.submit(job)
        wait_for(lambda: job.state == "failed", what="the job to end")
        assert ended == ["failed"]  # the session side learnt the outcome before any client could
        # a ValueError from inside is a bug, not the client's mistake: 500, its text only in the log
        assert job.error.status == 500 and job.error.code == "internal" and "bad points" not in job.error.message
    finally:
        worker.close()
