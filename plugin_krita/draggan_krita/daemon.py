"""The blocking calls the worker thread makes, on top of the shared client module.

`draggan_client/` is the project's client-side package, copied unchanged into this package by
scripts/package_krita.py.
Functions here take and return plain data only (no libkis, no widgets), so they can run off the
GUI thread and be tested outside Krita.
"""
from . import imaging
from .draggan_client import workflow
from .draggan_client.client import DaemonClient, DaemonError


class Daemon(DaemonClient):
    """The shared client with the plug-in's timeouts."""

    def __init__(self, url, token=None):
        super(Daemon, self).__init__(url, token=token or None, timeout=15.0, work_timeout=600.0)


def check(client):
    """(health, catalogue: every model the daemon knows, downloaded or not) or DaemonError."""
    return client.health(), client.catalogue()


def catalogue(client):
    return client.catalogue()


def download(client, name):
    """Start downloading a catalogue model; the download job (its job_id is polled with job_status)."""
    return client.download_model(name)


def job_status(client, job_id):
    return client.job(job_id)


def generate(client, req):
    made = client.generate(seed=req["seed"], model=req.get("model") or None, psi=req.get("psi"))
    w, h, bgra = imaging.decode_png_bgra(made["image"])
    return {"session_id": made["session_id"], "width": w, "height": h, "bgra": bgra,
            "model": made.get("model") or req.get("model"), "seed": made.get("seed", req["seed"]),
            "initial_state_id": made.get("initial_state_id")}


def finish(client, started, final, record, edit):
    """(the workflow's Finished, the result as BGRA)."""
    done = workflow.finish(client, started, final, record, edit)
    _w, _h, bgra = imaging.decode_png_bgra(done.png, edit.width, edit.height)
    return done, bgra


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
    """A message for the docker: the daemon's or the workflow's own words, a short text otherwise."""
    if isinstance(exc, (DaemonError, workflow.WorkflowError)):
        text = str(exc)
    else:
        text = "Unexpected error: %s: %s" % (type(exc).__name__, exc)
    return text[:1].upper() + text[1:] if text else "Unknown error"
