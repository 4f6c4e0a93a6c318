"""Motion supervision beyond the published disk: an automatic fixed region and a pull on a coarser block.

auto_fixed_region: without a mask nothing holds the rest of the image, and the cheapest way for
the optimiser to move a small part (the lower lip) is often to move or scale everything (the
whole head). This region keeps the features far from every handle-to-target segment as they were:
weight 0 within `reach` of a segment, rising linearly to 1 at twice that. The reach is a multiple
of the drag's length (at least a floor), so a long drag (turning or moving a head) frees a large
area and a short one (opening a mouth) a small one: the published-style 12 px + 2 x length freed
26 px around an open mouth's 7-px drag, and the chin's outline, the whiskers and an eye moved with
the lip (paired MSE worse than no edit); 3 x length frees 21 px and keeps the 48 px a head turn
needs (benchmarks/README.md, issue 17, ninth round). Points held in place (handle = target) free
nothing: they ask for their place to stay, and the zero-length segment of a held nose next to a
mouth freed the face around it.

Coarse pull (coarse_offsets, coarse_weight): the published loss pulls a disk of r1 pixels (2 px
at 128 px) on the 128-px block, and one point cannot say whether it means the face or the head:
on the demo model a "move the head" drag on the head centre moves the face inside the head, like
a turn, while the silhouette stays. A coarser block's features describe the layout (where the
head is), so the same pull on a coarser block, over a disk of r1 of *that block's* cells (16 px
at the 16-px block of a 128-px model), asks the part around the handle to move as a whole.
drag.DragSession adds it to the published loss (DragConfig.coarse_motion); these are its pieces.
"""
from __future__ import annotations

import torch

from .feature_layers import feature_scale

REACH_FLOOR = 12.0 / 128  # the least reach, as a fraction of the image height (12 px at 128 px)
LENGTH_FACTOR = 3.0  # the reach is this many times the longest drag, where that is more than the floor


def segment_distance(xy: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distances [M, N] from points xy [M, 2] to the segments a[n] -> b[n] ([N, 2] each)."""
    ab = b - a
    t = ((xy[:, None] - a[None]) * ab[None]).sum(-1) / ab.square().sum(-1).clamp_min(1e-8)[None]
    closest = a[None] + t.clamp(0, 1)[..., None] * ab[None]
    return (xy[:, None] - closest).norm(dim=-1)


def auto_fixed_region(size: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft fixed weights [H, W] in [0, 1]: 0 near the drag, 1 far from it (see the module docstring)."""
    H, W = size
    moving = (targets - handles).norm(dim=1) > 0
    if bool(moving.any()):  # held points free nothing (the module docstring)
        handles, targets = handles[moving], targets[moving]
    reach = max(REACH_FLOOR * H, LENGTH_FACTOR * float((targets - handles).norm(dim=1).max()))
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32, device=handles.device),
                            torch.arange(W, dtype=torch.float32, device=handles.device), indexing="ij")
    dist = segment_distance(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), handles, targets).amin(dim=1)
    return ((dist - reach) / reach).clamp(0, 1).reshape(H, W)


def coarse_offsets(disk: torch.Tensor, size: tuple[int, int], coarse_shape: tuple[int, int]) -> torch.Tensor:
    """The disk's offsets (in cells) scaled to image pixels of a coarse map of coarse_shape cells."""
    H, W = size
    return disk * torch.tensor([W / coarse_shape[1], H / coarse_shape[0]], dtype=disk.dtype, device=disk.device)



def coarse_weight(fine_fmap: torch.Tensor, coarse_fmap: torch.Tensor) -> torch.Tensor:
    """Scale that makes a coarse block's motion term weigh like the drag block's (detached).

    Blocks differ in channel count and magnitude; the ratio of their mean feature-vector lengths
    (feature_layers.feature_scale) brings the coarse term to the fine one's size.
    """
    return feature_scale(fine_fmap) / feature_scale(coarse_fmap)
