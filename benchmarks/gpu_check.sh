#!/bin/sh
# The issue-19 GPU check in one call (see benchmarks/gpu_check.py): numerics fp16 vs fp32, drag ms/step
# at 256/512/1024 px (fp32, fp16, fp16 + CUDA graphs), inversion stages, and a daemon surviving an
# out-of-memory. Budget: 8 minutes (timeout 480 s); extra arguments go to the script (--device cpu ...).
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-.venv/bin/python}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
