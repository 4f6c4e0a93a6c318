"""How a generator's feature map lies over the image it draws.

The drag loop treats a feature map as a field over image pixels. For StyleGAN2 a block's map
covers the image exactly. StyleGAN3 layers carry extra samples outside the image (a margin of
`margin_size` samples per side, see the fact sheet); after cropping it, a map of `rate` samples
covers the image and sample k lies at image coordinate (k + 0.5) * H / rate - 0.5, which is the
same rule the drag loop already applies to StyleGAN2 maps (pixel centres at integers).
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class FeatureGeometry:
    """Samples to drop from each side of a feature map so that the rest covers the image exactly.

    crop is (top, bottom, left, right). After cropping, a map of h x w samples maps onto an image
    of H x W pixels by sample k <-> pixel (k + 0.5) * H / h - 0.5 (per axis).
    """

    crop: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def is_identity(self) -> bool:
        return not any(self.crop)

    def apply(self, fmap: torch.Tensor) -> torch.Tensor:
        """Crop [N, C, h, w] to the part that covers the image."""
        if self.is_identity:
            return fmap
        top, bottom, left, right = self.crop
        h, w = fmap.shape[-2:]
        if top + bottom >= h or left + right >= w:
            raise ValueError(f"crop {self.crop} leaves nothing of a {h}x{w} map")
        return fmap[..., top: h - bottom, left: w - right]


IDENTITY = FeatureGeometry()
