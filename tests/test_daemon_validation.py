"""Every refusal the daemon makes, over raw HTTP: the right status, code and message, and a daemon
that stays healthy afterwards. Plus a property test: random bodies never get a 5xx."""
from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.validation import DRAG_FIELDS
from test_daemon_support import LIMITS, TINY, http_session, models_dir, png_of, server  # noqa: F401


@pytest.fixture(scope="module")
def http() -> requests.Session:
    return http_session()


@pytest.fixture(scope="module")
def sid(server) -> str:
    from draggan_client.client import DaemonClient
    return DaemonClient(server.url).generate(seed=1, model=TINY)["session_id"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; the daemon must refuse it before decoding any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


GOOD_PNG = png_of(Image.new("RGB", (64, 64), (10, 20, 30)))
DRAG = {"handles": [[10, 10]], "targets": [[20, 20]]}

# (id, method, path, request kwargs, status, code, words the message must contain)
CASES = [
    ("bad json", "POST", "/generate", dict(data=b"{not json"), 400, "bad_json", "not valid JSON"),
    ("json array", "POST", "/generate", dict(json=[1, 2]), 400, "bad_json", "JSON object"),
    ("NaN", "POST", "/generate", dict(data=b'{"seed": NaN}'), 400, "bad_json", "NaN"),
    ("deep nesting", "POST", "/generate", dict(data=b"[" * 100_000), 400, "bad_json", "not valid JSON"),
    ("not json type", "POST", "/generate", dict(data=b'{"seed": 1}', headers={"Content-Type": "text/plain"}),
     415, "unsupported_media_type", "Content-Type: application/json"),
    ("missing seed", "POST", "/generate", dict(json={"model": TINY}), 400, "missing_field", "'seed'"),
    ("seed text", "POST", "/generate", dict(json={"seed": "1"}), 400, "bad_request", "'seed' must be an integer"),
    ("seed bool", "POST", "/generate", dict(json={"seed": True}), 400, "bad_request", "'seed' must be an integer"),
    ("seed range", "POST", "/generate", dict(json={"seed": 2 ** 40}), 400, "out_of_range", "between 0 and"),
    ("psi inf", "POST", "/generate", dict(data=b'{"seed": 1, "psi": 1e999}'), 400, "bad_request", "finite"),
    ("unknown field", "POST", "/generate", dict(json={"seed": 1, "sede": 2}), 400, "unknown_field", "'sede'"),
    ("unknown model", "POST", "/generate", dict(json={"seed": 1, "model": "nope"}), 400, "unknown_model",
     "small, tiny"),
    ("relative path model", "POST", "/generate", dict(json={"seed": 1, "model": "../../etc/passwd"}), 400,
     "unknown_model", "not available"),
    ("absolute path model", "POST", "/generate", dict(json={"seed": 1, "model": "/etc/passwd"}), 400,
     "unknown_model", "not available"),
    ("file name model", "POST", "/generate", dict(json={"seed": 1, "model": "tiny.safetensors"}), 400,
     "unknown_model", "not available"),
    ("model of wrong type", "POST", "/generate", dict(json={"seed": 1, "model": ["tiny"]}), 400, "bad_request",
     "'model' must be a string"),
    ("not a png", "POST", "/sessions", dict(json={"image": b64(b"hello"), "from_session": "x"}), 400, "bad_png",
     "not a PNG"),
    ("not base64", "POST", "/sessions", dict(json={"image": "***"}), 400, "bad_png", "base64"),
    ("truncated png", "POST", "/sessions", dict(json={"image": b64(GOOD_PNG[:60])}), 400, "bad_png", "broken PNG"),
    ("too many pixels", "POST", "/sessions", dict(json={"image": b64(png_header_only(600, 500))}), 400,
     "image_too_large", "at most"),
    ("too wide", "POST", "/sessions", dict(json={"image": b64(png_header_only(1100, 10))}), 400, "image_too_large",
     "1024 px per side"),
    ("png bomb", "POST", "/sessions", dict(json={"image": b64(png_header_only(100_000, 100_000))}), 400,
     "image_too_large", "at most"),
    ("unknown source session", "POST", "/sessions", dict(json={"image": b64(GOOD_PNG), "from_session": "nope"}), 404,
     "unknown_session", "'nope'"),
    ("too many points", "POST", "/sessions/{sid}/drag",
     dict(json={"handles": [[1, 1]] * 9, "targets": [[2, 2]] * 9}), 400, "too_many_points", "at most 8"),
    ("point count mismatch", "POST", "/sessions/{sid}/drag", dict(json={"handles": [[1, 1]], "targets": []}), 400,
     "bad_points", "targets"),
    ("point not a pair", "POST", "/sessions/{sid}/drag", dict(json={"handles": [[1]], "targets": [[2, 2]]}), 400,
     "bad_points", "handles[0]"),
    ("point outside right", "POST", "/sessions/{sid}/drag", dict(json={"handles": [[64, 10]], "targets": [[2, 2]]}),
     400, "point_outside", "outside the 64x64 image"),
    ("point outside top", "POST", "/sessions/{sid}/drag", dict(json={"handles": [[1, 1]], "targets": [[2, -0.5]]}),
     400, "point_outside", "targets[0]"),
    ("too many steps", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "steps": 501}), 400, "out_of_range",
     "'steps' must be between 1 and 500"),
    ("zero steps", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "steps": 0}), 400, "out_of_range", "'steps'"),
    ("bad learning rate", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "learning_rate": 0}), 400,
     "out_of_range", "'learning_rate'"),
    ("int beyond float", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "learning_rate": 10 ** 400}), 400,
     "bad_request", "'learning_rate' must be a finite number"),
    ("point beyond float", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "targets": [[10 ** 400, 1]]}), 400,
     "bad_points", "targets[0]"),
    ("mask wrong size", "POST", "/sessions/{sid}/drag",
     dict(json={**DRAG, "mask": b64(png_of(Image.new("L", (32, 32))))}), 400, "bad_mask", "must match the image"),
    ("mask not png", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "mask": b64(b"GIF89a")}), 400, "bad_png",
     "'mask'"),
    ("drag unknown field", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "step": 3}), 400, "unknown_field",
     "'step'"),
    ("drag unknown state", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "from_state": "nope"}), 404,
     "unknown_state", "has no state 'nope'"),
    ("from_state not text", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "from_state": 3}), 400, "bad_request",
     "'from_state' must be a string"),
    ("drag unknown preset", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "preset": "fast"}), 400,
     "bad_preset", "unknown preset 'fast'; the presets are paper, quick, studio"),
    ("preset not text", "POST", "/sessions/{sid}/drag", dict(json={**DRAG, "preset": ["studio"]}), 400,
     "bad_request", "'preset' must be a string"),
    ("reset unknown session", "POST", "/sessions/nope/reset", {}, 404, "unknown_session", "'nope'"),
    ("reset with a body", "POST", "/sessions/{sid}/reset", dict(json={"all": True}), 400, "unknown_field", "'all'"),
    ("image of unknown session", "GET", "/sessions/nope/image", {}, 404, "unknown_session", "'nope'"),
    ("unknown session", "GET", "/sessions/nope", {}, 404, "unknown_session", "no session 'nope'"),
    ("delete unknown session", "DELETE", "/sessions/nope", {}, 404, "unknown_session", "'nope'"),
    ("drag unknown session", "POST", "/sessions/nope/drag", dict(json=DRAG), 404, "unknown_session", "'nope'"),
    ("unknown job", "GET", "/jobs/nope", {}, 404, "unknown_job", "no job 'nope'"),
    ("preview unknown job", "GET", "/jobs/nope/preview", {}, 404, "unknown_job", "'nope'"),
    ("result unknown job", "GET", "/jobs/nope/result", {}, 404, "unknown_job", "'nope'"),
    ("stop unknown job", "POST", "/jobs/nope/stop", {}, 404, "unknown_job", "'nope'"),
    ("cancel unknown job", "POST", "/jobs/nope/cancel", {}, 404, "unknown_job", "'nope'"),
    ("body too large", "POST", "/generate", dict(json={"seed": 1, "pad": "x" * (LIMITS.max_body_bytes + 10)}), 413,
     "too_large", f"limit of {LIMITS.max_body_bytes} bytes"),
    ("wrong method", "PUT", "/health", {}, 405, "method_not_allowed", "PUT"),
    ("unknown endpoint", "GET", "/nope", {}, 404, "no_such_endpoint", "/api/v1"),
]


@pytest.mark.parametrize("method, path, kwargs, status, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusals(server, http, sid, method, path, kwargs, status, code, words):
    kwargs = dict(kwargs)
    if "data" in kwargs:
        kwargs.setdefault("headers", {"Content-Type": "application/json"})
    response = http.request(method, server.url + "/api/v1" + path.format(sid=sid), timeout=30, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert http.get(server.url + "/api/v1/health", timeout=10).status_code == 200


JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-10 ** 400, 10 ** 400) | st.floats()
                | st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
COORD = st.one_of(st.integers(-5, 70), st.floats(-5, 70), st.floats(), st.integers(), st.booleans(),
                  st.text(max_size=2))
POINT_LISTS = st.lists(st.lists(COORD, min_size=0, max_size=3), min_size=0, max_size=10)
FIELD_VALUES = {
    "handles": POINT_LISTS | JSON_VALUES, "targets": POINT_LISTS | JSON_VALUES,
    "steps": st.integers(-2, 600) | JSON_VALUES, "preview_every": st.integers(-1, 20) | JSON_VALUES,
    "learning_rate": st.floats() | JSON_VALUES, "mask_lambda": st.floats() | JSON_VALUES,
    "w_layers": st.integers(-1, 70) | JSON_VALUES, "r1": st.floats(-1, 100) | JSON_VALUES,
    "r2": st.integers(-1, 200) | JSON_VALUES, "feather": st.integers(-1, 300) | JSON_VALUES,
    "mask": st.sampled_from([b64(GOOD_PNG), "", "AAAA", b64(png_of(Image.new("L", (64, 64), 255)))]) | JSON_VALUES,
    "from_state": st.text(max_size=30) | JSON_VALUES,
    "preset": st.sampled_from(["paper", "studio", "Studio", ""]) | JSON_VALUES,
}
assert set(FIELD_VALUES) == set(DRAG_FIELDS)  # the property below covers every field
OPTIONS = {k: v for k, v in FIELD_VALUES.items() if k not in ("handles", "targets")}
DRAG_BODIES = (st.fixed_dictionaries({}, optional={**FIELD_VALUES, "extra": JSON_VALUES})
               | st.fixed_dictionaries({k: st.just(v) for k, v in DRAG.items()}, optional=OPTIONS)  # valid points, so options are checked too
               | JSON_VALUES)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=DRAG_BODIES)
def test_random_drag_bodies_never_break_the_daemon(server, http, sid, body):
    url = server.url + "/api/v1"
    data = json.dumps(body).encode()
    response = http.post(f"{url}/sessions/{sid}/drag", data=data, headers={"Content-Type": "application/json"},
                         timeout=30)
    assert response.status_code in (202, 400, 404, 409), response.text  # 404: a from_state the session lacks
    assert "error" in response.json() or response.status_code == 202
    if response.status_code == 202:  # a valid drag: undo it so the session is free for the next example
        http.post(f"{url}/jobs/{response.json()['job_id']}/cancel", timeout=10)
    assert http.get(f"{url}/health", timeout=10).status_code == 200
