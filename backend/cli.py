"""The `draggan` console command: the core's commands plus `serve` for the daemon.

The core's parser is extended here, not in the core, so the core never depends on the daemon.
"""
from __future__ import annotations

import argparse
import sys

from draggan_core import cli as core_cli

from .server import StartupError, add_serve_args, cmd_serve


def add_serve_command(commands) -> None:
    p = commands.add_parser("serve", help="run the local daemon the editor plug-ins talk to")
    add_serve_args(p)
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    return core_cli.build_parser(add_serve_command)


def main(argv: list[str] | None = None) -> int:
    return core_cli.run(build_parser(), argv, expected=core_cli.EXPECTED_ERRORS + (StartupError,))


if __name__ == "__main__":
    sys.exit(main())
