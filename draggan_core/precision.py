"""The number type of the drag loop's per-step synthesis: 'auto', 'fp32', 'bf16' or 'fp16'.

Why a choice: each drag step renders the generator up to the feature block and back-propagates
through it, and on CPUs with AVX-512 BF16 (or on GPUs in fp16) those convolutions run faster in
16 bits. The drag loop needs the features' nearest neighbours and a descent direction, not fp32
digits. Only the synthesis activations change type: tracking, the losses, Adam and the rendered
image stay fp32 (FeatureField casts the map up). StyleGAN3 generators keep their own fp32.

'auto' (the default) is bf16 for generators of AUTO_BF16_MIN_HEIGHT px and more on a CPU whose
instructions multiply bf16 natively (AVX-512 BF16, as AMD Zen 4 and later and recent Xeons have,
or AMX), fp32 everywhere else: 1.2-1.25x faster steps at 256 and 512 px on a 2-core Zen 4 (1.7-1.9x
before steps computed only a window of the features), with the demo benchmark's success and
content error unchanged (benchmarks/README.md, issue 19). Without native bf16 a CPU emulates it and
loses; on smaller generators a step is a few small convolutions whose casts cost what bf16 saves,
and a 64-px test model's 15-step drag moved half as far in bf16. CUDA stays fp32 under 'auto'
until benchmarks/gpu_check.sh has shown fp16 keeping the trajectory.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names of native bf16 arithmetic
AUTO_BF16_MIN_HEIGHT = 128  # 'auto' keeps fp32 for smaller generators (see above)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str) -> None:
    """Raise ValueError for a name outside PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux names them; empty where /proc/cpuinfo is not there (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve(precision: str, device: torch.device, height: int = AUTO_BF16_MIN_HEIGHT,
            flags: frozenset[str] | None = None) -> str:
    """The concrete precision ('fp32', 'bf16' or 'fp16') that `precision` means on `device` for a
    generator of `height` px.

    flags: the CPU's feature flags (default: this machine's, cpu_flags()).
    """
    check(precision)
    if precision != "auto":
        return precision
    native = NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags)
    return "bf16" if device.type == "cpu" and native and height >= AUTO_BF16_MIN_HEIGHT else "fp32"


def synthesis_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The synthesis blocks' activation type for this precision ('auto' resolved first) on this device.

    fp16 needs CUDA: PyTorch's CPU convolutions have no fast fp16 kernels (and some none at all).
    bf16 runs anywhere, but only CPUs with AVX-512 BF16 or AMX (and recent GPUs) make it faster.
    """
    precision = resolve(precision, device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device, not {device.type!r} (use 'bf16' on a CPU)")
    return _DTYPES[precision]
