"""Real-image editing over real HTTP: a 1000x700 RGBA layer with the subject off-centre -> session on
the selection's region -> invert job (progress, previews, quality) -> drag in layer pixels -> the
full-size layer composited (bit-exact outside the mask); reuse, stop, cancel and failure of invert jobs."""
from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest
import torch
from PIL import Image

from draggan_client.client import DaemonClient, DaemonError
from backend.config import Limits
from backend.editing import invert_config
from backend.validation import InvertRequest, SessionRequest
from draggan_core import load_generator, registry
from draggan_core.invert import Inverter
from test_daemon_support import (TINY, client, image_of, models_dir, png_of, running_daemon, state,  # noqa: F401
                                 wait_for)

LIMITS = Limits(max_body_bytes=8 * 1024 * 1024, max_pixels=1_000_000, max_side=2048, max_points=8, max_steps=500,
                max_invert_steps=1000, max_sessions=32, max_finished_jobs=128)
W, H = 1000, 700
SUBJECT = (600, 300, 256, 256)  # x, y, width, height of the pasted picture: off-centre
FAST = {"steps_w": 12, "steps_wplus": 4, "steps_pti": 8, "preview_every": 4}


@pytest.fixture(scope="module")
def server(models_dir):
    with running_daemon(models_dir, limits=LIMITS) as s:
        yield s


@pytest.fixture(scope="module")
def layer(server) -> np.ndarray:
    """A flat background with a picture the tiny generator made, upscaled, pasted off-centre; a
    half-transparent strip and a fully transparent corner check that alpha comes back unchanged."""
    made = DaemonClient(server.url).generate(seed=3, model=TINY)
    picture = image_of(made["image"]).convert("RGB").resize(SUBJECT[2:], Image.BICUBIC)
    canvas = Image.new("RGBA", (W, H), (40, 90, 160, 255))
    canvas.paste(picture, SUBJECT[:2])
    pixels = np.array(canvas)
    pixels[:, :40, 3] = 128
    pixels[:30, :30, 3] = 0
    return pixels


class Pace:
    """Pauses Inverter.run after each step while `gate` is clear; `fail_at` raises at that step."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail_at: int | None = None


@pytest.fixture
def pace(monkeypatch):
    control = Pace()
    original = Inverter.run

    def paced(self, *args, **kwargs):
        for i, step in enumerate(original(self, *args, **kwargs), 1):
            if control.fail_at is not None and i == control.fail_at:
                raise RuntimeError("injected inversion failure")
            yield step
            control.gate.wait(30)

    monkeypatch.setattr(Inverter, "run", paced)
    yield control
    control.gate.set()


def open_session(client, pixels, **kwargs):
    kwargs.setdefault("model", TINY)
    kwargs.setdefault("invert", FAST)
    return client.create_session(png_of(Image.fromarray(pixels, "RGBA")), **kwargs)


def test_invert_drag_and_composite_a_real_layer(client, server, layer, pace):
    pace.gate.clear()  # hold the inversion after its first step
    made = open_session(client, layer, selection_bbox=list(SUBJECT), margin=0.1)
    sid, jid = made["session_id"], made["job_id"]
    assert made["reused"] is False and jid and made["ready"] is False and made["invert_job"] == jid
    assert (made["width"], made["height"], made["model_width"]) == (W, H, 64)
    region = made["region"]
    assert region["x"] <= SUBJECT[0] and region["x"] + region["width"] >= SUBJECT[0] + SUBJECT[2]
    assert region["width"] < W and region["height"] < H  # only the selection's area (grown by the margin)
    fit = made["fit"]  # the recorded resize + pad
    assert fit["content"]["width"] <= 64 and fit["content"]["height"] <= 64 and 64 in (
        fit["content"]["width"], fit["content"]["height"])
    assert fit["scale"][0] == pytest.approx(fit["content"]["width"] / region["width"])
    # Dragging before the inversion is done is refused with a clear message.
    with pytest.raises(DaemonError) as e:
        client.drag(sid, handles=[[720, 420]], targets=[[740, 410]], steps=3)
    assert e.value.status == 409 and e.value.code == "session_inverting" and jid in str(e.value)
    pace.gate.set()
    seen, previews = [], []
    final = client.wait(jid, on_progress=seen.append, on_preview=lambda png, s: previews.append(png),
                        poll_interval=0.02)
    assert final["kind"] == "invert" and final["state"] == "done" and final["error"] is None
    assert final["reason"] in ("finished", "reached") and final["max_steps"] == 24
    stages = [s["inversion"]["stage"] for s in seen if s["inversion"]["stage"]]
    assert stages and set(stages) <= {"w", "w+", "pti"} and stages == sorted(stages, key=["w", "w+", "pti"].index)
    assert all(s["inversion"]["psnr"] is None or np.isfinite(s["inversion"]["psnr"]) for s in seen)
    assert [s["step"] for s in seen] == sorted(s["step"] for s in seen)
    assert previews and all(image_of(p).size == (W, H) for p in previews)
    quality = final["result"]["quality"]
    assert list(quality) == ["start", "w", "w+", "pti"] and final["result"]["width"] == W
    assert quality["pti"]["psnr"] > quality["start"]["psnr"] and 0 < quality["pti"]["ssim"] <= 1
    assert final["inversion"]["psnr"] == pytest.approx(quality["pti"]["psnr"], abs=1e-2)
    reconstruction = np.asarray(image_of(client.result(jid)))
    assert reconstruction.shape == (H, W, 4) and (reconstruction[..., 3] == layer[..., 3]).all()
    info = client.session(sid)
    assert info["ready"] is True and info["active_job"] is None and info["region"] == region
    assert state(server).sessions.get(sid).bytes > state(server).sessions.get(sid).inversion.extra_bytes > 0

    # Drag in layer pixels with a layer-size mask.
    mask = Image.new("L", (W, H), 0)
    mask.paste(255, (640, 340, 820, 520))
    job = client.drag(sid, handles=[[720, 430]], targets=[[745, 415]], steps=8, preview_every=4,
                      mask_png=png_of(mask), feather=4)
    done = client.wait(job["job_id"], poll_interval=0.02)
    assert done["state"] == "done" and done["result"] == {"width": W, "height": H}
    assert all(region["x"] - 1 <= p[0] <= region["x"] + region["width"] for p in done["handles"])
    result = np.asarray(image_of(client.result(job["job_id"])))
    assert result.shape == (H, W, 4)
    editable = np.asarray(mask) > 0
    assert (result[~editable] == layer[~editable]).all()  # bit-exact outside the mask, alpha included
    assert (result[..., 3] == layer[..., 3]).all()
    assert np.abs(result[editable].astype(int) - layer[editable].astype(int)).max() > 0  # changed inside
    changed = done["changed"]
    assert changed is not None and 640 <= changed["x"] and changed["x"] + changed["width"] <= 820
    assert 340 <= changed["y"] and changed["y"] + changed["height"] <= 520
    assert image_of(client.preview(job["job_id"])).size == (W, H)
    assert client.session(sid)["handles"] == done["handles"]

    # Without a mask the edit lands where the picture changed, inside the region; outside stays exact.
    free = client.wait(client.drag(sid, handles=done["handles"], targets=[[760, 405]], steps=4)["job_id"])
    assert free["state"] == "done"
    out = np.asarray(image_of(client.result(free["job_id"])))
    outside = np.ones((H, W), bool)
    outside[region["y"]:region["y"] + region["height"], region["x"]:region["x"] + region["width"]] = False
    assert (out[outside] == layer[outside]).all() and (out[..., 3] == layer[..., 3]).all()
    if free["changed"] is not None:
        c = free["changed"]
        assert c["x"] >= region["x"] and c["x"] + c["width"] <= region["x"] + region["width"]

    # Points outside the region are refused in layer terms.
    with pytest.raises(DaemonError) as e:
        client.drag(sid, handles=[[10, 10]], targets=[[20, 20]])
    assert e.value.status == 400 and e.value.code == "point_outside" and "region" in str(e.value)

    # The same layer and settings again: the same session at once, no new job.
    jobs_before = len(state(server).jobs._jobs)
    started = time.perf_counter()
    again = open_session(client, layer, selection_bbox=list(SUBJECT), margin=0.1)
    assert time.perf_counter() - started < 5
    assert again["reused"] is True and again["session_id"] == sid and again["job_id"] is None
    assert len(state(server).jobs._jobs) == jobs_before and client.health()["queue_length"] == 0
    # Anything different (here one pixel outside the region: the layer composited into changes) is a new session.
    painted = layer.copy()
    painted[5, 500, 0] ^= 1
    other = open_session(client, painted, selection_bbox=list(SUBJECT), margin=0.1)
    assert other["reused"] is False and other["session_id"] != sid and other["job_id"]
    client.cancel(other["job_id"])
    assert client.wait(other["job_id"], poll_interval=0.02)["state"] == "cancelled"


def test_stop_keeps_the_best_inversion_so_far(client, layer, pace):
    pace.gate.clear()
    made = open_session(client, layer, region=[560, 260, 340, 340], invert={"steps_w": 400, "preview_every": 1})
    jid = made["job_id"]
    wait_for(lambda: client.job(jid)["step"] >= 1, what="the first inversion step")
    assert client.stop(jid)["state"] == "running"  # ends after the current step
    pace.gate.set()
    final = client.wait(jid, poll_interval=0.02)
    assert final["state"] == "done" and final["reason"] == "stopped" and final["step"] <= 3
    quality = final["result"]["quality"]
    assert list(quality) == ["start", "w"] and quality["w"]["stopped"] is True
    assert image_of(client.result(jid)).size == (W, H)
    sid = made["session_id"]
    assert client.session(sid)["ready"] is True
    assert client.wait(client.drag(sid, handles=[[700, 400]], targets=[[710, 396]], steps=2)["job_id"])[
        "state"] == "done"


def test_cancel_drops_the_session_and_a_new_request_starts_again(client, layer, pace):
    pace.gate.clear()
    kwargs = dict(region=[500, 250, 400, 400], invert={**FAST, "steps_w": 300})
    made = open_session(client, layer, **kwargs)
    jid, sid = made["job_id"], made["session_id"]
    wait_for(lambda: client.job(jid)["step"] >= 1, what="the first inversion step")
    client.cancel(jid)
    pace.gate.set()
    assert client.wait(jid, poll_interval=0.02)["state"] == "cancelled"
    with pytest.raises(DaemonError) as e:
        client.session(sid)
    assert e.value.status == 404
    again = open_session(client, layer, **kwargs)
    assert again["reused"] is False and again["session_id"] != sid and again["job_id"] not in (None, jid)
    client.cancel(again["job_id"])
    assert client.wait(again["job_id"], poll_interval=0.02)["state"] == "cancelled"


def test_a_failing_inversion_fails_alone(client, layer, pace):
    healthy = open_session(client, layer, region=[600, 300, 256, 256])
    assert client.wait(healthy["job_id"], poll_interval=0.02)["state"] == "done"
    pace.fail_at = 3
    bad = open_session(client, layer, region=[600, 300, 200, 256])
    final = client.wait(bad["job_id"], poll_interval=0.02)
    assert final["state"] == "failed" and final["error"]["code"] == "internal"
    assert "injected inversion failure" not in final["error"]["message"]  # details go to the log only
    with pytest.raises(DaemonError):
        client.session(bad["session_id"])
    pace.fail_at = None
    assert client.health()["api"] == "v1"
    job = client.drag(healthy["session_id"], handles=[[700, 400]], targets=[[712, 398]], steps=2)
    assert client.wait(job["job_id"], poll_interval=0.02)["state"] == "done"


@pytest.mark.parametrize("body, code", [
    (dict(region=[0, 0, 10, 10], selection_bbox=[0, 0, 10, 10]), "bad_combination"),
    (dict(region=[990, 0, 20, 10]), "bad_region"),
    (dict(selection_bbox=[2000, 2000, 10, 10]), "bad_region"),
    (dict(region=[0, 0, 0, 10]), "bad_region"),
    (dict(invert={"steps_x": 3}), "unknown_field"),
    (dict(invert={"steps_w": 0}), "out_of_range"),
    (dict(invert={"pti": "yes"}), "bad_request"),
])
def test_bad_session_requests_are_refused(client, layer, body, code):
    with pytest.raises(DaemonError) as e:
        open_session(client, layer, **{"invert": None, **body})
    assert e.value.status == 400 and e.value.code == code


def test_transparent_region_and_from_session_combinations_are_refused(client, layer):
    with pytest.raises(DaemonError) as e:
        open_session(client, layer, region=[0, 0, 30, 30])  # the fully transparent corner
    assert e.value.status == 400 and "transparent" in str(e.value)
    made = client.generate(seed=4, model=TINY)
    with pytest.raises(DaemonError) as e:
        client.create_session(made["image"], from_session=made["session_id"], region=[0, 0, 8, 8])
    assert e.value.status == 400 and e.value.code == "bad_combination"


def test_tuned_generators_count_in_the_session_memory_limit(small_generator):
    """Inversion.extra_bytes (the tuned copy) is part of a session's estimate, so the store drops
    least recently used real-layer sessions by their true weight."""
    from backend.geometry import Mapping
    from backend.sessions import Session, SessionStore, new_id
    from draggan_core.drag import DragSession

    class FakeInversion:
        extra_bytes = 10_000_000

    def session(inverted: bool) -> Session:
        s = Session(model=None, drag=DragSession(small_generator, 0), mapping=Mapping(32, 32, 32, 32),
                    key=new_id() if inverted else None)
        s.inversion = FakeInversion() if inverted else None
        return s

    plain = session(False)
    assert plain.estimate() < 1_000_000
    store = SessionStore(max_sessions=10, max_bytes=25_000_000)
    made = [store.add(session(True)) for _ in range(3)]
    assert made[0].bytes >= 10_000_000 and len(store) == 2
    assert store.find(made[0].key) is None and store.find(made[2].key) is made[2]


def test_cpu_defaults_leave_most_of_the_inversion_to_pivotal_tuning():
    """On a CPU the daemon's default schedule for the 128-px demo model is W / W+ / PTI = 30 / 10 / 100
    (benchmarks/README.md, "Time to PSNR": 35 dB after about 5 s on two cores); a GPU keeps the
    model-size defaults, and a request's own step counts win on either."""
    demo = types.SimpleNamespace(G=load_generator(registry.resolve(None)[0]))
    request = SessionRequest(image=Image.new("RGBA", (8, 8)), from_session=None)
    cpu, total = invert_config(demo, torch.device("cpu"), request)
    assert (cpu.w_steps, cpu.wplus_steps, cpu.pti_steps, total) == (30, 10, 100, 140)
    gpu, _ = invert_config(demo, torch.device("cuda"), request)
    assert (gpu.w_steps, gpu.wplus_steps, gpu.pti_steps) == (500, 200, 250)
    asked = SessionRequest(image=request.image, from_session=None, invert=InvertRequest(50, 0, 20, True, 10))
    own, total = invert_config(demo, torch.device("cpu"), asked)
    assert (own.stages, own.w_steps, own.pti_steps, total) == (("w", "pti"), 50, 20, 70)
