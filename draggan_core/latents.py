"""The one latent file format: a .npy float32 array [1, num_ws, w_dim] (W+), loaded without pickle."""
from __future__ import annotations

import numpy as np
import torch


def save_latent(path: str, ws: torch.Tensor) -> None:
    np.save(path, ws.detach().cpu().numpy().astype(np.float32), allow_pickle=False)


def load_latent(path: str) -> torch.Tensor:
    arr = np.load(path, allow_pickle=False)
    if arr.dtype.kind != "f" or arr.ndim not in (2, 3):
        raise ValueError(f"{path}: a latent is a float array [1, num_ws, w_dim] or [1, w_dim]")
    return torch.from_numpy(arr.astype(np.float32))
