"""The picture the points ask for: the start image warped by the drags' displacement field.

DragGAN's motion loss pulls a small disk of features around each handle one pixel at a time. On the
demo model that moves a face inside its head far more cheaply than the head's outline, so a drag
meant to move a whole part (its position) slides the tracker over the content and never moves the
part (benchmarks/README.md, issue 17: every one of ten such losses left the silhouette in place).
A whole-image target does move it: fitting the latent to the start image warped by the points
lands the moved head within 0.4 px. This module builds that target; DragSession's `warp_steps`
fits it before the drag loop refines the result.

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


def displacement_field(size: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor,
                       editable: torch.Tensor | None = None) -> torch.Tensor:
    """[H, W, 2] motion (dx, dy) of every pixel, interpolated from the points' drags.

    handles, targets: [N, 2] (x, y) image pixels. editable: [H, W] in 0..1 (1 = may move) or None.
    """
    H, W = size
    device = handles.device
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    pixels = torch.stack([xs, ys], dim=-1)  # [H, W, 2]
    weights = 1.0 / ((pixels[:, :, None, :] - handles.float()[None, None]).square().sum(-1) + SOFTENING)
    field = (weights[..., None] * (targets - handles).float()).sum(2) / weights.sum(2)[..., None]
    if editable is not None:
        field = field * editable.to(device=device, dtype=torch.float32)[..., None]
    return field


def warp_image(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """image [1, C, H, W] moved by field [H, W, 2]: output pixel p shows the input at s, s + field(s) = p."""
    H, W = field.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(H, device=field.device, dtype=torch.float32),
                            torch.arange(W, device=field.device, dtype=torch.float32), indexing="ij")
    pixels = torch.stack([xs, ys], dim=-1)
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=field.device)
    as_grid = lambda points: (points * scale - 1)[None]  # noqa: E731 (pixels -> grid_sample's [-1, 1])
    planes = field.permute(2, 0, 1)[None]
    source = pixels.clone()
    for _ in range(INVERSE_ITERATIONS):
        moved = F.grid_sample(planes, as_grid(source), align_corners=True, padding_mode="border")
        source = pixels - moved[0].permute(1, 2, 0)
    return F.grid_sample(image.float(), as_grid(source), align_corners=True, padding_mode="border")


def predicted_positions(field: torch.Tensor, handles: torch.Tensor) -> torch.Tensor:
    """Where the warp puts each handle: its pixel's motion added (the point to search near after a fit)."""
    H, W = field.shape[:2]
    x = handles[:, 0].round().long().clamp(0, W - 1)
    y = handles[:, 1].round().long().clamp(0, H - 1)
    return handles + field[y, x].to(handles.dtype)
