"""Point tracking beyond the published nearest-neighbour search: match quality and its safeguards.

match_margins says how unambiguous each handle's match is (best against second-best feature
distance in the tracking window); the benchmark's diagnosis uses it to tell a handle that jumped to
a similar feature from one that was tracked faithfully.
"""
from __future__ import annotations

import torch

from .drag import FeatureField, square_offsets


def window_distances(field: FeatureField, handles: torch.Tensor, templates: torch.Tensor, r2: int,
                     metric: str = "l2") -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates [N, K, 2] within +-r2 of each rounded handle and their feature distances [N, K] to the templates.

    Candidates outside the image get distance inf.
    """
    H, W = field.size
    cand = handles.round()[:, None, :] + square_offsets(r2).to(handles.device)[None]
    n, k = cand.shape[:2]
    diff = field.sample(cand.reshape(-1, 2)).reshape(n, k, -1) - templates[:, None, :]
    dist = diff.norm(dim=-1) if metric == "l2" else diff.abs().sum(dim=-1)
    inside = (cand[..., 0] >= 0) & (cand[..., 0] <= W - 1) & (cand[..., 1] >= 0) & (cand[..., 1] <= H - 1)
    return cand, dist.masked_fill(~inside, float("inf"))


def match_margins(field: FeatureField, handles: torch.Tensor, templates: torch.Tensor, r2: int) -> torch.Tensor:
    """Per handle, (second - best) / second feature distance in its window, second-best taken > 1 px from the best.

    0 means another, separate place matches as well (the tracker may jump there); near 1 means one
    clear match.
    """
    cand, dist = window_distances(field, handles, templates, r2)
    best = dist.argmin(dim=1)
    rows = torch.arange(len(handles), device=handles.device)
    near = (cand - cand[rows, best][:, None]).abs().amax(dim=-1) <= 1
    d1 = dist[rows, best]
    d2 = dist.masked_fill(near, float("inf")).amin(dim=1)
    return ((d2 - d1) / d2.clamp_min(1e-8)).clamp(0, 1)
