"""The test gate (backend/testgate.py): editor end-to-end tests hold a job at a step to act while
it runs. Through real HTTP on an in-process daemon."""
from __future__ import annotations

from draggan_client.client import DaemonClient
from test_daemon_support import TINY, http_session, models_dir, running_daemon, wait_for  # noqa: F401


def gate(url: str, step=None, arm: bool = False) -> dict:
    s = http_session()
    if arm:
        return s.put(f"{url}/api/v1/test/gate", json={"hold_at_step": step}, timeout=10).json()
    return s.get(f"{url}/api/v1/test/gate", timeout=10).json()


def test_a_held_job_waits_answers_calls_and_stops_at_once(models_dir):
    with running_daemon(models_dir, test_gate=True) as server:
        client = DaemonClient(server.url, timeout=30)
        assert gate(server.url, 2, arm=True) == {"hold_at_step": 2, "held": 0}
        sid = client.generate(seed=1, model=TINY)["session_id"]
        job = client.drag(sid, handles=[[20, 20]], targets=[[40, 40]], steps=400, preview_every=2)
        wait_for(lambda: gate(server.url)["held"] == 1, 60, "the job to reach the gate")
        status = client.job(job["job_id"])
        assert (status["state"], status["step"], status["preview_step"]) == ("running", 2, 2)
        assert client.preview(job["job_id"]) is not None
        assert client.generate(seed=2, model=TINY)["session_id"]  # other clients' short calls still run
        assert client.job(job["job_id"])["step"] == 2  # still held
        final = client.wait(client.stop(job["job_id"])["job_id"], timeout=60)
        assert (final["state"], final["reason"]) == ("done", "stopped") and final["step"] <= 3  # one step to close
        assert gate(server.url)["held"] == 0

        gate(server.url, None, arm=True)  # disarmed: jobs run to their end
        final = client.wait(client.drag(sid, handles=[[20, 20]], targets=[[40, 40]], steps=6)["job_id"], timeout=60)
        assert final["state"] == "done" and final["step"] >= 1 and final["reason"] != "stopped"


def test_no_gate_unless_the_daemon_was_started_with_it(models_dir):
    with running_daemon(models_dir) as server:
        answer = http_session().get(f"{server.url}/api/v1/test/gate", timeout=10)
        assert answer.status_code == 404
