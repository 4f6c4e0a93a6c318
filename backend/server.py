"""`draggan serve`: the daemon's settings from the command line, the token rules, and its life.

Loopback is the default. Listening on any other address exposes the GPU and the user's images
to the network, so it needs a token (given, or generated and printed once); a token may also be
used on loopback. SIGTERM or SIGINT winds the daemon down: it stops accepting, stops the running
job at its next step, answers the requests in flight and exits 0. With --exit-on-stdin-close the end
of its standard input does the same: an editor that started the daemon holds the other end, so the
daemon ends with the editor even when the editor is killed (draggan_client/launcher.py). With
--exit-with-process PID it does the same once that process is gone (GIMP's plug-ins are short-lived
processes, so GIMP's daemon is tied to GIMP's own process instead).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path

from waitress import wasyncore

from draggan_core import registry
from draggan_core.devices import ALL_GPUS, DEVICE_CHOICES, pick_devices
from draggan_core.precision import PRECISIONS, synthesis_dtype

from . import testgate
from .app import close_app, create_app
from .auth import is_loopback
from .config import DEFAULT_HOST, DEFAULT_PORT, DaemonConfig
from .errors import printable
from .httpserver import listen

TOKEN_ENV = "DRAGGAN_TOKEN"
MIN_TOKEN_LENGTH = 16
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOOP_TIMEOUT_S = 1.0  # the longest the event loop sleeps without looking at its stop flag (signals wake it at once)
NODE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # an HAProxy server name without '.', which ends it in an id


class StartupError(Exception):
    pass


def check_token(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: anyone on the network could use the daemon."""
    if token is None and not is_loopback(host):
        raise StartupError(f"refusing to listen on {host} without a token: anyone who can reach it could use "
                           f"your GPU and see your images. Add --generate-token (or --token / ${TOKEN_ENV}), "
                           f"or listen on 127.0.0.1")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise StartupError(f"the token must be at least {MIN_TOKEN_LENGTH} characters long")


def read_token_file(path: str) -> str:
    """The token in `path`, read once, without surrounding white space (a trailing newline is usual)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise StartupError(f"cannot read the token file {path}: {e}") from e
    if len(token) < MIN_TOKEN_LENGTH:
        raise StartupError(f"the token file {path} must hold a token of at least {MIN_TOKEN_LENGTH} characters")
    return token


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; any other "
                                                        f"address needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free port")
    p.add_argument("--device", default="auto",
                   help=f"{', '.join(DEVICE_CHOICES)} or cuda:N; a comma-separated list runs one worker per device "
                        f"(cuda:0,cuda:1), '{ALL_GPUS}' one per CUDA GPU (default auto: one device)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the drag steps' number type (default auto: bf16 on a CPU with AVX-512 BF16 or AMX, 1.5-1.9x "
                        "faster there, else fp32; fp16 needs CUDA; benchmarks/README.md)")
    p.add_argument("--node", default=None, metavar="NAME",
                   help="this daemon's name behind a load balancer (its server name in deploy/haproxy.cfg): session "
                        "and job ids then start with 'NAME.', which is how the balancer routes them (docs/studio.md)")
    p.add_argument("--models", default=None, help="models folder (default: $DRAGGAN_MODELS or "
                                                  "~/.local/share/draggan/models)")
    p.add_argument("--catalogue", default=None, metavar="FILE",
                   help="a JSON list of your own checkpoints by URL, added to the built-in ones (format: docs/api.md)")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                       help=f"require 'Authorization: Bearer TOKEN' on every request (default: ${TOKEN_ENV}). "
                            f"Other users of this machine can see a token given here in `ps`: prefer "
                            f"${TOKEN_ENV} or --token-file")
    given.add_argument("--token-file", default=None, metavar="PATH",
                       help="read the token from this file (read once at start; surrounding white space ignored)")
    p.add_argument("--generate-token", action="store_true", help="make a random token and print it once")
    p.add_argument("--trusted-proxy", default=None, metavar="ADDR",
                   help="the load balancer's IP address: requests from it count as from the client its "
                        "X-Forwarded-For names, for the per-client bounds and the log (docs/studio.md)")
    p.add_argument("--exit-on-stdin-close", action="store_true",
                   help="wind down as on SIGTERM when standard input reaches its end (for a daemon that an "
                        "editor started and must not outlive it)")
    p.add_argument("--exit-with-process", type=int, default=None, metavar="PID",
                   help="wind down as on SIGTERM once the process PID is gone (an editor whose plug-in that "
                        "started the daemon does not live as long as the editor)")


def config_from_args(args: argparse.Namespace) -> tuple[DaemonConfig, bool]:
    """The daemon's config, and whether its token was generated here (and so must be shown)."""
    token = read_token_file(args.token_file) if args.token_file else args.token or None
    generated = False
    if args.generate_token and token is None:
        token, generated = secrets.token_urlsafe(24), True
    check_token(args.host, token)
    if not 0 <= args.port <= 65535:
        raise StartupError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        for device in pick_devices(args.device):  # refused here, before anything starts; Daemon.start picks them
            synthesis_dtype(args.precision, device)  # fp16 on a CPU
    except ValueError as e:
        raise StartupError(str(e)) from None
    if args.node is not None and not NODE_NAME.fullmatch(args.node):
        raise StartupError(f"--node must be 1 to 32 letters, digits, '-' or '_' (an HAProxy server name), got "
                           f"{printable(args.node, 40)!r}")
    try:
        proxy = str(ipaddress.ip_address(args.trusted_proxy)) if args.trusted_proxy else None  # as waitress sees peers
    except ValueError:
        raise StartupError(f"--trusted-proxy takes an IP address, got {printable(args.trusted_proxy, 80)!r}") from None
    if args.exit_with_process is not None and args.exit_with_process <= 0:
        raise StartupError(f"--exit-with-process needs a process id above 0, got {args.exit_with_process}")
    models = Path(args.models) if args.models else registry.models_dir()
    return DaemonConfig(host=args.host, port=args.port, device=args.device, node=args.node, precision=args.precision,
                        models_dir=models,
                        catalogue=Path(args.catalogue) if args.catalogue else None, token=token,
                        trusted_proxy=proxy, test_gate=os.environ.get(testgate.ENV) == "1"), generated


class DaemonServer:
    """The app behind waitress (backend/httpserver.py), listening as soon as it is built (so port 0 is
    resolved at once), serving until stop()."""

    def __init__(self, config: DaemonConfig):
        self.config = config
        self.app = create_app(config)
        self._map: dict = {}
        self._stop = threading.Event()
        self.stop_reason = ""
        self._thread: threading.Thread | None = None
        self._app_closer: threading.Thread | None = None
        try:
            devices = len(self.app.extensions["draggan"].lanes.all)
            self._listeners = listen(self.app, self._map, config, config.request_threads(devices))
        except BaseException:
            close_app(self.app)
            raise

    @property
    def port(self) -> int:
        return int(self._listeners[0].effective_port)

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until stop(), then wind down and close everything."""
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=LOOP_TIMEOUT_S, map=self._map, use_poll=True, count=1)
            self._wind_down()
        finally:
            self._close()

    def stop(self, reason: str = "stopped") -> None:
        """Ask serve_forever to wind down; safe from any thread and from a signal handler."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()
        self._listeners[0].pull_trigger()  # wake the event loop now

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="draggan-http", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        """Stop and wait until everything is closed (the server's own thread does it when one serves)."""
        self.stop()
        if self._thread is not None:
            self._thread.join()
        else:
            self._close()

    def _wind_down(self) -> None:
        """Refuse new connections, stop the running job at its next step (closing the app closes the worker)
        and go on answering requests in flight, for at most ConnectionLimits.shutdown_grace_s."""
        for listener in self._listeners:
            listener.stop_accepting()
        self._app_closer = threading.Thread(target=close_app, args=(self.app,), name="draggan-close", daemon=True)
        self._app_closer.start()
        deadline = time.monotonic() + self.config.connections.shutdown_grace_s
        while self._app_closer.is_alive() or any(listener.answering() for listener in self._listeners):
            if time.monotonic() > deadline:
                break
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)

    def _close(self) -> None:
        self._listeners[0].task_dispatcher.shutdown(timeout=1)
        wasyncore.close_all(self._map)
        if self._app_closer is None:
            close_app(self.app)


class OneLineFormatter(logging.Formatter):
    """Log messages with control characters escaped: they quote client text (paths, names), which must not
    be able to forge a log line. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record), limit=None)


def stop_on_signals(server: DaemonServer) -> None:
    """SIGTERM and SIGINT wind the daemon down; a second one ends it at once."""
    def handle(signum: int, frame) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        server.stop(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)


def stop_when_stdin_closes(server: DaemonServer) -> None:
    """Wind the daemon down, as SIGTERM does, once standard input reaches its end. The editor that started it
    holds the other end of the pipe, and the system closes it however the editor ends, killed included."""
    def watch() -> None:
        try:
            while os.read(0, 65536):  # what is written is ignored: only the end matters
                pass
        except OSError:  # no standard input to read is as good as a closed one
            pass
        server.stop("stdin closed")

    threading.Thread(target=watch, name="draggan-stdin", daemon=True).start()


PROCESS_POLL_S = 1.0  # how often --exit-with-process looks for its process: the editor has just quit


def stop_when_process_ends(server: DaemonServer, pid: int) -> None:
    """Wind the daemon down, as SIGTERM does, once process `pid` is gone (or is a zombie, ended but not
    yet reaped by its parent)."""
    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
        except (OSError, IndexError):
            return True  # no /proc (not Linux): os.kill's answer stands

    def watch() -> None:
        while alive():
            time.sleep(PROCESS_POLL_S)
        server.stop(f"process {pid} ended")

    threading.Thread(target=watch, name="draggan-watch-process", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    config, generated = config_from_args(args)
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    server = DaemonServer(config)
    daemon = server.app.extensions["draggan"]
    node = f", node {config.node}" if config.node else ""
    print(f"draggan daemon listening on {server.url}/api/v1 (device {daemon.lanes.device_names()}{node}, models "
          f"{config.models_dir})", flush=True)
    if generated:
        print(f"access token (shown once, keep it): {config.token}", flush=True)
    stop_on_signals(server)
    if args.exit_on_stdin_close:
        stop_when_stdin_closes(server)
    if args.exit_with_process is not None:
        stop_when_process_ends(server, args.exit_with_process)
    server.serve_forever()
    print(f"draggan daemon stopped ({server.stop_reason})", flush=True)
    return 0
