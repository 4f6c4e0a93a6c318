"""The number type of the drag loop's per-step synthesis: 'fp32', 'bf16' or 'fp16'.

Why a choice: each drag step renders the generator up to the feature block and back-propagates
through it, and on CPUs with AVX-512 BF16 (or on GPUs in fp16) those convolutions run faster in
16 bits. The drag loop needs the features' nearest neighbours and a descent direction, not fp32
digits. Only the synthesis activations change type: tracking, the losses, Adam and the rendered
image stay fp32 (FeatureField casts the map up). StyleGAN3 generators keep their own fp32.
"""
from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str) -> None:
    """Raise ValueError for a name outside PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def synthesis_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The synthesis blocks' activation type for this precision on this device.

    fp16 needs CUDA: PyTorch's CPU convolutions have no fast fp16 kernels (and some none at all).
    bf16 runs anywhere, but only CPUs with AVX-512 BF16 or AMX (and recent GPUs) make it faster.
    """
    check(precision)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device, not {device.type!r} (use 'bf16' on a CPU)")
    return _DTYPES[precision]
