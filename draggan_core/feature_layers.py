"""Several generator blocks as one feature field: the drag block plus coarser blocks before it.

The drag block's features (128 px) are local: on a small or low-channel model many pixels of a
part look alike (the demo model has 16 channels there), and the tracker jumps between them.
Coarser blocks see more context ("five pixels left of the head centre"), so concatenating them
makes a handle's feature more distinctive while the fine block keeps it precise. Each coarse map
is sampled in place (bilinear at pixel centres, like FeatureField's sparse path) and scaled so
that every block weighs as much as the drag block in a feature distance.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .features import FeatureGeometry


def feature_scale(fmap: torch.Tensor) -> torch.Tensor:
    """Root of the mean squared feature-vector length (detached: a scale, not something to optimise)."""
    return fmap.detach().square().sum(dim=1).mean().sqrt().clamp_min(1e-8)


class LayeredField:
    """A drag.FeatureField whose samples also carry coarser blocks' features (concatenated channels).

    The fixed-region term (masked_l1) stays on the drag block alone: it holds the image, the
    coarse blocks add nothing there but cost.
    """

    def __init__(self, fine, coarse: list[torch.Tensor]):
        self.size, self._fine = fine.size, fine
        scale = feature_scale(fine.fmap)
        self.coarse = [c * (scale / feature_scale(c)) for c in coarse]

    def masked_l1(self, other: "LayeredField", fixed: torch.Tensor) -> torch.Tensor:
        return self._fine.masked_l1(other._fine, fixed)

    def sample(self, xy: torch.Tensor) -> torch.Tensor:
        H, W = self.size
        grid = torch.stack([(xy[:, 0] + 0.5) / W * 2 - 1, (xy[:, 1] + 0.5) / H * 2 - 1], dim=-1).reshape(1, 1, -1, 2)
        parts = [self._fine.sample(xy)]
        for c in self.coarse:
            parts.append(F.grid_sample(c, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].t())
        return torch.cat(parts, dim=1)


def layered_field(fine, feats: list[torch.Tensor], block: int, n_coarse: int,
                  geometry: Callable[[int], FeatureGeometry]):
    """The drag block's field plus the n_coarse blocks before it (fewer if the model has fewer).

    geometry(k) crops block k's margin (StyleGAN3), so every map covers the image exactly.
    """
    first = max(0, block - n_coarse)
    if first == block:
        return fine
    return LayeredField(fine, [geometry(k).apply(feats[k].to(torch.float32)) for k in range(first, block)])
