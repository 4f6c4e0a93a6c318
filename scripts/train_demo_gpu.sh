#!/bin/sh
# Issue 18 on a lent GPU in one call: train the demo model on from INIT for MINUTES of wall time, the
# world's targets rendered on the machine's other cores, and write under $OUT what comes back: the
# exported model (the EMA weights, enough to continue with --init-from: the model card measured
# nothing lost without the optimiser state), the training log, the device. The run's state.pt stays
# on the machine (four copies of the weights: over the 16 MiB a returned file may have).
#
#   run: scripts/train_demo_gpu.sh            (timeout_s 600 leaves MINUTES 7 the start-up and export)
#   here, to try it: DEVICE=cpu MINUTES=0.2 BATCH=4 OUT=/tmp/gpu_train scripts/train_demo_gpu.sh
#
# Settings (environment): MINUTES 7, DECAY_MINUTES 2 (the final learning-rate decay), BATCH 32,
# CHANNEL_BASE unset (INIT's own width; a larger one widens it), INIT the shipped model, WORKERS cores - 2,
# DEVICE cuda, PYTHON .venv/bin/python where there is one, else python3 (the device's own holds torch).
set -eu
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder the results go to}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
CORES=$(nproc)
WORKERS="${WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}"
mkdir -p "$OUT"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import torch, numpy, PIL, safetensors; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    echo "cores $CORES, render workers $WORKERS"
} > "$OUT/device.txt" 2>&1 || { cat "$OUT/device.txt"; exit 2; }
cat "$OUT/device.txt"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 "$PYTHON" -m draggan_core.demo.train \
    --device "${DEVICE:-cuda}" --workdir "${WORKDIR:-/tmp/demo_gpu_run}" \
    --init-from "${INIT:-draggan_core/demo/demo_model.safetensors}" ${CHANNEL_BASE:+--channel-base "$CHANNEL_BASE"} \
    --batch "${BATCH:-32}" --render-workers "$WORKERS" --iters 100000000 \
    --minutes "${MINUTES:-7}" --lr-decay-minutes "${DECAY_MINUTES:-2}" --save-every "${SAVE_EVERY:-2000}" \
    --export "$OUT/demo_model.safetensors" 2>&1 | tr '\r' '\n' | grep -v '^\[' | tee "$OUT/train.log"
test -s "$OUT/demo_model.safetensors" || { echo "training failed: no model exported" >&2; exit 1; }
