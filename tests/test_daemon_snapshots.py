"""Session states over real HTTP on loopback: every drag that ends done makes a state, a drag may start
from any kept state (from_state), a reset goes back to the initial one, a cancelled drag makes none, the
per-session bound drops the oldest with 410 state_gone, and states count in the session store's memory.

Drags here are a few steps on tiny random generators; the daemon runs on one torch thread, so the same
drag from the same state gives the same pixels."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from backend.config import Limits
from draggan_client.client import DaemonClient, DaemonError
from test_daemon_support import (LIMITS, TINY, client, image_of, models_dir, png_of, running_daemon,  # noqa: F401
                                 server, state, steps, wait_for)

A = dict(handles=[[30, 30]], targets=[[36, 33]], steps=4, preview_every=0)
B = dict(handles=[[20, 40]], targets=[[16, 34]], steps=4, preview_every=0)
FAR = dict(handles=[[20, 20]], targets=[[50, 44]], steps=400, preview_every=1)


def drag(client: DaemonClient, sid: str, what: dict, **kwargs) -> dict:
    final = client.wait(client.drag(sid, **what, **kwargs)["job_id"], poll_interval=0.02)
    assert final["state"] == "done", final
    return final


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(image_of(png))


def result(client: DaemonClient, final: dict) -> np.ndarray:
    return pixels(client.result(final["job_id"]))


def test_a_drag_makes_a_state(client):
    made = client.generate(seed=21, model=TINY)
    sid = made["session_id"]
    assert made["state_id"] == made["initial_state_id"] is not None
    assert [s["state_id"] for s in made["states"]] == [made["initial_state_id"]]
    assert made["states"][0]["job_id"] is None and made["states"][0]["bytes"] > 0
    final = drag(client, sid, A)
    assert final["from_state"] is None and final["state_id"] not in (None, made["initial_state_id"])
    session = client.session(sid)
    assert session["state_id"] == final["state_id"] and session["initial_state_id"] == made["initial_state_id"]
    assert [s["state_id"] for s in session["states"]] == [made["initial_state_id"], final["state_id"]]
    assert session["states"][1]["job_id"] == final["job_id"]
    assert session["bytes"] > made["bytes"]
    assert session["bytes"] >= sum(s["bytes"] for s in session["states"])
    assert pixels(client.session_image(sid)).tolist() == result(client, final).tolist()
    # A drag's mask is its own: a state keeps no mask features, and the next drag from it sets its own.
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    masked = drag(client, sid, A, mask_png=png_of(mask))
    sizes = {s["state_id"]: s["bytes"] for s in client.session(sid)["states"]}
    assert sizes[masked["state_id"]] == sizes[final["state_id"]]
    assert drag(client, sid, A, from_state=masked["state_id"])["state"] == "done"


def test_a_drag_from_the_initial_state_is_as_if_the_first_never_ran(client):
    first = client.generate(seed=22, model=TINY)
    drag(client, first["session_id"], A)
    from_start = drag(client, first["session_id"], B, from_state=first["initial_state_id"])
    assert from_start["from_state"] == first["initial_state_id"]
    fresh = client.generate(seed=22, model=TINY)
    alone = drag(client, fresh["session_id"], B)
    assert np.array_equal(result(client, from_start), result(client, alone))
    assert from_start["handles"] == alone["handles"]
    # The session is now in the new state: a drag without from_state continues from B's result.
    assert client.session(first["session_id"])["state_id"] == from_start["state_id"]


def test_a_drag_from_a_state_continues_that_result(client):
    made = client.generate(seed=23, model=TINY)
    sid = made["session_id"]
    a = drag(client, sid, A)
    drag(client, sid, B)  # another result, made after a: the session has moved on
    continued = drag(client, sid, dict(B, handles=a["handles"]), from_state=a["state_id"])
    other = client.generate(seed=23, model=TINY)
    drag(client, other["session_id"], A)
    straight = drag(client, other["session_id"], dict(B, handles=a["handles"]))  # B right after A
    assert np.array_equal(result(client, continued), result(client, straight))
    assert continued["handles"] == straight["handles"]
    # Starting from a state does not use it up.
    again = drag(client, sid, dict(B, handles=a["handles"]), from_state=a["state_id"])
    assert np.array_equal(result(client, again), result(client, continued))


def test_reset_brings_back_the_original_and_clears_handles(client):
    made = client.generate(seed=24, model=TINY)
    sid = made["session_id"]
    a = drag(client, sid, A)
    assert not np.array_equal(pixels(client.session_image(sid)), pixels(made["image"]))
    reset = client.reset_session(sid)
    assert reset["state_id"] == reset["initial_state_id"] == made["initial_state_id"]
    assert reset["handles"] == [] and reset["targets"] == []
    assert np.array_equal(pixels(client.session_image(sid)), pixels(made["image"]))
    # The drag's state is kept: a result layer made before the reset can still go on from it.
    assert a["state_id"] in [s["state_id"] for s in reset["states"]]
    after = drag(client, sid, B)
    fresh = client.generate(seed=24, model=TINY)
    assert np.array_equal(result(client, after), result(client, drag(client, fresh["session_id"], B)))
    with pytest.raises(DaemonError) as e:
        client.reset_session("gone")
    assert e.value.status == 404 and e.value.code == "unknown_session"


def test_a_copy_of_a_session_resets_to_the_original_picture(client):
    made = client.generate(seed=25, model=TINY)
    a = drag(client, made["session_id"], A)
    layer = image_of(client.result(a["job_id"])).convert("RGB").resize((128, 128), Image.BICUBIC)
    copy = client.create_session(png_of(layer), from_session=made["session_id"])
    assert len(copy["states"]) == 2 and copy["state_id"] == copy["states"][1]["state_id"]
    assert copy["initial_state_id"] != made["initial_state_id"]  # states belong to their session
    assert len(copy["handles"]) == 1 and copy["targets"] == [[72.5, 66.5]]  # a's, at the copy's size
    client.reset_session(copy["session_id"])
    original = image_of(made["image"]).resize((128, 128), Image.BILINEAR)
    shown = image_of(client.session_image(copy["session_id"]))
    assert shown.size == (128, 128)
    assert np.abs(np.asarray(shown, np.float32) - np.asarray(original, np.float32)).mean() < 8


def test_a_real_layers_session_keeps_its_inversion_through_states_and_reset(client):
    picture = image_of(client.generate(seed=31, model=TINY)["image"]).convert("RGBA")
    canvas = Image.new("RGBA", (100, 80), (40, 90, 160, 255))
    canvas.paste(picture, (30, 10))
    sent = np.array(canvas)
    invert = {"steps_w": 3, "steps_wplus": 1, "steps_pti": 2, "preview_every": 0}
    made = client.create_session(png_of(canvas), model=TINY, invert=invert)
    assert made["state_id"] is None and made["states"] == []  # nothing to start from while inverting
    inverted = client.wait(made["job_id"], poll_interval=0.02)
    assert inverted["state"] == "done"
    sid = made["session_id"]
    session = client.session(sid)
    assert inverted["state_id"] == session["initial_state_id"] == session["state_id"]
    a, b = dict(A, handles=[[60, 40]], targets=[[66, 43]]), dict(B, handles=[[50, 50]], targets=[[46, 44]])
    first = drag(client, sid, a)
    from_start = drag(client, sid, b, from_state=inverted["state_id"])
    reset = client.reset_session(sid)
    assert reset["state_id"] == inverted["state_id"] and reset["handles"] == []
    assert reset["invert_job"] == made["job_id"]  # the inversion is kept: no new invert job
    assert np.array_equal(pixels(client.session_image(sid)), sent)  # nothing differs from the layer
    after_reset = drag(client, sid, b)
    assert np.array_equal(result(client, after_reset), result(client, from_start))
    continued = drag(client, sid, dict(b, handles=first["handles"]), from_state=first["state_id"])
    again = drag(client, sid, dict(b, handles=first["handles"]), from_state=first["state_id"])
    assert np.array_equal(result(client, continued), result(client, again))
    assert not np.array_equal(result(client, continued), result(client, after_reset))
    same = client.create_session(png_of(canvas), model=TINY, invert=invert)
    assert same["session_id"] == sid and same["reused"] and same["job_id"] is None


def test_a_cancelled_drag_makes_no_state_and_a_stopped_one_does(client, steps):
    made = client.generate(seed=26, model=TINY)
    sid = made["session_id"]
    a = drag(client, sid, A)
    before = client.session(sid)
    steps.gate.clear()  # the job waits after each step until the gate opens
    job = client.drag(sid, from_state=made["initial_state_id"], **FAR)
    wait_for(lambda: client.job(job["job_id"])["step"] >= 1, what="the first step")
    with pytest.raises(DaemonError) as e:
        client.reset_session(sid)
    assert e.value.status == 409 and e.value.code == "session_busy"
    client.cancel(job["job_id"])
    steps.gate.set()
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "cancelled" and final["state_id"] is None
    after = client.session(sid)
    assert after["state_id"] == a["state_id"] and after["states"] == before["states"]
    assert after["handles"] == a["handles"]
    # The session is back in a's state: continuing gives what continuing from a gives.
    steps.gate.clear()
    job = client.drag(sid, **FAR)
    wait_for(lambda: client.job(job["job_id"])["step"] >= 1, what="the first step")
    client.stop(job["job_id"])
    steps.gate.set()
    stopped = client.wait(job["job_id"], poll_interval=0.02)
    assert stopped["state"] == "done" and stopped["reason"] == "stopped" and stopped["state_id"] is not None
    assert client.session(sid)["states"][-1]["state_id"] == stopped["state_id"]


def test_the_bound_drops_the_oldest_state_with_a_clear_code(models_dir, caplog):
    with running_daemon(models_dir, limits=Limits(**{**LIMITS.__dict__, "max_states_per_session": 3})) as s:
        client = DaemonClient(s.url, timeout=30)
        made = client.generate(seed=27, model=TINY)
        sid = made["session_id"]
        with caplog.at_level(logging.INFO, logger="draggan.daemon"):
            finals = [drag(client, sid, dict(A, steps=1)) for _ in range(3)]
        kept = [st["state_id"] for st in client.session(sid)["states"]]
        assert kept == [made["initial_state_id"], finals[1]["state_id"], finals[2]["state_id"]]
        assert f"state {finals[0]['state_id']} dropped" in caplog.text
        with pytest.raises(DaemonError) as e:
            client.drag(sid, from_state=finals[0]["state_id"], **A)
        assert e.value.status == 410 and e.value.code == "state_gone"
        assert "no longer keeps" in str(e.value) and "regenerate or re-invert" in str(e.value)
        assert client.session(sid)["active_job"] is None  # the refused drag left the session free
        with pytest.raises(DaemonError) as e:
            client.drag(sid, from_state="0" * 24, **A)
        assert e.value.status == 404 and e.value.code == "unknown_state"
        other = client.generate(seed=28, model=TINY)
        with pytest.raises(DaemonError) as e:  # a state of another session is not this session's
            client.drag(sid, from_state=other["initial_state_id"], **A)
        assert e.value.code == "unknown_state"
        # The initial state is kept as long as the session, whatever the bound.
        assert drag(client, sid, A, from_state=made["initial_state_id"])["state"] == "done"
        assert client.session(sid)["states"][0]["state_id"] == made["initial_state_id"]


def test_states_count_in_the_session_stores_memory(client, models_dir):
    made = client.generate(seed=29, model=TINY)
    sid = made["session_id"]
    drag(client, sid, A)
    one = client.session(sid)
    second = drag(client, sid, A)
    two = client.session(sid)
    added = two["states"][-1]
    assert added["state_id"] == second["state_id"]
    assert two["bytes"] - one["bytes"] == added["bytes"] > 0  # the new state is what grew
    fresh, after_one, after_two = made["bytes"], one["bytes"], two["bytes"]
    # A store that holds two sessions until one of them has made two drags: then the other, idle, goes.
    limits = Limits(**{**LIMITS.__dict__, "max_session_bytes": fresh + after_two - 1})
    with running_daemon(models_dir, limits=limits) as s:
        small = DaemonClient(s.url, timeout=30)
        kept, other = small.generate(seed=29, model=TINY), small.generate(seed=30, model=TINY)
        drag(small, kept["session_id"], A)
        assert small.session(kept["session_id"])["bytes"] == after_one
        assert small.session(other["session_id"])["bytes"] == fresh  # still there
        drag(small, kept["session_id"], A)
        assert small.session(kept["session_id"])["bytes"] == after_two
        with pytest.raises(DaemonError) as e:
            small.session(other["session_id"])
        assert e.value.code == "unknown_session"
        assert small.health()["sessions"] == 1
        assert state(s).sessions.get(kept["session_id"]).bytes == after_two
