"""`draggan serve`: the daemon's settings from the command line, the token rules, and waitress.

Loopback is the default. Listening on any other address exposes the GPU and the user's images
to the network, so it needs a token (given, or generated and printed once); a token may also be
used on loopback.
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
from pathlib import Path

import waitress
from waitress import wasyncore

from draggan_core import registry
from draggan_core.devices import DEVICE_CHOICES

from . import testgate
from .app import close_app, create_app
from .auth import is_loopback
from .config import DEFAULT_HOST, DEFAULT_PORT, DaemonConfig

TOKEN_ENV = "DRAGGAN_TOKEN"


class StartupError(Exception):
    pass


def check_token(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: anyone on the network could use the daemon."""
    if token is None and not is_loopback(host):
        raise StartupError(f"refusing to listen on {host} without a token: anyone who can reach it could use "
                           f"your GPU and see your images. Add --generate-token (or --token / ${TOKEN_ENV}), "
                           f"or listen on 127.0.0.1")
    if token is not None and len(token) < 16:
        raise StartupError("the token must be at least 16 characters long")


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; any other "
                                                        f"address needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free port")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--models", default=None, help="models folder (default: $DRAGGAN_MODELS or "
                                                  "~/.local/share/draggan/models)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"require 'Authorization: Bearer TOKEN' on every request (default: ${TOKEN_ENV})")
    p.add_argument("--generate-token", action="store_true", help="make a random token and print it once")


def config_from_args(args: argparse.Namespace) -> tuple[DaemonConfig, bool]:
    """The daemon's config, and whether its token was generated here (and so must be shown)."""
    token, generated = args.token or None, False
    if args.generate_token and token is None:
        token, generated = secrets.token_urlsafe(24), True
    check_token(args.host, token)
    if not 0 <= args.port <= 65535:
        raise StartupError(f"--port must be between 0 and 65535, got {args.port}")
    models = Path(args.models) if args.models else registry.models_dir()
    return DaemonConfig(host=args.host, port=args.port, device=args.device, models_dir=models, token=token,
                        test_gate=os.environ.get(testgate.ENV) == "1"), generated


class DaemonServer:
    """The app behind waitress, listening as soon as it is built (so port 0 is resolved at once)."""

    def __init__(self, config: DaemonConfig):
        self.config = config
        self.app = create_app(config)
        self._map: dict = {}
        try:
            self._server = waitress.create_server(
                self.app, map=self._map, host=config.host, port=config.port, threads=config.threads,
                max_request_body_size=2 * config.limits.max_body_bytes, ident="draggan")
        except BaseException:
            close_app(self.app)
            raise

    @property
    def port(self) -> int:
        return self._server.effective_port if hasattr(self._server, "effective_port") \
            else self._server.effective_listen[0][1]

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="draggan-http", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)
        close_app(self.app)


def cmd_serve(args: argparse.Namespace) -> int:
    config, generated = config_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DaemonServer(config)
    daemon = server.app.extensions["draggan"]
    print(f"draggan daemon listening on {server.url}/api/v1 (device {daemon.device}, models {config.models_dir})",
          flush=True)
    if generated:
        print(f"access token (shown once, keep it): {config.token}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("draggan daemon stopped", file=sys.stderr)
    finally:
        server.close()
    return 0
