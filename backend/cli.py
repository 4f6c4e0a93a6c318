"""The `draggan` console command: the core's commands plus `serve` for the daemon."""
from __future__ import annotations

import sys

from draggan_core import cli as core_cli


def main(argv: list[str] | None = None) -> int:
    return core_cli.run(core_cli.build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
