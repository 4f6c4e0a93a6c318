"""The OpenAPI 3.1 document of the v1 API, served at /api/v1/openapi.json.

Response schemas are closed (no undocumented fields) and request limits are the serving daemon's
own, so the document can be checked against real answers (tests/test_daemon_openapi.py) and
stays the precise contract that docs/api.md summarises.
"""
from __future__ import annotations

from typing import Any

from draggan_core import __version__
from draggan_core.alignment import FRAMINGS, LANDMARKS, MAX_BOX_FACTOR, MIN_BOX_SIDE
from draggan_core.presets import DEFAULT as DEFAULT_PRESET, PRESETS

from .config import Limits

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these fields, all required unless listed as optional."""
    return {"type": "object", "properties": properties, "required": [k for k in properties if k not in optional],
            "additionalProperties": False}


STRING, INTEGER, NUMBER, BOOLEAN = ({"type": t} for t in ("string", "integer", "number", "boolean"))
PNG_BASE64 = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
POINT = {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2, "description": "[x, y] in pixels of the "
         "image the client sent: x right, y down, pixel centres at integers"}
POINTS = {"type": "array", "items": ref("Point")}
RECT = {"type": "object", "properties": {k: INTEGER for k in ("x", "y", "width", "height")},
        "required": ["x", "y", "width", "height"], "additionalProperties": False,
        "description": "a rectangle in the layer's pixels"}
RECT_ARRAY = {"type": "array", "items": INTEGER, "minItems": 4, "maxItems": 4,
              "description": "[x, y, width, height] in the layer's pixels"}
SESSION_FIELDS: dict[str, Schema] = {
    "session_id": STRING, "model": STRING,
    "width": INTEGER, "height": INTEGER, "model_width": INTEGER, "model_height": INTEGER,
    "handles": POINTS, "targets": POINTS,
    "active_job": nullable(STRING), "created": NUMBER, "last_used": NUMBER,
    "region": nullable({**RECT, "description": "real layers: the part of the layer fitted into the model's image"}),
    "fit": nullable({**closed({"content": RECT, "scale": {"type": "array", "items": NUMBER, "minItems": 2,
                                                          "maxItems": 2},
                               "padding": {"type": "array", "items": INTEGER, "minItems": 4, "maxItems": 4}}),
                     "description": "real layers: where the region lands in the model's image (content, model "
                                    "pixels), model pixels per layer pixel [sx, sy], padding [left, top, right, "
                                    "bottom]"}),
    "align": nullable({**closed({
        "framing": {"type": "string", "enum": [*[f for f in FRAMINGS if FRAMINGS[f].uses_landmarks], "box"],
                    "description": "the model's landmark framing the quad came from, or 'box' for a box as given"},
        "landmarks": nullable(closed({k: ref("Point") for k in LANDMARKS})),
        "box": closed({"center": ref("Point"), "width": NUMBER, "height": NUMBER,
                       "angle": {**NUMBER, "description": "degrees, clockwise on screen"}}),
        "scale": {**NUMBER, "description": "model pixels per layer pixel"},
        "quad": {"type": "array", "items": ref("Point"), "minItems": 4, "maxItems": 4,
                 "description": "the model image's corners in layer pixels: top-left, top-right, bottom-right, "
                                "bottom-left"}}),
        "description": "real layers aligned with 'align': the oriented quad the model sees (region is then its "
                       "bounding box on the layer, fit is null)"}),
    "invert_job": nullable({**STRING, "description": "real layers: the job that inverts the region"}),
    "ready": {**BOOLEAN, "description": "whether drags can start (false while the inversion runs)"},
    "state_id": nullable({**STRING, "description": "the state the session is in now: its initial state, the last "
                                                   "drag's or the one a reset went back to (null while inverting)"}),
    "initial_state_id": nullable({**STRING, "description": "the state after generate or inversion, kept as long as "
                                                           "the session (null while inverting)"}),
    "states": {"type": "array", "items": ref("SessionState"),
               "description": "the states kept for drags to start from (from_state), oldest first"},
    "bytes": {**INTEGER, "description": "the session's estimated memory as the session store counts it (states "
                                        "included)"},
}
STAGE_QUALITY = {"type": "object", "properties": {"psnr": NUMBER, "ssim": NUMBER, "steps": INTEGER,
                                                  "seconds": NUMBER, "stopped": BOOLEAN},
                 "required": ["psnr", "ssim", "steps", "seconds", "stopped"], "additionalProperties": False}


def _align_point(limits: Limits) -> Schema:
    """An alignment point: at most one image size beyond the image (the daemon checks it against the image)."""
    return {"type": "array", "minItems": 2, "maxItems": 2,
            "items": {"type": "number", "minimum": -limits.max_side, "maximum": 2 * limits.max_side}}


def _box_side(limits: Limits) -> Schema:
    return {"type": "number", "minimum": MIN_BOX_SIDE, "maximum": MAX_BOX_FACTOR * limits.max_side,
            "description": f"layer pixels; at most {MAX_BOX_FACTOR:g} times the image's longer side"}


def schemas(limits: Limits) -> dict[str, Schema]:
    point_list = {"type": "array", "items": ref("Point"), "minItems": 1, "maxItems": limits.max_points}
    return {
        "Point": POINT,
        "Error": closed({"error": closed({"code": STRING, "message": STRING})}),
        "Health": closed({"version": STRING, "api": {"const": "v1"},
                          "device": {**STRING, "description": "the devices, comma-separated ('cuda:0,cuda:1')"},
                          "node": nullable({**STRING, "description": "the daemon's name behind a load balancer "
                                                                     "(draggan serve --node): its ids start with it"}),
                          "models_loaded": {"type": "array", "items": STRING}, "queue_length": INTEGER,
                          "jobs_running": INTEGER, "sessions": INTEGER,
                          "devices": {"type": "array", "items": ref("DeviceHealth"), "minItems": 1,
                                      "description": "one per worker, in the order of --device; counts only"}}),
        "DeviceHealth": closed({
            "index": INTEGER, "device": STRING, "queue_length": INTEGER,
            "jobs_running": {"type": "integer", "minimum": 0, "maximum": 1},
            "queued_steps": {**INTEGER, "description": "optimisation steps ahead of a new job: the queued jobs' "
                                                       "budgets and what is left of the running one"},
            "sessions": INTEGER,
            "session_bytes": {**INTEGER, "description": "the session store's estimate of its sessions' memory"},
            "memory_allocated": nullable({**INTEGER, "description": "bytes of tensors on the GPU as torch counts "
                                                                    "them; null off CUDA"}),
            "models_loaded": {"type": "array", "items": STRING},
            "torch_threads": nullable({**INTEGER, "description": "the CPU threads the worker's torch runs on "
                                                                 "(several CPU workers share the cores out); null "
                                                                 "while the worker starts"}),
            "precision": {"type": "string", "enum": ["fp32", "bf16", "fp16"],
                          "description": "the drag steps' number type on this device for generators of 128 px and "
                                         "more: serve --precision, 'auto' resolved (bf16 on a CPU with native bf16, "
                                         "else fp32; smaller generators run fp32 under 'auto')"}}),
        "Model": closed({"name": STRING, "resolution": nullable(INTEGER), "width": nullable(INTEGER),
                         "height": nullable(INTEGER), "domain": STRING,
                         "licence": nullable(STRING), "learning_rate": NUMBER,
                         "framing": {"type": "string", "enum": list(FRAMINGS),
                                     "description": "how its training images were framed: 'ffhq' and 'demo' take "
                                                    "the four landmarks in a session's align, 'centre' a box"},
                         "loaded": BOOLEAN,
                         "downloaded": {**BOOLEAN, "description": "its file is in the models folder (or it is built "
                                                                  "in): it can be used now"},
                         "downloading": {**BOOLEAN, "description": "a download of it is queued or running"},
                         "downloadable": {**BOOLEAN, "description": "the catalogue gives a URL for it"},
                         "size": nullable({**INTEGER, "description": "bytes: of the file once downloaded, else as "
                                                                     "the catalogue says"}),
                         "note": STRING}),
        "ModelList": closed({"models": {"type": "array", "items": ref("Model")}}),
        "GenerateRequest": closed({
            "model": nullable({**STRING, "description": "a name from /models; default: demo"}),
            "seed": {"type": "integer", "minimum": 0, "maximum": 2 ** 32 - 1},
            "psi": nullable({"type": "number", "minimum": -1, "maximum": 2, "default": 0.7}),
        }, optional=("model", "psi")),
        "SessionState": closed({"state_id": STRING,
                                "job_id": nullable({**STRING, "description": "the drag that made it (null: the "
                                                                            "initial state)"}),
                                "created": NUMBER, "bytes": INTEGER}),
        "Session": closed(SESSION_FIELDS),
        "GeneratedSession": closed({**SESSION_FIELDS, "seed": INTEGER, "psi": NUMBER, "image": PNG_BASE64}),
        "CreateSessionRequest": closed({
            "image": {**PNG_BASE64, "description": "the layer: RGB or RGBA PNG at its own size, within the limits"},
            "from_session": nullable({**STRING, "description": "the session whose picture `image` shows (maybe "
                                                               "resized); without it the layer is inverted"}),
            "model": nullable({**STRING, "description": "real layers: a name from /models; default: demo"}),
            "region": nullable({**RECT_ARRAY, "description": "real layers: the part to edit, used as given"}),
            "selection_bbox": nullable({**RECT_ARRAY, "description": "real layers: the selection's bounds, grown "
                                                                     "by the margin (and towards the model's shape)"}),
            "margin": nullable({"type": "number", "minimum": 0, "maximum": 4, "default": 0.15,
                                "description": "fraction of the selection's longer side, at least 8 px"}),
            "invert": nullable(closed({
                "steps_w": nullable({"type": "integer", "minimum": 1, "maximum": limits.max_invert_steps}),
                "steps_wplus": nullable({"type": "integer", "minimum": 0, "maximum": limits.max_invert_steps,
                                         "description": "0 skips the W+ stage"}),
                "steps_pti": nullable({"type": "integer", "minimum": 0, "maximum": limits.max_invert_steps,
                                       "description": "0 skips pivotal tuning"}),
                "pti": nullable({**BOOLEAN, "default": True}),
                "preview_every": nullable({"type": "integer", "minimum": 0, "maximum": 10000, "default": 10}),
            }, optional=("steps_w", "steps_wplus", "steps_pti", "pti", "preview_every"))),
            "align": nullable({"oneOf": [
                closed({k: _align_point(limits) for k in LANDMARKS}),
                closed({"box": closed({
                    "center": _align_point(limits),
                    "width": _box_side(limits), "height": nullable(_box_side(limits)),
                    "angle": nullable({"type": "number", "minimum": -360, "maximum": 360, "default": 0,
                                       "description": "degrees, clockwise on screen"}),
                }, optional=("height", "angle"))}),
            ], "description": "real layers, instead of region / selection_bbox: frame the layer the way the model "
                              "was trained. The four landmarks ([x, y] layer pixels, left = on the image's left when "
                              "the face is upright) for models whose framing is 'ffhq' or 'demo', or an oriented box "
                              "(height default: the model's aspect) for any model; points must lie within one "
                              "image size of the image"}),
        }, optional=("from_session", "model", "region", "selection_bbox", "margin", "invert", "align")),
        "CreatedSession": closed({
            **SESSION_FIELDS,
            "reused": {**BOOLEAN, "description": "an existing session of the same layer, region, model and "
                                                 "inversion settings"},
            "job_id": nullable({**STRING, "description": "the invert job to wait for before dragging (null when "
                                                         "none runs)"}),
        }),
        "DragRequest": closed({
            "handles": point_list, "targets": point_list,
            "mask": nullable({**PNG_BASE64, "description": "grayscale, the image's size, white = editable"}),
            "steps": nullable({"type": "integer", "minimum": 1, "maximum": limits.max_steps,
                               "default": min(300, limits.max_steps)}),
            "preview_every": nullable({"type": "integer", "minimum": 0, "maximum": 10000, "default": 5}),
            "learning_rate": nullable({"type": "number", "minimum": 1e-6, "maximum": 1,
                                       "description": "default: the model's"}),
            "mask_lambda": nullable({"type": "number", "minimum": 0, "maximum": 1e4, "default": 20}),
            "w_layers": nullable({"type": "integer", "minimum": 1, "maximum": 64, "default": 6}),
            "r1": nullable({"type": "number", "minimum": 1, "maximum": 64, "description": "model pixels"}),
            "r2": nullable({"type": "integer", "minimum": 1, "maximum": 128, "description": "model pixels"}),
            "feather": nullable({"type": "integer", "minimum": 0, "maximum": 256, "default": 8,
                                 "description": "real layers: width in layer pixels of the blend inside the "
                                                "mask's edge"}),
            "from_state": nullable({**STRING, "description": "a state of the session to start from (a job's "
                                                             "state_id, or the session's initial_state_id); "
                                                             "default: the session's current state"}),
            "preset": nullable({"enum": list(PRESETS), "default": DEFAULT_PRESET,
                                "description": "named drag settings: 'paper' is DragGAN as published; 'quick' "
                                               "and 'studio' land more drags on the demo benchmark, studio at "
                                               "a higher cost per step (and a one-point drag first carries the "
                                               "part under it); 'move' first fits the picture warped by "
                                               "the points, to move a whole part (benchmarks/README.md); the "
                                               "fields above override the preset's"}),
        }, optional=("mask", "steps", "preview_every", "learning_rate", "mask_lambda", "w_layers", "r1", "r2",
                     "feather", "from_state", "preset")),
        "Job": closed({
            "job_id": STRING, "kind": {"enum": ["drag", "invert"]}, "session_id": STRING,
            "state": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
            "queue_position": nullable(INTEGER), "step": INTEGER, "max_steps": INTEGER,
            "handles": POINTS, "targets": POINTS, "loss": nullable(NUMBER), "distance": nullable(NUMBER),
            "eta_seconds": nullable(NUMBER), "elapsed_seconds": nullable(NUMBER),
            "reason": nullable({"enum": ["reached", "max_steps", "stalled", "stopped", "finished"]}),
            "error": nullable(closed({"code": STRING, "message": STRING})), "preview_step": nullable(INTEGER),
            "result": nullable(closed({
                "width": INTEGER, "height": INTEGER,
                "quality": {"type": "object", "additionalProperties": STAGE_QUALITY,
                            "propertyNames": {"enum": ["start", "w", "w+", "pti"]},
                            "description": "invert jobs: the reconstruction's PSNR (dB) and SSIM after each stage"},
            }, optional=("quality",))),
            "changed": nullable({**RECT, "description": "real layers: the pixels the composited result changed"}),
            "from_state": nullable({**STRING, "description": "drags: the state it started from (null: the "
                                                             "session's current state)"}),
            "preset": nullable({"enum": list(PRESETS), "description": "drags: the named settings it runs with"}),
            "state_id": nullable({**STRING, "description": "once done: the session state it made (a drag's "
                                                           "result; an inversion's initial state)"}),
            "inversion": nullable(closed({"stage": nullable({"enum": ["w", "w+", "pti"]}), "stage_step": INTEGER,
                                          "stage_steps": INTEGER, "psnr": nullable(NUMBER)})),
        }),
        "DownloadJob": closed({
            "job_id": STRING, "kind": {"const": "download"}, "model": STRING,
            "state": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
            "queue_position": nullable(INTEGER),
            "bytes_done": {**INTEGER, "description": "bytes of the file so far, including those resumed"},
            "bytes_total": nullable({**INTEGER, "description": "the file's size, once known"}),
            "resumed_from": nullable({**INTEGER, "description": "bytes kept from an earlier, interrupted "
                                                                "download (0: from the start); null until the "
                                                                "transfer starts"}),
            "eta_seconds": nullable(NUMBER), "elapsed_seconds": nullable(NUMBER),
            "error": nullable(closed({"code": STRING, "message": STRING})),
        }),
        "AnyJob": {"oneOf": [ref("Job"), ref("DownloadJob")]},
        "Deleted": closed({"deleted": {"const": True}, "session_id": STRING}),
    }


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


PNG_CONTENT = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
ERRORS = {
    "400": "invalid request: bad JSON, bad PNG, a value out of range, unknown model, points outside the image",
    "401": "missing or refused token", "403": "the Host header is not a loopback name (daemon without token)",
    "404": "unknown session, job or catalogue model, or nothing to show (yet)",
    "409": "the session, job or model is in the wrong state (e.g. the model is not downloaded)",
    "410": "state_gone: the session no longer keeps that state (the oldest are dropped); regenerate or "
           "re-invert the picture",
    "413": "the body is larger than the limit", "415": "the body is not JSON",
    "431": "the request line and headers are longer than the limit",
    "429": "the daemon is full (queue, your jobs, sessions that all have work, or waiting downloads); Retry-After "
           "says when to retry",
    "500": "the daemon failed (see its log)",
    "503": "out of GPU memory, busy or shutting down; Retry-After when trying again makes sense",
}


def operation(summary: str, ok: str, ok_response: dict, errors: tuple[str, ...], body: str | None = None) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: ok_response}}
    for status in ("401", "403", "431", *errors):  # the HTTP layer checks these before any route
        op["responses"][status] = _json("Error", ERRORS[status])
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    return op


def paths() -> dict[str, dict]:
    sid = {"name": "sid", "in": "path", "required": True, "schema": STRING}
    jid = {"name": "jid", "in": "path", "required": True, "schema": STRING}
    name = {"name": "name", "in": "path", "required": True, "schema": STRING,
            "description": "a model name from /models (a catalogue key, never a path)"}
    job = _json("Job", "the job's status")
    any_job = _json("AnyJob", "the job's status (a drag, invert or download job)")
    return {
        "/health": {"get": operation("daemon version, devices, loaded models and queues", "200",
                                     _json("Health", "status"), ())},
        "/models": {"get": operation("every model this daemon knows, downloaded or not, by name", "200",
                                     _json("ModelList", "the catalogue"), ())},
        "/models/{name}/download": {"parameters": [name], "post": operation(
            "start downloading a catalogue model into the models folder (a download job)", "202",
            _json("DownloadJob", "the download job"), ("404", "409", "429", "503"))},
        "/openapi.json": {"get": operation("this document", "200",
                                           {"description": "OpenAPI 3.1", "content": {"application/json": {}}}, ())},
        "/generate": {"post": operation("render a seed and open a session on it (its latent is known)", "201",
                                        _json("GeneratedSession", "the new session and its image"),
                                        ("400", "409", "413", "415", "429", "500", "503"), body="GenerateRequest")},
        "/sessions": {"post": operation("open a session on a layer: a copy of a session's picture, or a real "
                                        "image (inverted by an invert job; the same layer again reuses its "
                                        "session)", "201", _json("CreatedSession", "the session"),
                                        ("400", "404", "409", "413", "415", "429", "500", "503"),
                                        body="CreateSessionRequest")},
        "/sessions/{sid}": {
            "parameters": [sid],
            "get": operation("a session's size, model and points", "200", _json("Session", "the session"), ("404",)),
            "delete": operation("drop a session (cancels its job)", "200", _json("Deleted", "gone"), ("404",)),
        },
        "/sessions/{sid}/drag": {
            "parameters": [sid],
            "post": operation("start a drag job (on a real layer: once its inversion is done), from the "
                              "session's current state or from_state", "202", job,
                              ("400", "404", "409", "410", "413", "415", "429", "503"),
                              body="DragRequest"),
        },
        "/sessions/{sid}/reset": {
            "parameters": [sid],
            "post": operation("reset to original: the session's initial state (drags forgotten, handles "
                              "cleared, a real layer's inversion kept)", "200", _json("Session", "the session"),
                              ("400", "404", "409", "415")),
        },
        "/sessions/{sid}/image": {
            "parameters": [sid],
            "get": operation("the picture of the session's current state at the client's size (real layers: "
                             "the full layer, RGBA)", "200", {"description": "PNG", "content": PNG_CONTENT},
                             ("404", "409", "500", "503")),
        },
        "/jobs/{jid}": {"parameters": [jid], "get": operation("a job's progress", "200", any_job, ("404",))},
        "/jobs/{jid}/preview": {"parameters": [jid], "get": operation(
            "the latest preview at the client's size", "200", {"description": "PNG", "content": PNG_CONTENT},
            ("404",))},
        "/jobs/{jid}/result": {"parameters": [jid], "get": operation(
            "the result at the client's size, once done (real layers: the full layer, RGBA)", "200",
            {"description": "PNG", "content": PNG_CONTENT},
            ("404", "409"))},
        "/jobs/{jid}/stop": {"parameters": [jid], "post": operation(
            "end after the current step, keeping the edit (a queued job, or a download, is cancelled)", "200",
            any_job, ("404",))},
        "/jobs/{jid}/cancel": {"parameters": [jid], "post": operation(
            "end and restore the session to its state before the job (a download keeps its partial file for "
            "the next download to resume)", "200", any_job, ("404", "409"))},
    }


def document(limits: Limits) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "DragGAN daemon", "version": __version__,
                 "description": "Drag-based image editing for editor plug-ins. Errors are "
                                "{error: {code, message}}; messages are meant to be shown to users. "
                                "The HTTP layer may answer any request with 400 (malformed HTTP), 413 "
                                "(body over the limit) or 501 (a Transfer-Encoding other than chunked), "
                                "also in that form."},
        "servers": [{"url": "/api/v1"}],
        "security": [{}, {"bearer": []}],
        "paths": paths(),
        "components": {"schemas": schemas(limits),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "required when the daemon has a token"}}},
    }
