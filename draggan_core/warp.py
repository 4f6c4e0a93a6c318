"""The picture the points ask for: the start image (or feature map) warped by the drags' displacement field.

DragGAN's motion loss pulls a small disk of features around each handle one pixel at a time. On the
demo model that moves a face inside its head far more cheaply than the head's outline, so a drag
meant to move a whole part (its position) slides the tracker over the content and never moves the
part (benchmarks/README.md, issue 17: every one of ten such losses left the silhouette in place).
A whole-picture target does move it: fitting the latent to the start's features (or image) warped
by the points lands the moved head within 0.4-0.7 px. This module builds that target; DragSession's
`warp_steps` fits the drag block's feature map to it before the drag loop refines the result.

The field interpolates the drags' vectors by inverse squared distance (Shepard's method, softened
by 1 px^2 so it is finite at a point): a lone drag moves everything with it, a point held in place
(handle = target) pins its surroundings, and between points the motion blends smoothly. An editable
mask confines it: held pixels do not move. The warp is backward (each output pixel finds where it
came from) by fixed-point iteration, which converges while the field is smooth, as this one is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SOFTENING = 1.0  # px^2 added to squared distances: the field is finite at the points themselves
INVERSE_ITERATIONS = 8  # fixed-point steps of the backward warp (the field's slope is well under 1)


def pixel_grid(H: int, W: int, device: torch.device) -> torch.Tensor:
    """[H, W, 2] (x, y) of every pixel centre."""
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], dim=-1)


def displacement_at(points: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[..., 2] motion (dx, dy) at points [..., 2], interpolated from the drags handles -> targets [N, 2]."""
    weights = 1.0 / ((points[..., None, :] - handles.float()).square().sum(-1) + SOFTENING)
    return (weights[..., None] * (targets - handles).float()).sum(-2) / weights.sum(-1)[..., None]


def displacement_field(size: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor,
                       editable: torch.Tensor | None = None) -> torch.Tensor:
    """[H, W, 2] motion of every pixel of an H x W grid (points in that grid's pixels).

    editable: [H, W] in 0..1 (1 = may move) or None.
    """
    field = displacement_at(pixel_grid(*size, handles.device), handles, targets)
    if editable is not None:
        field = field * editable.to(device=handles.device, dtype=torch.float32)[..., None]
    return field


def warp_map(fmap: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """A map [1, C, H, W] (an image or a feature block) moved by field [H, W, 2]: output pixel p shows the
    input at s, s + field(s) = p."""
    H, W = field.shape[:2]
    pixels = pixel_grid(H, W, field.device)
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=field.device)
    as_grid = lambda points: (points * scale - 1)[None]  # noqa: E731 (pixels -> grid_sample's [-1, 1])
    planes = field.permute(2, 0, 1)[None]
    source = pixels.clone()
    for _ in range(INVERSE_ITERATIONS):
        moved = F.grid_sample(planes, as_grid(source), align_corners=True, padding_mode="border")
        source = pixels - moved[0].permute(1, 2, 0)
    return F.grid_sample(fmap.float(), as_grid(source), align_corners=True, padding_mode="border")
