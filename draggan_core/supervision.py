"""An automatic soft fixed region for drags without a user mask.

Without a mask nothing holds the rest of the image, and the cheapest way for the optimiser to
move a small part (the lower lip) is often to move or scale everything (the whole head). This
region keeps the features far from every handle-to-target segment as they were: weight 0 within
`reach` of a segment, rising linearly to 1 at twice that. The reach grows with the drag's length,
so a long drag (turning or moving a head) frees a large area and a short one a small area.
"""
from __future__ import annotations

import torch

BASE_REACH = 12.0 / 128  # reach of a zero-length drag, as a fraction of the image height (12 px at 128 px)
LENGTH_FACTOR = 2.0  # the reach grows by this many times the longest drag


def segment_distance(xy: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distances [M, N] from points xy [M, 2] to the segments a[n] -> b[n] ([N, 2] each)."""
    ab = b - a
    t = ((xy[:, None] - a[None]) * ab[None]).sum(-1) / ab.square().sum(-1).clamp_min(1e-8)[None]
    closest = a[None] + t.clamp(0, 1)[..., None] * ab[None]
    return (xy[:, None] - closest).norm(dim=-1)


def auto_fixed_region(size: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft fixed weights [H, W] in [0, 1]: 0 near the drag, 1 far from it (see the module docstring)."""
    H, W = size
    reach = BASE_REACH * H + LENGTH_FACTOR * float((targets - handles).norm(dim=1).max())
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32, device=handles.device),
                            torch.arange(W, dtype=torch.float32, device=handles.device), indexing="ij")
    dist = segment_distance(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), handles, targets).amin(dim=1)
    return ((dist - reach) / reach).clamp(0, 1).reshape(H, W)
