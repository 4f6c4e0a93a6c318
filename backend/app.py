"""The Flask application factory: one app, one Daemon state object, the v1 API blueprint.

All state (models, sessions, jobs, the worker thread) hangs off app.extensions["draggan"], so
several apps can live in one process (as the tests do) and nothing is shared through globals.
"""
from __future__ import annotations

import logging
import secrets
import time

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import auth, daemon, testgate
from .api import api
from .config import DaemonConfig
from .errors import ApiError, describe_failure, printable, too_large

log = logging.getLogger("draggan.daemon")


def create_app(config: DaemonConfig) -> Flask:
    """The daemon's WSGI app; its worker thread starts now and stops with close_app()."""
    app = Flask(__name__, static_folder=None)  # no static route: the daemon serves the API only
    app.config["MAX_CONTENT_LENGTH"] = config.limits.max_body_bytes
    app.json.sort_keys = False
    app.extensions["draggan"] = daemon.Daemon.start(config)
    app.register_blueprint(api)
    if app.extensions["draggan"].gate is not None:
        app.register_blueprint(testgate.gate_blueprint(app.extensions["draggan"].gate))
    app.before_request(_before)
    app.after_request(_log_request)
    app.teardown_request(_release_decode_budget)
    app.register_error_handler(Exception, _error_response)
    return app


def close_app(app: Flask) -> None:
    app.extensions["draggan"].close()


def _release_decode_budget(_exc: BaseException | None) -> None:
    """A request's decoded images die with it, and so does its share of the decode budget."""
    daemon.current().decode_budget.release_request()


def _before() -> None:
    """Authenticate first, so that without the token no path, body or error says anything. Under `draggan serve`
    the HTTP layer has already checked this before reading the body (backend/httpserver.py); checking here too
    keeps the app safe under any WSGI server."""
    g.started = time.perf_counter()
    auth.check_request(daemon.current().config.token, request.headers.get("Authorization"), request.host)


def _log_request(response: Response) -> Response:
    elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    log.info("%s %s %s %d %.1f ms", request.remote_addr, printable(request.method), printable(request.path),
             response.status_code, elapsed)
    return response


def _error_response(exc: Exception) -> tuple[Response, int]:
    """Every error, expected or not, as {"error": {"code", "message"}} with the right status."""
    if isinstance(exc, HTTPException):
        error = ApiError(exc.code or 500, _http_code(exc), _http_message(exc))
    elif isinstance(exc, ApiError):
        error = exc
    else:  # a failure no one foresaw: its details go to the log only, under an id the client is told
        reference = f"request id {secrets.token_hex(6)}"
        error = describe_failure(exc, reference)
        log.error("%s failed: %s %s", reference, printable(request.method), printable(request.path), exc_info=exc)
    response = jsonify(error.body())
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response, error.status


def _http_code(exc: HTTPException) -> str:
    return {404: "no_such_endpoint", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.code, (exc.name or "error").lower().replace(" ", "_"))


def _http_message(exc: HTTPException) -> str:
    if exc.code == 413:
        return too_large(request.max_content_length).message
    if exc.code == 404:
        return f"no endpoint {printable(request.path, 100)}; the API lives under /api/v1 (see /api/v1/openapi.json)"
    if exc.code == 405:
        return f"{request.method} is not allowed on {printable(request.path, 100)}"
    return exc.description or exc.name
