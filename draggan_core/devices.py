"""Choosing torch devices: 'auto' prefers CUDA, then Apple MPS, then the CPU; a daemon may take a list, or 'all'."""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
ALL_GPUS = "all"  # pick_devices: every CUDA GPU torch sees


def pick_device(name: str = "auto") -> torch.device:
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)} or cuda:N)")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available to torch")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but Apple MPS is not available to torch")
    try:
        device = torch.device(name)
    except RuntimeError:  # a malformed index such as 'cuda:x'
        raise ValueError(f"unknown device {name!r} (cuda:N takes a GPU number)") from None
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but torch sees {torch.cuda.device_count()} CUDA GPU(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def pick_devices(spec: str = "auto") -> list[torch.device]:
    """The devices of a comma-separated list ('cuda:0,cuda:1'), each as pick_device takes it, or every CUDA GPU
    for 'all'. A device may be named twice (two workers sharing it: the tests run 'cpu,cpu')."""
    if spec.strip() == ALL_GPUS:
        if not torch.cuda.is_available():
            raise ValueError("device 'all' means every CUDA GPU, but no CUDA GPU is available to torch")
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    names = [name.strip() for name in spec.split(",")]
    if not all(names):
        raise ValueError(f"empty device name in {spec!r} (a comma-separated list such as cuda:0,cuda:1)")
    return [pick_device(name) for name in names]
