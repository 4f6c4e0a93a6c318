"""One error type for everything a client can be told, and the translation of unexpected failures.

Every refusal carries an HTTP status, a stable machine code and a message that says what to do,
so the plug-ins can show the message as it is. Failures inside jobs (CUDA out of memory, a bug)
are described the same way, so a failed job and a failed request read alike.
"""
from __future__ import annotations

import torch

from draggan_core.checkpoint import CheckpointError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after  # seconds, sent as Retry-After on 429/503: when trying again makes sense

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def busy(code: str, message: str, retry_after: int = 5, status: int = 429) -> ApiError:
    """A refusal because the daemon is full right now, not because the request is wrong: try again later."""
    return ApiError(status, code, f"{message}; try again in {retry_after} s", retry_after=retry_after)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request is larger than the daemon's limit of {limit} bytes")


def not_found(what: str, ident: str, node: str | None = None) -> ApiError:
    """404 for an id this daemon does not hold. Behind a load balancer (ids carry the node name of the daemon that
    made them) an id of another node means that daemon is down or was replaced: the message says so."""
    maker = ident.rsplit(".", 1)[0] if "." in ident else None
    if node is not None and maker is not None and maker != node:
        return ApiError(404, f"unknown_{what}", f"no {what} {short(ident)} on daemon {node!r}: daemon "
                                                f"{short(maker, 40)} made it, and it is down or out of the balancer, "
                                                f"so its sessions and jobs are gone")
    return ApiError(404, f"unknown_{what}", f"no {what} {short(ident)} on this daemon (finished and evicted, "
                                            f"deleted, or the daemon restarted)")


def short(value: object, limit: int = 80) -> str:
    """repr() of client-supplied text, cut so that a huge value cannot flood messages or logs."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def printable(text: str, limit: int | None = 200) -> str:
    """Client text for a log line or a message: cut at `limit` characters, so that it cannot flood them, and
    with control characters escaped (a newline in a URL would otherwise forge a log line)."""
    cut = limit is not None and len(text) > limit
    text = text[:limit] if cut else text
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return escaped + "..." if cut else escaped


def describe_failure(exc: BaseException, reference: str = "") -> ApiError:
    """The client-facing form of any exception raised while serving a request or running a job.

    Only ApiErrors (and the known failures below) speak to the client. Anything else is a bug or a
    broken environment: its type, text and traceback could show paths, reprs and internals, so the
    client gets only `reference` (what the daemon's log calls this failure, e.g. "request id 3f2a...",
    "job 8c1d...") and the caller logs the details under that name. A client mistake found deep
    inside (a ValueError from the core) must be raised as an ApiError where it is understood.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ApiError(503, "out_of_memory", "the GPU ran out of memory; try fewer points, a smaller model, "
                                              "or close other GPU programs")
    if isinstance(exc, CheckpointError):
        return ApiError(500, "model_load_failed", f"the model file could not be loaded: {exc}")
    named = f", {reference}" if reference else ""
    return ApiError(500, "internal", f"internal error{named}; see the daemon's log")
