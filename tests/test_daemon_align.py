"""Aligned real layers over real HTTP (issue 16): POST /sessions with `align` (the four landmarks through the
model's framing, or an oriented box) -> the layer warped upright into the model, inverted, dragged with
points and masks in layer pixels -> the full layer back, bit-exact outside the mask and the quad, alpha
kept; the session and /models report the alignment and the framing; bad alignments are clear 400s."""
from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from PIL import Image

from backend.config import Limits
from draggan_client.client import DaemonClient, DaemonError
from draggan_core.alignment import warp
from draggan_core.demo import world
from draggan_core.formats import native
from conftest import make_generator
from test_daemon_support import TINY, http_session, image_of, png_of, running_daemon, state, write_models

LIMITS = Limits(max_body_bytes=4 * 1024 * 1024, max_pixels=250_000, max_side=1024, max_points=8, max_steps=500,
                max_invert_steps=1000, max_sessions=32, max_finished_jobs=128)
H, W = 260, 300
ANGLE, SCALE, CENTRE = 25.0, 1.2, (150.0, 128.0)  # where the 128 px cat goes on the layer
FAST = {"steps_w": 6, "steps_wplus": 2, "steps_pti": 2, "preview_every": 3}
FACES = "faces"  # a catalogue model declared as FFHQ-framed (a tiny random generator)
LANDMARK_NAMES = ("left_eye", "right_eye", "mouth_left", "mouth_right")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = write_models(tmp_path_factory.mktemp("models"))
    native.write(make_generator(seed=3, img_resolution=64, channel_base=128, channel_max=16),
                 str(directory / f"{FACES}.safetensors"))
    catalogue = directory.parent / "catalogue.json"
    catalogue.write_text(json.dumps([{"name": FACES, "url": "https://models.example/faces.safetensors",
                                      "resolution": 64, "domain": "test faces", "licence": "test",
                                      "framing": "ffhq"}]))
    with running_daemon(directory, limits=LIMITS, catalogue=catalogue) as s:
        yield s


@pytest.fixture
def client(server) -> DaemonClient:
    return DaemonClient(server.url, timeout=60)


def to_layer(points) -> np.ndarray:
    """The placement: render pixels (centres at integers) -> layer pixels."""
    a = math.radians(ANGLE)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (np.asarray(points, np.float64) - 63.5) @ rot.T * SCALE + np.asarray(CENTRE)


def to_render(points) -> np.ndarray:
    a = math.radians(ANGLE)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (np.asarray(points, np.float64) - np.asarray(CENTRE)) @ rot / SCALE + 63.5


CAT = world.set_param(np.full(world.NUM_PARAMS, 0.5, np.float32), "fur_hue", 0.3)  # the mean pose: framed as trained
MARKS = {k: (x - 0.5, y - 0.5) for k, (x, y) in world.landmarks(CAT, 128).items()}  # centres at integers


@pytest.fixture(scope="module")
def layer() -> np.ndarray:
    """The world's cat turned 25 degrees, scaled 1.2x and moved, on a flat background, with a
    half-transparent band across it and a transparent corner."""
    render = world.render(CAT, 128)
    yy, xx = np.mgrid[:H, :W]
    src = to_render(np.stack([xx, yy], -1).reshape(-1, 2)).reshape(H, W, 2)
    planes = np.concatenate([render.transpose(2, 0, 1), np.full((1, 128, 128), 255)], 0).astype(np.float32)
    placed = warp(planes, src, 1, "bilinear", "zeros")
    cover = placed[3] / 255
    pixels = np.empty((H, W, 4), np.uint8)
    pixels[..., :3] = np.clip(np.rint(placed[:3].transpose(1, 2, 0) + (1 - cover[..., None]) * [40, 90, 160]), 0, 255)
    pixels[..., 3] = 255
    pixels[:, 170:200, 3] = 128
    pixels[:20, :20, 3] = 0
    return pixels


def landmarks_on_layer() -> dict[str, list[float]]:
    return {k: [float(v) for v in to_layer([MARKS[k]])[0]] for k in LANDMARK_NAMES}


def post_session(server, body: dict) -> requests.Response:
    return http_session().post(server.url + "/api/v1/sessions", json=body, timeout=60)


def body_for(pixels: np.ndarray, **fields) -> dict:
    return {"image": base64.b64encode(png_of(Image.fromarray(pixels, "RGBA"))).decode(), **fields}


def schema_check(server, name: str, value: dict) -> None:
    doc = http_session().get(server.url + "/api/v1/openapi.json", timeout=10).json()
    Draft202012Validator({**doc["components"]["schemas"][name], "components": doc["components"]}).validate(value)


def test_a_tilted_cat_is_aligned_inverted_dragged_and_composited_back(server, client, layer):
    body = body_for(layer, model="demo", align=landmarks_on_layer(), invert=FAST)
    schema_check(server, "CreateSessionRequest", {k: v for k, v in body.items()})
    made = post_session(server, body)
    assert made.status_code == 201, made.text
    made = made.json()
    schema_check(server, "CreatedSession", made)
    align = made["align"]
    assert made["fit"] is None and align["framing"] == "demo"
    assert align["landmarks"] == {k: pytest.approx(v) for k, v in landmarks_on_layer().items()}
    assert align["box"]["angle"] == pytest.approx(ANGLE, abs=1e-6) and align["scale"] == pytest.approx(1 / SCALE, 1e-4)
    # The model's image is the render's frame turned and scaled onto the layer: its corners are the render's.
    render_corners = [(-0.5, -0.5), (127.5, -0.5), (127.5, 127.5), (-0.5, 127.5)]
    assert np.allclose(align["quad"], to_layer(render_corners), atol=0.05)
    region = made["region"]
    quad = np.asarray(align["quad"])
    assert region["x"] == max(0, math.floor(quad[:, 0].min() + 0.5)) and region["width"] <= W
    # A handle on the tilted cat lands on the same feature of the upright cat the model sees.
    mapping = state(server).sessions.get(made["session_id"]).mapping
    for name in ("nose", "left_ear_tip", "mouth_bottom"):
        assert mapping.to_model([tuple(to_layer([MARKS[name]])[0])])[0] == pytest.approx(MARKS[name], abs=0.05)

    done = client.wait(made["job_id"], poll_interval=0.02)
    assert done["state"] == "done" and done["result"]["width"] == W
    reconstruction = np.asarray(image_of(client.result(made["job_id"])))
    seen = np.zeros((H, W), bool)
    seen[mapping.region.slices] = mapping.region_mapping.region_coverage()
    assert (reconstruction[~seen] == layer[~seen]).all() and (reconstruction[..., 3] == layer[..., 3]).all()
    assert np.abs(reconstruction[seen].astype(int) - layer[seen]).max() > 0  # the reconstruction went in

    # Drag the nose with a mask (a disk on the layer) in layer pixels.
    nose = to_layer([MARKS["nose"]])[0]
    target = to_layer([(MARKS["nose"][0] + 6, MARKS["nose"][1] - 4)])[0]
    yy, xx = np.mgrid[:H, :W]
    editable = (xx - nose[0]) ** 2 + (yy - nose[1]) ** 2 <= 30 ** 2
    job = client.drag(made["session_id"], handles=[list(nose)], targets=[list(target)], steps=4, feather=4,
                      mask_png=png_of(Image.fromarray((editable * 255).astype(np.uint8), "L")))
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "done" and final["result"] == {"width": W, "height": H}
    result = np.asarray(image_of(client.result(job["job_id"])))
    assert (result[~editable] == layer[~editable]).all()  # bit-exact outside the mask, alpha included
    assert (result[..., 3] == layer[..., 3]).all()
    changed = final["changed"]
    assert changed is not None and editable[changed["y"]:changed["y"] + changed["height"],
                                            changed["x"]:changed["x"] + changed["width"]].any()
    assert math.dist(final["handles"][0], nose) < 10  # tracked handles come back in layer pixels
    schema_check(server, "Session", client.session(made["session_id"]))

    # Off the quad the model sees nothing: such points are refused in the layer's terms.
    with pytest.raises(DaemonError) as e:
        client.drag(made["session_id"], handles=[[2, 250]], targets=[[5, 250]])
    assert e.value.status == 400 and e.value.code == "point_outside" and "aligned" in str(e.value)

    # The same layer and alignment again: the same session; other landmarks: another one.
    again = post_session(server, body).json()
    assert again["reused"] is True and again["session_id"] == made["session_id"]
    moved = {k: [v[0] + 3, v[1]] for k, v in landmarks_on_layer().items()}
    other = post_session(server, body_for(layer, model="demo", align=moved, invert=FAST)).json()
    assert other["reused"] is False and other["session_id"] != made["session_id"]
    client.cancel(other["job_id"])


def test_a_box_aligns_any_model_and_landmarks_need_a_landmark_framing(server, client, layer):
    box = {"center": [150, 130], "width": 120, "angle": -30}
    made = post_session(server, body_for(layer, model=TINY, align={"box": box}, invert=FAST))
    assert made.status_code == 201, made.text
    align = made.json()["align"]
    assert align["framing"] == "box" and align["landmarks"] is None
    assert align["box"] == {"center": [150, 130], "width": 120, "height": 120, "angle": -30}  # the model's aspect
    assert align["scale"] == pytest.approx(64 / 120)
    assert client.wait(made.json()["job_id"], poll_interval=0.02)["state"] == "done"

    refused = post_session(server, body_for(layer, model=TINY, align=landmarks_on_layer()))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_align"
    assert "centred crops" in refused.json()["error"]["message"] and "box" in refused.json()["error"]["message"]

    # A catalogue model declared FFHQ-framed takes landmarks, through the FFHQ recipe: e = (40, 0),
    # m = (0, 50) -> a square of side 180 centred at (120, 105).
    face = {"left_eye": [100, 100], "right_eye": [140, 100], "mouth_left": [105, 150], "mouth_right": [135, 150]}
    made = post_session(server, body_for(layer, model=FACES, align=face, invert=FAST))
    assert made.status_code == 201, made.text
    align = made.json()["align"]
    assert align["framing"] == "ffhq" and align["box"]["center"] == pytest.approx([120, 105])
    assert align["box"]["width"] == pytest.approx(180) and align["scale"] == pytest.approx(64 / 180)
    client.cancel(made.json()["job_id"])


def test_models_say_how_they_were_framed(client):
    models = {m["name"]: m for m in client._call("GET", "/models")["models"]}
    assert models["demo"]["framing"] == "demo" and models[FACES]["framing"] == "ffhq"
    assert models[TINY]["framing"] == "centre" and models["stylegan2-ffhq-512x512"]["framing"] == "ffhq"
    assert models["stylegan2-afhqcat-512x512"]["framing"] == "centre"


GOOD = landmarks_on_layer()


@pytest.mark.parametrize("fields, code, words", [
    (dict(align=[1, 2]), "bad_align", "must be an object"),
    (dict(align={"left_eye": [1, 2]}), "bad_align", "missing 'right_eye'"),
    (dict(align={**GOOD, "nose": [1, 2]}), "unknown_field", "nose"),
    (dict(align={**GOOD, "box": {"center": [1, 2], "width": 50}}), "bad_align", "not both"),
    (dict(align={**GOOD, "left_eye": [1, "a"]}), "bad_align", "finite numbers"),
    (dict(align={**GOOD, "left_eye": [1e9, 2]}), "out_of_range", "too far outside"),
    (dict(align={**GOOD, "left_eye": GOOD["right_eye"], "right_eye": GOOD["left_eye"]}), "bad_align", "swapped"),
    (dict(align={"box": {"width": 50}}), "bad_align", "needs 'center'"),
    (dict(align={"box": {"center": [100, 100], "width": 2}}), "out_of_range", "align.box.width"),
    (dict(align={"box": {"center": [100, 100], "width": 50, "angle": 720}}), "out_of_range", "align.box.angle"),
    (dict(align={"box": {"center": [100, 100], "width": 50, "tilt": 3}}), "unknown_field", "tilt"),
    (dict(align={"box": {"center": [-250, -200], "width": 40}}), "bad_align", "does not overlap"),
    (dict(align=GOOD, region=[0, 0, 50, 50]), "bad_combination", "without 'region'"),
    (dict(align=GOOD, selection_bbox=[0, 0, 50, 50]), "bad_combination", "without 'region'"),
])
def test_bad_alignments_are_clear_400s(server, layer, fields, code, words):
    response = post_session(server, body_for(layer, model="demo", **fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error


def test_align_cannot_be_combined_with_from_session(server, client):
    made = client.generate(seed=4, model=TINY)
    image = base64.b64encode(made["image"]).decode()
    response = post_session(server, {"image": image, "from_session": made["session_id"], "align": GOOD})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_combination"


def test_a_fully_transparent_aligned_quad_is_refused(server):
    clear = np.zeros((H, W, 4), np.uint8)
    response = post_session(server, body_for(clear, model=TINY, align={"box": {"center": [100, 100], "width": 60}}))
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_align"
    assert "transparent" in response.json()["error"]["message"]


coordinate = st.one_of(st.floats(-3000, 3000), st.integers(-3000, 3000), st.just("x"), st.none())
point = st.one_of(st.lists(coordinate, min_size=2, max_size=2), st.lists(coordinate, max_size=3), coordinate)
ALIGN_VALUES = st.one_of(
    st.fixed_dictionaries({k: point for k in LANDMARK_NAMES}),
    st.fixed_dictionaries({"box": st.fixed_dictionaries(
        {"center": point, "width": st.one_of(st.floats(-10, 3000), st.just(True))},
        optional={"height": st.floats(-10, 3000), "angle": st.floats(-1000, 1000)})}),
    st.dictionaries(st.sampled_from([*LANDMARK_NAMES, "box", "nose"]), point, max_size=5),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(align=ALIGN_VALUES)
def test_any_alignment_is_a_session_or_a_clear_400(server, layer, align):
    """Never a 500; what the OpenAPI document refuses the daemon refuses."""
    body = body_for(layer, model="demo", align=align, invert={"steps_w": 1, "steps_wplus": 0, "steps_pti": 0})
    doc = http_session().get(server.url + "/api/v1/openapi.json", timeout=10).json()
    schema = doc["components"]["schemas"]["CreateSessionRequest"]
    allowed = Draft202012Validator({**schema, "components": doc["components"]}).is_valid(body)
    response = post_session(server, body)
    assert response.status_code in ((201, 400) if allowed else (400,)), (align, response.text)
    if response.status_code == 201 and response.json()["job_id"]:  # its inversion may have ended already
        http_session().post(f"{server.url}/api/v1/jobs/{response.json()['job_id']}/cancel", timeout=10)
    elif response.status_code == 400:
        assert response.json()["error"]["message"]
