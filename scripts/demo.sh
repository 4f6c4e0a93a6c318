#!/usr/bin/env bash
# Set up .venv (idempotent) and run the main job on the embedded demo model: a drag that raises a
# cartoon cat's ear, written as out/demo/before.png, after.png, after_points.png and drag.gif.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/draggan demo --out out/demo "$@"
