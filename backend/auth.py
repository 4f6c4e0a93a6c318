"""Who may talk to the daemon: the bearer token, and the Host check that keeps web pages out.

With a token, every request must carry it; it is compared in constant time. Without one the
daemon listens on loopback only, and then also refuses requests whose Host header names anything
but a loopback address: a web page cannot read answers from 127.0.0.1 directly (no CORS), but
through DNS rebinding it could, under a host name of its own, which this check stops.
"""
from __future__ import annotations

import hmac
import ipaddress

from .errors import ApiError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and 'localhost'; host names in general are not trusted to be local."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def check_request(token: str | None, authorization: str | None, host_header: str | None) -> None:
    """Raise 401/403 unless the request may proceed."""
    if token is None:
        if not is_loopback(host_name(host_header or "")):
            raise ApiError(403, "forbidden_host", "this daemon answers only requests addressed to a loopback host "
                                                  "(127.0.0.1, ::1 or localhost)")
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "this daemon needs a token: send 'Authorization: Bearer <token>' "
                                            "(the token was given to or printed by `draggan serve`)")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized", "the daemon refused the token")
