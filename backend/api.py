"""The v1 HTTP API: each route parses and validates its request, hands it to the session store,
a device's job queue or worker, or the downloads, and answers JSON (or PNG). See docs/api.md and openapi.py."""
from __future__ import annotations

import base64
import functools

from flask import Blueprint, Response, request

from draggan_core import __version__

from . import editing, openapi
from .daemon import Daemon, current
from .downloads import DOWNLOAD, DownloadJob, DownloadManager
from .errors import ApiError
from .jobs import CANCELLED, DONE, FAILED, Job, Worker
from .validation import check_fields, parse_drag, parse_generate, parse_json, parse_session

api = Blueprint("api_v1", __name__, url_prefix="/api/v1")


def json_body() -> dict:
    return parse_json(request.get_data(), request.content_type)


def png_response(data: bytes) -> Response:
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "no-store"
    return response


def runner_of(d: Daemon, job: Job | DownloadJob) -> Worker | DownloadManager:
    """What runs the job, and so answers for its queue position, stop and cancel: downloads run on their own
    threads, every other job on the worker of its session's device."""
    return d.downloads if job.kind == DOWNLOAD else d.lanes.of(job).worker


def status_of(job: Job | DownloadJob) -> dict:
    d = current()
    return job.describe(runner_of(d, job).queue_position(job))


@api.get("/health")
def health():
    """Counts only: ids are the capability to see and change a client's work, so none is handed out here."""
    d = current()
    devices = [lane.describe(d.sessions) for lane in d.lanes.all]
    return {"version": __version__, "api": "v1", "device": d.lanes.device_names(), "node": d.config.node,
            "models_loaded": list(d.lanes.loaded_models()),
            "queue_length": sum(one["queue_length"] for one in devices),
            "jobs_running": sum(one["jobs_running"] for one in devices), "sessions": len(d.sessions),
            "devices": devices}


@api.get("/models")
def models():
    """The whole catalogue, downloaded or not; a client's model menu shows those with downloaded: true."""
    d = current()
    return {"models": d.catalogue.describe(d.lanes.loaded_models(), d.downloads.active_names())}


@api.post("/models/<name>/download")
def download_model(name: str):
    """Start fetching a catalogue model into the models folder. `name` is only a key into the catalogue: the
    URL and the file come from its entry."""
    job = current().downloads.start(name, request.remote_addr or "")
    return status_of(job), 202


@api.get("/openapi.json")
def openapi_document():
    return openapi.document(current().config.limits)


@api.post("/generate")
def generate():
    """A new session, on the device with the least work."""
    d = current()
    req = parse_generate(json_body())
    with d.lanes.placing(d.sessions) as lane:
        session, png = lane.worker.call(functools.partial(editing.generate, lane, d.sessions, req),
                                        d.config.limits.call_timeout_s)
    return {**session.describe(), "seed": req.seed, "psi": req.psi, "image": base64.b64encode(png).decode()}, 201


@api.post("/sessions")
def create_session():
    """A session on a layer: a copy of a generated session (from_session, on that session's device), or a real
    image, which is inverted by an 'invert' job first on the device with the least work (or reuses the session
    of the same layer and settings)."""
    d = current()
    req = parse_session(json_body(), d.config.limits, d.decode_budget)
    if req.from_session is not None:
        source = d.sessions.get(req.from_session)
        session = d.lanes.of(source).worker.call(
            functools.partial(editing.session_like, d.sessions, source, req.image.convert("RGB")),
            d.config.limits.call_timeout_s)
        return {**session.describe(), "reused": False, "job_id": None}, 201
    with d.lanes.placing(d.sessions) as lane:
        session, job, reused = lane.worker.call(
            functools.partial(editing.start_inversion, lane, d.sessions, d.jobs, req, request.remote_addr or ""),
            d.config.limits.call_timeout_s)
    return {**session.describe(), "reused": reused, "job_id": job.id if job is not None else None}, 201


@api.get("/sessions/<sid>")
def get_session(sid: str):
    return current().sessions.get(sid).describe()


@api.delete("/sessions/<sid>")
def delete_session(sid: str):
    d = current()
    session = d.sessions.delete(sid)
    if session.active_job is not None:
        job = d.jobs.get(session.active_job)
        runner_of(d, job).stop(job, cancel=True)
    return {"deleted": True, "session_id": sid}


@api.post("/sessions/<sid>/drag")
def start_drag(sid: str):
    d = current()
    target = d.sessions.get(sid)
    req = parse_drag(json_body(), d.config.limits, target.mapping, d.decode_budget)
    if not target.ready:
        raise ApiError(409, "session_inverting",
                       f"session {sid} is still being inverted (job {target.invert_job}); wait until that job is "
                       f"done, or stop it to keep the best inversion so far, then drag")
    job_id = d.jobs.new_id()
    session, start = d.sessions.claim(sid, job_id, req.from_state)
    job = Job("drag", sid, req.steps,
              work=functools.partial(editing.run_drag, session, req, start, d.config.limits.max_states_per_session),
              on_end=lambda _job, _state: d.sessions.release(session), client=request.remote_addr or "",
              lane=session.lane, targets=req.targets, handles=req.handles, id=job_id, from_state=req.from_state,
              preset=req.preset)
    try:
        d.lanes.of(session).worker.submit(job)
    except ApiError:  # the queue is full: the session stays as it was
        d.sessions.release(session)
        raise
    d.jobs.add(job)
    return status_of(job), 202


@api.post("/sessions/<sid>/reset")
def reset_session(sid: str):
    """Reset to original: the session's initial state again (drags forgotten, handles cleared, a real
    layer's inversion kept); its other states stay for drags that start from them."""
    check_fields(json_body(), ())
    return current().sessions.reset(sid).describe()


@api.get("/sessions/<sid>/image")
def session_image(sid: str):
    """The picture of the session's current state (the last drag's result, or the original after a
    reset), at the client's size; real layers: the full layer."""
    d = current()
    session = d.sessions.get(sid)
    if not session.ready:
        raise ApiError(409, "session_inverting", f"session {sid} is still being inverted (job "
                                                 f"{session.invert_job}); it has no picture of its own yet")
    png = d.lanes.of(session).worker.call(functools.partial(editing.state_png, session), d.config.limits.call_timeout_s)
    return png_response(png)


@api.get("/jobs/<jid>")
def get_job(jid: str):
    return status_of(current().jobs.get(jid))


@api.get("/jobs/<jid>/preview")
def job_preview(jid: str):
    job = current().jobs.get(jid)
    if job.kind == DOWNLOAD:
        raise ApiError(404, "no_preview", f"job {jid} is a download: it has no preview")
    if job.preview_png is None:
        raise ApiError(404, "no_preview", f"job {jid} has no preview yet; the first comes after preview_every steps")
    return png_response(job.preview_png)


@api.get("/jobs/<jid>/result")
def job_result(jid: str):
    job = current().jobs.get(jid)
    if job.kind == DOWNLOAD:
        raise ApiError(404, "no_result", f"job {jid} is a download: it has no image; once done, its model is "
                                         f"listed as downloaded (GET /api/v1/models)")
    if job.state != DONE:
        detail = f": {job.error.message}" if job.error else ""
        raise ApiError(409, "not_done", f"job {jid} is {job.state}{detail}; a result exists once it is done")
    return png_response(job.result_png)


@api.post("/jobs/<jid>/stop")
def stop_job(jid: str):
    """Ends the job after its current step, keeping the edit so far (a queued job, or a download, is cancelled)."""
    d = current()
    job = d.jobs.get(jid)
    runner_of(d, job).stop(job, cancel=False)
    return status_of(job)


@api.post("/jobs/<jid>/cancel")
def cancel_job(jid: str):
    """Ends the job and puts its session back as it was before the job (a download keeps its partial file)."""
    d = current()
    job = d.jobs.get(jid)
    if not runner_of(d, job).stop(job, cancel=True) and job.state != CANCELLED:
        state = job.state if job.state in (DONE, FAILED) else "finishing"
        raise ApiError(409, "job_finished", f"job {jid} is already {state}; it can no longer be cancelled")
    return status_of(job)
