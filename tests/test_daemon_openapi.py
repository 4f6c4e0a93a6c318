"""The served OpenAPI document is true: it lists exactly the app's routes, real answers validate
against its schemas, and bodies its schema refuses are refused by the daemon too."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from PIL import Image
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator

from draggan_client.client import DaemonClient
from test_daemon_support import TINY, http_session, models_dir, png_of, server  # noqa: F401
from test_daemon_validation import DRAG_BODIES

METHODS = ("get", "post", "put", "delete", "patch")


@pytest.fixture(scope="module")
def doc(server) -> dict:
    return http_session().get(server.url + "/api/v1/openapi.json", timeout=10).json()


def validator(doc: dict, schema: dict) -> Draft202012Validator:
    """A validator for a schema that may $ref the document's components."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_the_document_is_well_formed(doc):
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": "/api/v1"}]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"])


def test_every_route_is_documented_and_every_documented_route_exists(server, doc):
    routes = set()
    for rule in server.app.url_map.iter_rules():
        assert rule.rule.startswith("/api/v1/"), f"route outside the API: {rule.rule}"
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routes |= {(template, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert routes == documented


class Checker:
    """Sends requests and checks each answer against the document, remembering what was covered."""

    def __init__(self, server, doc):
        self.base, self.doc, self.http = server.url + "/api/v1", doc, http_session()
        self.seen: set[tuple[str, str, str]] = set()

    def operation(self, method: str, path: str) -> tuple[str, dict]:
        for template, item in self.doc["paths"].items():
            if re.fullmatch(re.sub(r"\{\w+\}", r"[^/]+", template), path) and method in item:
                return template, item[method]
        raise AssertionError(f"{method.upper()} {path} is not in the document")

    def __call__(self, method: str, path: str, status: int, body=None, **kwargs):
        template, op = self.operation(method, path)
        if body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            validator(self.doc, schema).validate(body)
            kwargs["json"] = body
        response = self.http.request(method, self.base + path, timeout=30, **kwargs)
        assert response.status_code == status, response.text
        documented = op["responses"].get(str(status))
        assert documented is not None, f"{method} {template} answered {status}, which is not documented"
        content_type = response.headers["Content-Type"].split(";")[0]
        assert content_type in documented["content"]
        schema = documented["content"][content_type].get("schema")
        if content_type == "application/json" and schema:
            validator(self.doc, schema).validate(response.json())
        if content_type == "image/png":
            assert response.content.startswith(b"\x89PNG")
        self.seen.add((template, method, str(status)))
        return response


def test_real_answers_follow_the_document(server, doc):
    check = Checker(server, doc)
    check("get", "/health", 200)
    check("get", "/models", 200)
    check("get", "/openapi.json", 200)
    made = check("post", "/generate", 201, {"model": TINY, "seed": 3, "psi": 0.5}).json()
    sid = made["session_id"]
    check("post", "/generate", 400, {"model": "nope", "seed": 3})
    check("post", "/generate", 415, data=b"{}", headers={"Content-Type": "text/plain"})
    check("post", "/generate", 413, data=b"x" * (server.config.limits.max_body_bytes + 1),
          headers={"Content-Type": "application/json"})
    copy = check("post", "/sessions", 201, {"image": made["image"], "from_session": sid}).json()
    noise = base64.b64encode(png_of(Image.fromarray(np.random.RandomState(0).randint(0, 256, (40, 56, 4), np.uint8),
                                                    "RGBA"))).decode()
    check("post", "/sessions", 409, {"image": noise, "from_session": sid})
    invert = {"steps_w": 3, "steps_wplus": 1, "steps_pti": 2, "preview_every": 1}
    real = check("post", "/sessions", 201, {"image": noise, "model": TINY, "selection_bbox": [10, 8, 20, 20],
                                            "margin": 0.1, "invert": invert}).json()
    inverted = DaemonClient(server.url).wait(real["job_id"], poll_interval=0.02)
    assert inverted["state"] == "done" and inverted["result"]["quality"]
    check("get", f"/jobs/{real['job_id']}", 200)
    check("get", f"/jobs/{real['job_id']}/result", 200)
    again = check("post", "/sessions", 201, {"image": noise, "model": TINY, "selection_bbox": [10, 8, 20, 20],
                                             "margin": 0.1, "invert": invert}).json()
    assert again["reused"] and again["job_id"] is None
    layer_job = check("post", f"/sessions/{real['session_id']}/drag", 202,
                      {"handles": [[20, 18]], "targets": [[24, 18]], "steps": 2, "feather": 2}).json()
    DaemonClient(server.url).wait(layer_job["job_id"], poll_interval=0.02)
    check("get", f"/jobs/{layer_job['job_id']}", 200)
    check("get", f"/jobs/{layer_job['job_id']}/result", 200)
    check("post", "/sessions", 404, {"image": made["image"], "from_session": "gone"})
    check("get", f"/sessions/{sid}", 200)
    check("get", f"/sessions/{sid}/image", 200)
    check("get", f"/sessions/{real['session_id']}/image", 200)
    check("post", f"/sessions/{real['session_id']}/reset", 200)
    check("post", "/sessions/gone/reset", 404)
    check("post", f"/sessions/{sid}/drag", 404, {"handles": [[1, 1]], "targets": [[2, 2]], "from_state": "gone"})
    job = check("post", f"/sessions/{sid}/drag", 202, {"handles": [[30, 30]], "targets": [[34, 32]], "steps": 6,
                                                        "preview_every": 2, "mask": None}).json()
    check("post", f"/sessions/{sid}/drag", 409, {"handles": [[30, 30]], "targets": [[34, 32]]})
    DaemonClient(server.url).wait(job["job_id"], poll_interval=0.02)
    jid = job["job_id"]
    check("get", f"/jobs/{jid}", 200)
    check("get", f"/jobs/{jid}/preview", 200)
    check("get", f"/jobs/{jid}/result", 200)
    check("post", f"/jobs/{jid}/stop", 200)
    check("post", f"/jobs/{jid}/cancel", 409)
    long_job = check("post", f"/sessions/{copy['session_id']}/drag", 202,
                     {"handles": [[10, 10]], "targets": [[60, 60]], "steps": 400, "preview_every": 0}).json()
    check("get", f"/jobs/{long_job['job_id']}/preview", 404)
    check("post", f"/jobs/{long_job['job_id']}/cancel", 200)
    check("get", f"/jobs/{long_job['job_id']}/result", 409)
    check("delete", f"/sessions/{copy['session_id']}", 200)
    check("get", f"/sessions/{copy['session_id']}", 404)
    check("delete", f"/sessions/{copy['session_id']}", 404)
    check("post", "/sessions/gone/drag", 404, {"handles": [[1, 1]], "targets": [[2, 2]]})
    check("post", f"/sessions/{sid}/drag", 400, {"handles": [[1, 1]], "targets": [[99, 2]]})
    check("get", "/jobs/gone", 404)
    check("post", "/jobs/gone/stop", 404)
    check("get", "/health", 403, headers={"Host": "attacker.example"})
    elsewhere = {("/models/{name}/download", "post", "202")}  # needs a model host: test_daemon_downloads.py
    successes = {(path, method, status) for path, item in doc["paths"].items() for method, op in item.items()
                 if method in METHODS for status in op["responses"] if status.startswith("2")} - elsewhere
    assert successes <= check.seen, f"not exercised: {sorted(successes - check.seen)}"
    assert base64.b64decode(made["image"]).startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def sid(server) -> str:
    return DaemonClient(server.url).generate(seed=4, model=TINY)["session_id"]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=DRAG_BODIES)
def test_bodies_the_schema_refuses_are_refused(server, doc, sid, body):
    schema = doc["paths"]["/sessions/{sid}/drag"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if validator(doc, schema).is_valid(body):
        return
    response = http_session().post(f"{server.url}/api/v1/sessions/{sid}/drag", data=json.dumps(body), timeout=10,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400, (body, response.text)
