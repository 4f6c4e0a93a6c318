"""The blocking calls the worker thread makes, on top of the shared client module.

`client.py` is backend/client.py, copied unchanged into this package by scripts/package_krita.py.
Functions here take and return plain data only (no libkis, no widgets), so they can run off the
GUI thread and be tested outside Krita.
"""
from . import imaging
from .client import DaemonClient, DaemonError


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


def start_drag(client, session_id, session_png, req):
    """Start a drag job on the document's session. With session_png (the layer as PNG) a new session
    is made first: from the document's session when there is one (the layer shows its picture at
    another size, e.g. after Image > Scale), else from the picture alone (needs GAN inversion)."""
    if session_png is not None:
        made = client.create_session(session_png, from_session=session_id)
        session_id = made["session_id"]
    kwargs = dict(req)
    handles, targets = kwargs.pop("handles"), kwargs.pop("targets")
    mask_png = kwargs.pop("mask_png", None)
    try:
        job = client.drag(session_id, handles, targets, mask_png=mask_png, **kwargs)
    except DaemonError as exc:
        if exc.status == 404 and "session" in str(exc).lower():
            raise DaemonError("The daemon no longer has this picture's session (was it restarted?). Use "
                              "'New image from model' to start again. (%s)" % exc, status=404, code=exc.code)
        raise
    return {"job_id": job["job_id"], "session_id": session_id}


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


def describe_error(exc, url=""):
    """A message for the docker: the daemon's own words for DaemonError, a short text otherwise."""
    if isinstance(exc, DaemonError):
        text = str(exc)
    else:
        text = "Unexpected error: %s: %s" % (type(exc).__name__, exc)
    return text[:1].upper() + text[1:] if text else "Unknown error"
