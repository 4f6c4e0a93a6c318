"""The demo trainer's loss: L1 + multi-scale SSIM, plus optional terms that reward edges.

L1 and SSIM average over every pixel, and most pixels of a cartoon cat are flat fur or
background, so a blurred outline costs little. The edge terms weigh only where the image
changes: L1 on the finite-difference gradients, and L1 on the bands of a Laplacian pyramid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import multiscale_ssim


def gradient_l1(diff: torch.Tensor) -> torch.Tensor:
    """Mean |d/dx| + |d/dy| of `diff` = image - target: zero only where every edge sits right."""
    dx = diff[..., :, 1:] - diff[..., :, :-1]
    dy = diff[..., 1:, :] - diff[..., :-1, :]
    return dx.abs().mean() + dy.abs().mean()


def laplacian_pyramid_l1(diff: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Sum over pyramid levels j of 2^-j mean |band_j(diff)| (Bojanowski et al.'s Lap1 loss).

    The pyramid is linear, so the bands of image - target are the band differences; the finest
    band holds the one- and two-pixel detail (whiskers, pupils, outlines) that L1 barely sees.
    """
    total = diff.new_zeros(())
    for j in range(levels):
        if min(diff.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(diff, 2)
        band = diff - F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        total = total + band.abs().mean() / 2 ** j
        diff = low
    return total


@dataclass(frozen=True)
class Objective:
    """Weights of the loss terms; the default is the loss the shipped model was trained with."""

    ssim_weight: float = 0.5
    gradient_weight: float = 0.0
    laplacian_weight: float = 0.0

    def __call__(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = img - target
        loss = diff.abs().mean()
        if self.ssim_weight:
            loss = loss + self.ssim_weight * (1 - multiscale_ssim(img, target)).mean()
        if self.gradient_weight:
            loss = loss + self.gradient_weight * gradient_l1(diff)
        if self.laplacian_weight:
            loss = loss + self.laplacian_weight * laplacian_pyramid_l1(diff)
        return loss

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)
