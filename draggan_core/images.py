"""Conversions between generator tensors ([-1, 1], NCHW) and 8-bit RGB images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] or [3, H, W] in [-1, 1] -> uint8 [H, W, 3], rounded as NVIDIA's tools do."""
    if img.ndim == 4:
        img = img[0]
    x = (img.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(img), "RGB")


def from_uint8(rgb: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-1, 1] (inverse of to_uint8 up to rounding)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device=device, dtype=torch.float32)
    return (t.permute(2, 0, 1).unsqueeze(0) - 127.5) / 127.5
