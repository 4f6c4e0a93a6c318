"""The daemon's bounds on waiting work, over real HTTP: the job queue (in all and per client),
the sessions that have work pending, and the request threads that wait for the worker. Past a
bound the answer is 429/503 with Retry-After; nothing just made is evicted, no client starves
the others, and /health keeps answering at once. Jobs are held by the test gate (backend/testgate.py)
or the `steps` pacing, never by the machine being slow."""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import time

import numpy as np
import pytest
from PIL import Image

from draggan_client.client import DaemonClient
from backend.config import Limits
from backend.errors import ApiError
from backend.jobs import Job, Worker
from test_daemon_support import (LIMITS, SMALL, TINY, http_session, models_dir, png_of, running_daemon,  # noqa: F401
                                 steps, wait_for)

FAR = dict(handles=[[20, 20]], targets=[[50, 44]], steps=400)


def call(url: str, method: str, path: str, body: dict | None = None, source: str = "127.0.0.1"):
    """One request from a chosen loopback source address (another 'client'): (status, headers, JSON)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, "/api/v1" + path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def arm(url: str, step: int | None) -> None:
    assert call(url, "PUT", "/test/gate", {"hold_at_step": step})[0] == 200


def held(url: str) -> int:
    return call(url, "GET", "/test/gate")[2]["held"]


def layer_png(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    return base64.b64encode(png_of(Image.fromarray(pixels, "RGBA"))).decode()


def invert(url: str, seed: int, source: str = "127.0.0.1"):
    return call(url, "POST", "/sessions", {"image": layer_png(seed), "model": SMALL,
                                            "invert": {"steps_w": 50, "steps_wplus": 0, "pti": False}}, source)


def test_the_queue_is_bounded_and_refusals_say_when_to_retry(models_dir):
    limits = Limits(**{**LIMITS.__dict__, "max_queued_jobs": 2, "max_jobs_per_client": 10})
    with running_daemon(models_dir, limits=limits, test_gate=True) as server:
        url = server.url
        sessions = [call(url, "POST", "/generate", {"seed": i, "model": TINY})[2]["session_id"] for i in range(4)]
        arm(url, 1)
        first = call(url, "POST", f"/sessions/{sessions[0]}/drag", FAR)[2]["job_id"]
        wait_for(lambda: held(url) == 1, 60, "the first job to run and be held")
        for sid in sessions[1:3]:
            assert call(url, "POST", f"/sessions/{sid}/drag", FAR)[0] == 202
        status, headers, body = call(url, "POST", f"/sessions/{sessions[3]}/drag", FAR)
        print(f"full queue: {status} {body['error']} Retry-After {headers.get('Retry-After')}")
        assert (status, body["error"]["code"]) == (429, "queue_full") and int(headers["Retry-After"]) > 0
        assert call(url, "GET", f"/sessions/{sessions[3]}")[2]["active_job"] is None  # refused: not left busy
        health = call(url, "GET", "/health")[2]
        assert health["queue_length"] == 2 and health["jobs_running"] == 1
        assert not any(str(v) in (first, *sessions) for v in health.values())  # counts, never ids
        call(url, "POST", f"/jobs/{first}/stop")
        arm(url, None)


def test_one_client_cannot_fill_the_queue_or_evict_the_others(models_dir):
    """The probe's case: one client queueing many inversions evicted every other client's sessions."""
    limits = Limits(**{**LIMITS.__dict__, "max_sessions": 5, "max_queued_jobs": 8, "max_jobs_per_client": 2})
    with running_daemon(models_dir, limits=limits, test_gate=True) as server:
        url = server.url
        arm(url, 1)
        others = [call(url, "POST", "/generate", {"seed": i, "model": TINY}, source="127.0.0.2")[2]["session_id"]
                  for i in range(2)]
        answers = [invert(url, seed) for seed in range(6)]  # client 127.0.0.1 asks for six inversions
        codes = [(s, b.get("error", {}).get("code")) for s, _, b in answers]
        print("one client's six inversions:", codes)
        assert codes[:2] == [(201, None), (201, None)] and set(codes[2:]) == {(429, "too_many_jobs")}
        assert all(int(h["Retry-After"]) > 0 for s, h, _ in answers if s == 429)
        for sid in others:  # the other client's idle sessions are still there ...
            assert call(url, "GET", f"/sessions/{sid}", source="127.0.0.2")[0] == 200
        other_job = call(url, "POST", f"/sessions/{others[0]}/drag", FAR, source="127.0.0.2")  # ... and it can queue
        assert other_job[0] == 202
        for _, _, body in answers[:2]:
            call(url, "POST", f"/jobs/{body['job_id']}/cancel")
        call(url, "POST", f"/jobs/{other_job[2]['job_id']}/cancel")
        arm(url, None)


def test_a_new_session_is_refused_rather_than_evicted_when_all_others_are_busy(models_dir):
    limits = Limits(**{**LIMITS.__dict__, "max_sessions": 2, "max_jobs_per_client": 10})
    with running_daemon(models_dir, limits=limits, test_gate=True) as server:
        url = server.url
        arm(url, 1)
        busy = [invert(url, seed)[2] for seed in range(2)]
        wait_for(lambda: held(url) == 1, 60, "the first inversion to be held")
        status, headers, body = call(url, "POST", "/generate", {"seed": 1, "model": TINY})
        print("generate with every session busy:", status, body["error"]["code"], headers.get("Retry-After"))
        assert (status, body["error"]["code"]) == (429, "sessions_full") and int(headers["Retry-After"]) > 0
        assert [call(url, "GET", f"/sessions/{b['session_id']}")[0] for b in busy] == [200, 200]
        call(url, "POST", f"/jobs/{busy[1]['job_id']}/cancel")  # one slot free again: a new session fits
        status, _, made = call(url, "POST", "/generate", {"seed": 1, "model": TINY})
        assert status == 201 and call(url, "GET", f"/sessions/{made['session_id']}")[0] == 200
        call(url, "POST", f"/jobs/{busy[0]['job_id']}/cancel")
        arm(url, None)


def test_health_answers_at_once_while_requests_wait_for_the_worker(models_dir, steps):
    """Calls waiting for the worker are bounded, so status requests always find a free thread."""
    limits = Limits(**{**LIMITS.__dict__, "max_waiting_calls": 2})
    with running_daemon(models_dir, limits=limits, threads=4) as server:
        url, client = server.url, DaemonClient(server.url, timeout=30)
        sid = client.generate(seed=1, model=TINY)["session_id"]
        steps.gate.clear()  # the drag holds the worker between two steps: calls queue behind it
        job = client.drag(sid, **FAR)
        wait_for(lambda: client.job(job["job_id"])["step"] >= 1, what="the drag's first step")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            generates = [pool.submit(call, url, "POST", "/generate", {"seed": i, "model": TINY}) for i in range(8)]
            wait_for(lambda: sum(f.done() for f in generates) >= 6, 30, "the calls past the bound to be refused")
            started = time.perf_counter()
            health = [call(url, "GET", "/health")[0] for _ in range(5)]
            latency = (time.perf_counter() - started) / 5
            print(f"/health with 2 calls waiting and 6 refused: {latency * 1000:.1f} ms per request")
            assert health == [200] * 5 and latency < 1.0
            refused = [f.result() for f in generates if f.done()]
            assert all(s == 503 and b["error"]["code"] == "busy" and int(h["Retry-After"]) > 0
                       for s, h, b in refused)
            steps.gate.set()
            client.stop(job["job_id"])
            statuses = sorted(f.result()[0] for f in generates)
        assert statuses == [201] * 2 + [503] * 6


def test_a_closed_worker_refuses_new_jobs():
    worker = Worker()
    worker.close()
    job = Job("drag", "s", 1, work=lambda job, between: "done", on_end=lambda job, state: None)
    with pytest.raises(ApiError) as e:
        worker.submit(job)
    assert (e.value.status, e.value.code) == (503, "shutting_down")
