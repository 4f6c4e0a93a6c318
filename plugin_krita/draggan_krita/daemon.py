"""The blocking calls the worker thread makes, on top of the shared client module.

`draggan_client/` is the project's client-side package, copied unchanged into this package by
scripts/package_krita.py.
Functions here take and return plain data only (no libkis, no widgets), so they can run off the
GUI thread and be tested outside Krita.
"""
from . import imaging
from .draggan_client.client import DaemonClient, DaemonError


class Daemon(DaemonClient):
    """The shared client with the plug-in's timeouts."""

    def __init__(self, url, token=None):
        super(Daemon, self).__init__(url, token=token or None, timeout=15.0, work_timeout=600.0)


def check(client):
    """(health, models) or DaemonError."""
    return client.health(), client.models()


def generate(client, req):
    made = client.generate(seed=req["seed"], model=req.get("model") or None, psi=req.get("psi"))
    w, h, bgra = imaging.decode_png_bgra(made["image"])
    return {"session_id": made["session_id"], "width": w, "height": h, "bgra": bgra,
            "model": made.get("model") or req.get("model"), "seed": made.get("seed", req["seed"])}


def _session_gone(exc):
    return isinstance(exc, DaemonError) and exc.status == 404 and (
        exc.code == "unknown_session" or "session" in str(exc).lower())


def _drag(client, session_id, req):
    kwargs = dict(req)
    handles, targets = kwargs.pop("handles"), kwargs.pop("targets")
    mask_png = kwargs.pop("mask_png", None)
    return client.drag(session_id, handles, targets, mask_png=mask_png, **kwargs)


def start_drag(client, session_id, session_png, req, layer_session=False):
    """Start a drag job on the document's session. With session_png (the layer as PNG) a new session
    is made first from the document's session (the layer shows its picture at another size, e.g.
    after Image > Scale). layer_session: the session was made from a layer by inversion."""
    if session_png is not None:
        made = client.create_session(session_png, from_session=session_id)
        session_id = made["session_id"]
    try:
        job = _drag(client, session_id, req)
    except DaemonError as exc:
        if _session_gone(exc):
            again = ("Run again to invert the layer anew" if layer_session
                     else "Use 'New image from model' to start again")
            raise DaemonError("The daemon no longer has this picture's session (was it restarted?). %s. (%s)"
                              % (again, exc), status=404, code=exc.code)
        raise
    return {"phase": "drag", "job_id": job["job_id"], "session_id": session_id}


def start_layer(client, saved_session, layer_png, create, req):
    """Start editing a layer the daemon did not generate.

    saved_session: the document's saved layer session, when it fits this Run; it is dragged directly
    (and made anew if the daemon no longer has it). Otherwise the layer (layer_png(), PNG bytes) is
    sent with `create` (jobspec.layer_session_request): the daemon answers with its session for that
    picture, reused or new; while the session's inversion job runs the answer is
    {"phase": "invert", "invert_job", ...} and the caller drags once it is done, else the drag starts
    now ({"phase": "drag", "job_id", ...})."""
    if saved_session:
        try:
            started = _drag(client, saved_session, req)
            return {"phase": "drag", "job_id": started["job_id"], "session_id": saved_session, "reused": True,
                    "region": None, "sent_layer": False}
        except DaemonError as exc:
            if not (_session_gone(exc) or exc.code == "session_inverting"):
                raise
    made = client.create_session(layer_png(), **dict((k, v) for k, v in create.items() if v is not None))
    answer = {"session_id": made["session_id"], "reused": bool(made.get("reused")), "region": made.get("region"),
              "model": made.get("model"), "sent_layer": True}
    if made.get("job_id") and not made.get("ready", False):
        answer.update(phase="invert", invert_job=made["job_id"])
        return answer
    answer.update(start_drag(client, made["session_id"], None, req, layer_session=True))
    return answer


def poll(client, job_id, last_preview_step, width, height):
    """(job status, preview or None); preview = {"step", "bgra"} when a newer one exists."""
    status = client.job(job_id)
    preview = None
    step = status.get("preview_step")
    if step is not None and step != last_preview_step and status.get("state") in ("running", "queued"):
        png = client.preview(job_id)
        if png is not None:
            _w, _h, bgra = imaging.decode_png_bgra(png, width, height)
            preview = {"step": step, "bgra": bgra}
    return status, preview


def result(client, job_id, width, height):
    _w, _h, bgra = imaging.decode_png_bgra(client.result(job_id), width, height)
    return {"bgra": bgra}


def stop(client, job_id):
    return client.stop(job_id)


def cancel(client, job_id):
    """Cancel the job (a drag: its session goes back to before it; an inversion: the session is dropped)."""
    try:
        return client.cancel(job_id)
    except DaemonError as exc:
        if exc.code == "job_finished":
            return None
        raise


def describe_error(exc, url=""):
    """A message for the docker: the daemon's own words for DaemonError, a short text otherwise."""
    if isinstance(exc, DaemonError):
        text = str(exc)
    else:
        text = "Unexpected error: %s: %s" % (type(exc).__name__, exc)
    return text[:1].upper() + text[1:] if text else "Unknown error"
