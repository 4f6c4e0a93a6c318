#!/usr/bin/env bash
# Set up .venv (idempotent) and run the main job on the embedded demo model; results go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
mkdir -p out/demo
# Until the trained demo model ships, the demo renders from a small generator created here.
.venv/bin/python - <<'PY'
import torch
from draggan_core.stylegan2 import Generator, GeneratorConfig
from draggan_core.formats import native
torch.manual_seed(0)
native.write(Generator(GeneratorConfig(z_dim=64, w_dim=64, img_resolution=128, channel_base=2048, channel_max=128)),
             "out/demo/tiny.safetensors")
PY
.venv/bin/draggan generate --model out/demo/tiny.safetensors --seed 1 --out out/demo/seed1.png
