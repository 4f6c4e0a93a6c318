#!/usr/bin/env bash
# Set up .venv (idempotent) and run the main job on the embedded demo model: a drag that raises a
# cartoon cat's ear, written as out/demo/before.png, after.png, after_points.png and drag.gif
# (other drags: scripts/demo.sh --scenario left_ear_up | open_mouth | turn_head | move_head).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/draggan demo --out out/demo "$@"
