"""The mapping between the pixels of the image a client sent and the pixels of the model's image.

A layer in the editor need not have the model's size (a 512 px face on a 1024 px canvas). The
session records both sizes; points and masks go from client pixels into model pixels, and images
and tracked handles come back at the client's size, so the client never sees model pixels.
Pixel centres sit at integers, so pixel i of the client covers [i - 0.5, i + 0.5) in its frame.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from PIL import Image

Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Mapping:
    width: int  # the client's image
    height: int
    model_width: int
    model_height: int

    @property
    def identity(self) -> bool:
        return (self.width, self.height) == (self.model_width, self.model_height)

    def contains(self, point: Sequence[float]) -> bool:
        return 0 <= point[0] <= self.width - 1 and 0 <= point[1] <= self.height - 1

    def to_model(self, points: Sequence[Sequence[float]]) -> list[Point]:
        """Client pixels -> model pixels, clamped to the model image (its border pixels cover the client's)."""
        sx, sy = self.model_width / self.width, self.model_height / self.height
        return [(_clamp((x + 0.5) * sx - 0.5, self.model_width - 1), _clamp((y + 0.5) * sy - 0.5, self.model_height - 1))
                for x, y in points]

    def to_client(self, points: Sequence[Sequence[float]]) -> list[Point]:
        sx, sy = self.width / self.model_width, self.height / self.model_height
        return [((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in points]

    def image_to_client(self, image: Image.Image) -> Image.Image:
        """A model-sized render at the client's size."""
        return image if self.identity else image.resize((self.width, self.height), Image.LANCZOS)

    def image_to_model(self, image: Image.Image) -> Image.Image:
        return image if self.identity else image.resize((self.model_width, self.model_height), Image.LANCZOS)

    def mask_to_model(self, mask: Image.Image) -> np.ndarray:
        """A client-sized grayscale mask as uint8 [H, W] at the model's size; soft edges survive resizing."""
        if not self.identity:
            mask = mask.resize((self.model_width, self.model_height), Image.BILINEAR)
        return np.array(mask, dtype=np.uint8)


def _clamp(value: float, high: float) -> float:
    return min(max(value, 0.0), high)


@dataclasses.dataclass(frozen=True)
class LayerMapping:
    """The client's pixels are a whole layer, of which a region was fitted into the model's image
    (draggan_core.region.RegionMapping: resize keeping the aspect ratio, centred, padded), or an
    oriented quad warped into it (draggan_core.alignment.AlignedMapping: rotated, scaled and moved
    the way the model's training images were framed).

    Same interface as Mapping, so drags read alike: width and height are the layer's, points must
    lie inside the region (the only part the model sees), masks are layer-sized, and tracked
    handles come back in layer pixels. Images are not resized here: results are composited into
    the layer (editing.py)."""

    region_mapping: object  # RegionMapping or AlignedMapping (not imported: geometry stays light)

    @property
    def width(self) -> int:
        return self.region_mapping.layer_size[1]

    @property
    def height(self) -> int:
        return self.region_mapping.layer_size[0]

    @property
    def model_width(self) -> int:
        return self.region_mapping.model_size[1]

    @property
    def model_height(self) -> int:
        return self.region_mapping.model_size[0]

    @property
    def region(self):
        return self.region_mapping.region

    @property
    def aligned(self) -> bool:
        """An oriented quad (alignment.AlignedMapping) rather than an axis-aligned region."""
        return self.region_mapping.oriented

    def contains(self, point: Sequence[float]) -> bool:
        return self.region_mapping.contains(point)

    def describe_bounds(self) -> str:
        return f"the edited region of the {self.width}x{self.height} layer ({self.region_mapping.bounds_text()})"

    def to_model(self, points: Sequence[Sequence[float]]) -> list[Point]:
        return self.region_mapping.clamp_model(self.region_mapping.to_model(list(points)))

    def to_client(self, points: Sequence[Sequence[float]]) -> list[Point]:
        return self.region_mapping.to_layer(list(points))

    def mask_to_model(self, mask: Image.Image) -> np.ndarray:
        """A layer-sized grayscale mask -> float32 [mh, mw] in 0..1; the padding is not editable."""
        return self.region_mapping.mask_to_model(np.asarray(mask.convert("L")))
