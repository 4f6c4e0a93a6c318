"""The HTTP layer under the app: waitress, extended so that slow or unauthorised clients cost little.

Plain waitress reads a whole request, body included, before the app can refuse it, keeps any
connection for two minutes however little its client sends, stops accepting at 100 connections
and writes its own errors as plain text. Here a request's headers are checked (token or loopback
Host, Content-Length) as soon as they are complete, before any body is read; headers and body
must arrive within deadlines; past the connection limits (ConnectionLimits) a new connection
closes the one idle longest; and every error waitress answers itself is the daemon's JSON error.
"""
from __future__ import annotations

import functools
import http
import json
import logging
import socket
import time
from typing import Callable

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import BadRequest, RequestEntityTooLarge, RequestHeaderFieldsTooLarge, ServerNotImplemented

from . import auth
from .config import DaemonConfig
from .errors import ApiError, printable, too_large

log = logging.getLogger("draggan.daemon")


def proxy_settings(trusted_proxy: str | None) -> dict:
    """Waitress's own handling of a load balancer: from `trusted_proxy`, the last X-Forwarded-For entry (the one
    the balancer added) becomes the request's remote address; every other proxy header, and X-Forwarded-For
    from anyone else, is dropped."""
    if trusted_proxy is None:
        return {}
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"}, "trusted_proxy_count": 1}


def listen(app, socket_map: dict, config: DaemonConfig, threads: int) -> list["DaemonHTTPServer"]:
    """Listening sockets on config.host (two for 'localhost': ::1 and 127.0.0.1), sharing `threads` request threads."""
    limits = config.connections
    adj = Adjustments(host=config.host, port=config.port, threads=threads, ident="draggan",
                      max_request_body_size=config.limits.max_body_bytes + 1,  # waitress refuses at >= (chunked)
                      max_request_header_size=limits.max_header_bytes,
                      connection_limit=2 * limits.max_connections,  # reached only while that many are answered
                      cleanup_interval=1,  # maintenance() every second: the deadlines are seconds
                      **proxy_settings(config.trusted_proxy))
    threads = ThreadedTaskDispatcher()
    threads.set_thread_count(adj.threads)
    servers: list[DaemonHTTPServer] = []
    try:
        for sockinfo in adj.listen:
            servers.append(DaemonHTTPServer(app, socket_map, adj, threads, sockinfo, config))
    except BaseException:
        threads.shutdown(timeout=1)
        wasyncore.close_all(socket_map)
        raise
    return servers


def check_headers(config: DaemonConfig, headers: dict[str, str], content_length: int) -> ApiError | None:
    """The refusal a request earns by its headers alone (no token, a foreign Host, a body over the limit)."""
    try:
        auth.check_request(config.token, headers.get("AUTHORIZATION"), headers.get("HOST"))
    except ApiError as refusal:
        return refusal
    if content_length > config.limits.max_body_bytes:
        return too_large(config.limits.max_body_bytes)
    return None


class CheckedRequest(HTTPRequestParser):
    """waitress's request parser, which checks the headers once they are complete, before any body is read.
    A refused request is complete at once, with the refusal as its error (answered by JsonErrorTask)."""

    headers_done_at: float | None = None  # time.time(), waitress's clock

    def __init__(self, adj: Adjustments, check: Callable[[dict[str, str], int], ApiError | None]):
        super().__init__(adj)
        self.check = check
        self.started = time.time()  # the parser is made when a request's first byte arrives

    def received(self, data: bytes) -> int:
        in_headers = not self.headers_finished
        consumed = super().received(data)
        if in_headers and self.headers_finished:
            self.headers_done_at = time.time()
            # Malformed headers are answered as they are; a Content-Length over waitress's limit is not: without
            # the token the answer must be 401, whatever the size.
            parsed = self.error is None or isinstance(self.error, RequestEntityTooLarge)
            refusal = self.check(self.headers, self.content_length) if parsed and not self.empty else None
            if refusal is not None:
                self.error, self.completed = refusal, True
                self.expect_continue = False  # no "100 Continue": the body is not wanted
        return consumed


class JsonErrorTask(ErrorTask):
    """Answers a request that never reaches the app (refused on its headers, or malformed, too large, or an
    exception outside the app) with the daemon's JSON error, then closes the connection."""

    def execute(self) -> None:
        error = as_api_error(self.request.error, self.channel.server.config)
        body = json.dumps(error.body()).encode()
        self.status = f"{error.status} {http.HTTPStatus(error.status).phrase}"
        self.response_headers.append(("Content-Type", "application/json"))
        if error.status == 401:
            self.response_headers.append(("WWW-Authenticate", "Bearer"))
        self.set_close_on_finish()
        self.channel.linger_on_close = True
        self.content_length = len(body)
        self.write(body)


def as_api_error(error: object, config: DaemonConfig) -> ApiError:
    """The daemon's form of waitress's own errors (waitress.utilities), which it would write as plain text."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, RequestEntityTooLarge):  # a chunked body past the limit
        return too_large(config.limits.max_body_bytes)
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return ApiError(431, "headers_too_large", f"the request line and headers are longer than the daemon's "
                                                  f"limit of {config.connections.max_header_bytes} bytes")
    if isinstance(error, BadRequest):
        return ApiError(400, "bad_request", f"malformed HTTP request: {printable(str(error.body))}")
    if isinstance(error, ServerNotImplemented):
        return ApiError(501, "not_implemented", "the only Transfer-Encoding the daemon accepts is chunked")
    return ApiError(500, "internal", "internal error while answering; see the daemon's log")


class DaemonChannel(HTTPChannel):
    """One client connection: its requests are checked on their headers, its errors are JSON, and it knows
    whether its client is too slow."""

    error_task_class = JsonErrorTask
    linger_on_close = False  # set by JsonErrorTask: the client may still be sending what was refused
    lingering_until: float | None = None  # time.time(), waitress's clock

    def __init__(self, server: "DaemonHTTPServer", sock, addr, adj: Adjustments, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.parser_class = functools.partial(CheckedRequest, check=server.check_headers)

    def handle_close(self) -> None:
        """After an error answer the client may still be sending (a refused body). Closing now would make the
        kernel reset the connection, which can destroy the answer before the client reads it; so the sending
        side is shut and what arrives is dropped until the client closes or ConnectionLimits.linger_s passes."""
        if not (self.linger_on_close and self.connected):
            super().handle_close()
            return
        self.linger_on_close, self.will_close = False, False
        self.lingering_until = time.time() + self.server.config.connections.linger_s
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            super().handle_close()

    def close_soon(self) -> None:
        """Close at this connection's next write event, as waitress's own maintenance does.

        Not at once: the server's checks run while the event loop is still going through one poll's
        results, and closing here frees the descriptor while a result for its number may still be pending;
        a connection accepted in that pass gets the number and would be closed in its place, its client
        reset before any answer (seen after slow clients were closed: a refused request's 401 never came)."""
        self.lingering_until = None
        self.linger_on_close = False
        self.will_close = True

    def readable(self) -> bool:
        return self.lingering_until is not None or super().readable()

    def writable(self) -> bool:
        return self.lingering_until is None and super().writable()

    def handle_read(self) -> None:
        if self.lingering_until is None:
            super().handle_read()
        else:
            self.recv(self.adj.recv_bytes)  # dropped; recv() closes the channel at the client's end of stream

    def idle(self) -> bool:
        """Waiting for its client (for a request, or the rest of one), not for the daemon."""
        return not (self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed)

    def overdue(self, now: float) -> str | None:
        """Why the client has taken too long to send its request, or None."""
        if self.lingering_until is not None:
            return "done lingering" if now > self.lingering_until else None
        if not self.idle():
            return None
        limits = self.server.config.connections
        request = self.request
        if request is None:
            late = now - self.last_activity > limits.header_timeout_s
            return f"idle for {limits.header_timeout_s:g} s" if late else None
        if request.headers_done_at is None:
            late = now - request.started > limits.header_timeout_s
            return f"headers not complete within {limits.header_timeout_s:g} s" if late else None
        rate_time = now - request.headers_done_at - limits.body_grace_s
        if request.body_bytes_received < limits.min_body_bytes_per_s * rate_time:
            return f"body slower than {limits.min_body_bytes_per_s} bytes/s"
        return None


class DaemonHTTPServer(TcpWSGIServer):
    """One listening socket: makes room for each new connection and closes those whose client is too slow."""

    channel_class = DaemonChannel

    def __init__(self, app, socket_map: dict, adj: Adjustments, threads: ThreadedTaskDispatcher, sockinfo,
                 config: DaemonConfig):
        self.config = config
        super().__init__(app, socket_map, dispatcher=threads, adj=adj, sockinfo=sockinfo)

    def check_headers(self, headers: dict[str, str], content_length: int) -> ApiError | None:
        return check_headers(self.config, headers, content_length)

    def handle_accept(self) -> None:
        super().handle_accept()
        self.make_room()

    def make_room(self) -> None:
        """Close idle connections beyond the limits per client and in all, those idle longest first. A new
        connection has just been active, so it is closed only when all the others are being answered."""
        limits = self.config.connections
        open_channels = [channel for channel in self.active_channels.values() if not channel.will_close]
        by_client: dict[str, list[DaemonChannel]] = {}
        for channel in open_channels:
            by_client.setdefault(channel.addr[0], []).append(channel)
        for channels in by_client.values():
            close_idle(channels, len(channels) - limits.max_connections_per_client)
        open_channels = [channel for channel in open_channels if not channel.will_close]
        close_idle(open_channels, len(open_channels) - limits.max_connections)

    def maintenance(self, now: float) -> None:
        """Every second: close connections whose client is too slow. This replaces waitress's own idle timeout
        (channel_timeout), which lets a client hold a connection for two minutes by sending a byte now and then."""
        for channel in list(self.active_channels.values()):
            reason = channel.overdue(now)
            if reason is not None:
                log.debug("closing a connection from %s: %s", channel.addr[0], reason)
                channel.close_soon()

    def stop_accepting(self) -> None:
        """Close the listening socket (new connections are refused) but keep the wake-up pipe, which the
        answers still in flight need."""
        wasyncore.dispatcher.close(self)

    def answering(self) -> bool:
        """Whether any request is being answered (or an answer is still being sent)."""
        return any(not channel.idle() for channel in self.active_channels.values())


def close_idle(channels: list[DaemonChannel], excess: int) -> None:
    if excess > 0:
        idle = sorted((channel for channel in channels if channel.idle()), key=lambda channel: channel.last_activity)
        for channel in idle[:excess]:
            channel.close_soon()
