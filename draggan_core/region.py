"""Regions of an editor layer: choose them, map them onto the model's image and composite edits back.

An artist edits a layer of any size; the generator has a fixed image size (G.img_size, (height,
width), not necessarily square). The part of the layer being edited, the *region* (the whole layer,
a selection's bounding box grown by a margin, or an explicit rectangle), is resized to fit inside
the model's image keeping its aspect ratio, and centred with padding. `RegionMapping` records that
transform and moves points, masks and images along it in both directions.

Conventions (the same as backend/geometry.py and the drag engine):

* Points are (x, y), x right, y down, in pixels; pixel centres sit at integers, so pixel i covers
  [i - 0.5, i + 0.5). A point maps by its continuous position, so mappings are sub-pixel exact
  and `to_layer(to_model(p)) == p` up to float rounding.
* Sizes are (height, width), as G.img_size and numpy shapes; rectangles are `Rect(x, y, width,
  height)` in layer pixels, as editors give them.
* Images are 8-bit sRGB numpy arrays [H, W, 3] or [H, W, 4] (RGBA, straight alpha).

The fit: the region (w x h layer pixels) becomes a content box of round(w * s) x round(h * s) model
pixels, s = min(model_w / w, model_h / h), placed at ((model_w - cw) // 2, (model_h - ch) // 2).
The two axes keep their own exact scale cw / w and ch / h, so the rounding of the content box
never shifts a point. Padding pixels repeat the content's edge (they are excluded from the
inversion's loss through the valid mask that `crop_and_fit` returns).

Compositing (`composite`): the edited model-size image is cut out of its content box, resized to
the region's size and blended into a copy of the layer. Pixels whose blend weight is 0 (outside
the editable mask, outside the region) are copied from the layer *bit-exact*; inside the mask the
edit replaces the layer, and the weight ramps linearly from 0 to 1 over `feather` pixels inside
the mask's edge (Euclidean distance to the nearest non-editable pixel), so values along any line
crossing a straight edge change monotonically. Blending is done on the 8-bit sRGB values.
The same blending serves an oriented quad (draggan_core.alignment: a rotated, scaled crop), whose
edit is warped back into the quad's bounding box and confined to the quad.

Alpha decision: the layer's alpha channel is returned unchanged everywhere (the generator makes
opaque colour, the layer's shape of transparency is the artist's). Transparent pixels (alpha 0)
inside the edit get the edit's colour, which stays invisible. `fill_transparent=True` opts in to
raising alpha inside the edit to the blend weight (a drag that moves content into a transparent
hole then shows it). Colour of semi-transparent pixels is resized premultiplied, so transparent
pixels never bleed their (meaningless) colour into visible ones.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Rect:
    """An integer rectangle in layer pixels: columns x .. x + width - 1, rows y .. y + height - 1."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("x", "y", "width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v:
                raise ValueError(f"Rect.{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Rect must have a positive size, got {self.width}x{self.height}")

    @property
    def right(self) -> int:  # exclusive
        return self.x + self.width

    @property
    def bottom(self) -> int:  # exclusive
        return self.y + self.height

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), right/bottom exclusive, as PIL boxes."""
        return self.x, self.y, self.right, self.bottom

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices for numpy arrays."""
        return slice(self.y, self.bottom), slice(self.x, self.right)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_box(cls, left: int, top: int, right: int, bottom: int) -> "Rect":
        return cls(left, top, right - left, bottom - top)


def _hw(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise ValueError(f"{name} must be (height, width) of positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def select_region(layer_size: Sequence[int], bbox: Rect | Sequence[int] | None = None, margin: float = 0.15,
                  min_margin: int = 8, model_size: Sequence[int] | None = None) -> Rect:
    """The region to edit: `bbox` (x, y, width, height; e.g. the selection's bounds) grown by a margin.

    The margin on each side is max(min_margin, margin * the bbox's longer side) pixels. With
    `model_size` (height, width) the shorter direction is grown further towards the model's
    aspect ratio (as far as the layer allows), so less of the model's image is padding. The result
    is clamped to the layer. No bbox: the whole layer.
    """
    lh, lw = _hw(layer_size, "layer_size")
    if bbox is None:
        return Rect(0, 0, lw, lh)
    if not isinstance(bbox, Rect):
        bbox = Rect(*bbox)
    left, top = max(bbox.x, 0), max(bbox.y, 0)
    right, bottom = min(bbox.right, lw), min(bbox.bottom, lh)
    if right <= left or bottom <= top:
        raise ValueError(f"selection {bbox} does not overlap the {lw}x{lh} layer")
    m = max(int(min_margin), int(math.ceil(margin * max(right - left, bottom - top))))
    left, top, right, bottom = max(left - m, 0), max(top - m, 0), min(right + m, lw), min(bottom + m, lh)
    if model_size is not None:
        mh, mw = _hw(model_size, "model_size")
        w, h = right - left, bottom - top
        want_w, want_h = max(w, int(math.ceil(h * mw / mh))), max(h, int(math.ceil(w * mh / mw)))
        left, right = _grow(left, right, want_w, lw)
        top, bottom = _grow(top, bottom, want_h, lh)
    return Rect.from_box(left, top, right, bottom)


def _grow(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) to length `want` about its centre, shifted to stay inside [0, limit)."""
    want = min(want, limit)
    extra = want - (hi - lo)
    if extra <= 0:
        return lo, hi
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), hi


@dataclasses.dataclass(frozen=True)
class RegionMapping:
    """The recorded transform between a layer region and the model's image (see the module docstring)."""

    oriented: ClassVar[bool] = False  # an axis-aligned region (alignment.AlignedMapping: a turned quad)
    layer_size: tuple[int, int]  # (height, width) of the whole layer
    region: Rect  # in layer pixels
    model_size: tuple[int, int]  # (height, width) of the model's image
    content: Rect  # where the region lands in the model's image (model pixels); the rest is padding

    @classmethod
    def create(cls, layer_size: Sequence[int], model_size: Sequence[int], region: Rect | Sequence[int] | None = None
               ) -> "RegionMapping":
        layer_size, model_size = _hw(layer_size, "layer_size"), _hw(model_size, "model_size")
        if region is None:
            region = Rect(0, 0, layer_size[1], layer_size[0])
        elif not isinstance(region, Rect):
            region = Rect(*region)
        if region.x < 0 or region.y < 0 or region.right > layer_size[1] or region.bottom > layer_size[0]:
            raise ValueError(f"region {region} is not inside the {layer_size[1]}x{layer_size[0]} layer")
        mh, mw = model_size
        s = min(mw / region.width, mh / region.height)
        cw = min(mw, max(1, round(region.width * s)))
        ch = min(mh, max(1, round(region.height * s)))
        content = Rect((mw - cw) // 2, (mh - ch) // 2, cw, ch)
        return cls(layer_size, region, model_size, content)

    # ------------------------------------------------------------------ geometry

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): model pixels per layer pixel along x and y."""
        return self.content.width / self.region.width, self.content.height / self.region.height

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) padding of the model's image, in model pixels."""
        mh, mw = self.model_size
        c = self.content
        return c.x, c.y, mw - c.right, mh - c.bottom

    def to_dict(self) -> dict:
        """A JSON-able record of the mapping (sizes, region, content box, scales, padding)."""
        return {"layer_size": list(self.layer_size), "region": self.region.to_dict(),
                "model_size": list(self.model_size), "content": self.content.to_dict(),
                "scale": list(self.scale), "padding": list(self.padding)}

    def to_model(self, points):
        """Layer points -> model points. A list of (x, y) gives a list of tuples; an array [N, 2] an array."""
        sx, sy = self.scale
        r, c = self.region, self.content

        def f(xy: np.ndarray) -> np.ndarray:
            return np.stack([(xy[:, 0] - r.x + 0.5) * sx + c.x - 0.5, (xy[:, 1] - r.y + 0.5) * sy + c.y - 0.5], 1)
        return _apply(f, points)

    def to_layer(self, points):
        """Model points -> layer points (the exact inverse of to_model)."""
        sx, sy = self.scale
        r, c = self.region, self.content

        def f(xy: np.ndarray) -> np.ndarray:
            return np.stack([(xy[:, 0] - c.x + 0.5) / sx + r.x - 0.5, (xy[:, 1] - c.y + 0.5) / sy + r.y - 0.5], 1)
        return _apply(f, points)

    def contains(self, point: Sequence[float]) -> bool:
        """Whether a layer point lies on the region (the only part of the layer the model sees)."""
        r = self.region
        return r.x <= point[0] <= r.right - 1 and r.y <= point[1] <= r.bottom - 1

    def bounds_text(self) -> str:
        """Where points must lie, in words for error messages."""
        r = self.region
        return f"x from {r.x} to {r.right - 1}, y from {r.y} to {r.bottom - 1}"

    def region_coverage(self) -> None:
        """Every pixel of the region is on the model's image (None: all), unlike an oriented quad's
        bounding box (alignment.AlignedMapping), whose corners the model does not see."""
        return None

    def in_content(self, model_points) -> np.ndarray:
        """Which model points lie on the content (not the padding): bool [N]."""
        xy = np.asarray(model_points, dtype=np.float64).reshape(-1, 2)
        c = self.content
        return ((xy[:, 0] >= c.x - 0.5) & (xy[:, 0] <= c.right - 0.5)
                & (xy[:, 1] >= c.y - 0.5) & (xy[:, 1] <= c.bottom - 0.5))

    def clamp_model(self, model_points):
        """Clamp model points onto the content box (pixel centres of its border pixels)."""
        c = self.content

        def f(xy: np.ndarray) -> np.ndarray:
            return np.stack([np.clip(xy[:, 0], c.x, c.right - 1), np.clip(xy[:, 1], c.y, c.bottom - 1)], 1)
        return _apply(f, model_points)

    # ------------------------------------------------------------------ images and masks

    def crop(self, layer) -> np.ndarray:
        """The region's pixels as uint8 RGBA [h, w, 4] (what to hash for an inversion's session key)."""
        return np.ascontiguousarray(_as_rgba(layer, self.layer_size)[self.region.slices])

    def crop_and_fit(self, layer) -> tuple[np.ndarray, np.ndarray]:
        """The region of a layer as the model's input: (RGB uint8 [mh, mw, 3], valid float32 [mh, mw]).

        `valid` is 0 on the padding and the (resized) alpha / 255 on the content, so transparent
        layer pixels do not count in the inversion's loss. Colour is resized premultiplied (Lanczos)
        and the padding repeats the content's edge pixels.
        """
        rgba = _as_rgba(layer, self.layer_size)
        c = self.content
        region = rgba[self.region.slices].astype(np.float32)
        alpha = region[..., 3] / 255.0
        premult = region[..., :3] * alpha[..., None]
        size = (c.width, c.height)
        a = _resize_float(alpha, size, Image.LANCZOS).clip(0, 1)
        rgb = np.stack([_resize_float(premult[..., i], size, Image.LANCZOS) for i in range(3)], -1)
        rgb = np.where(a[..., None] > 1e-3, rgb / np.maximum(a[..., None], 1e-3), 0.0)
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        pad = self.padding
        out = np.pad(rgb, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="edge")
        valid = np.zeros(self.model_size, np.float32)
        valid[c.slices] = a
        return out, valid

    def mask_to_model(self, mask) -> np.ndarray:
        """A layer-size mask (bool, 0..1 float or 0..255 uint8) -> float32 [mh, mw] in 0..1, 0 on the padding.

        A region-size mask is accepted too. Soft edges survive (bilinear-area resizing).
        """
        m = _as_unit_mask(mask)
        if m.shape == self.layer_size:
            m = m[self.region.slices]
        elif m.shape != (self.region.height, self.region.width):
            raise ValueError(f"mask must be the layer's {self.layer_size} or the region's "
                             f"{(self.region.height, self.region.width)} size (height, width), got {m.shape}")
        c = self.content
        out = np.zeros(self.model_size, np.float32)
        out[c.slices] = _resize_float(m, (c.width, c.height), Image.BILINEAR).clip(0, 1)
        return out

    def mask_to_layer(self, model_mask) -> np.ndarray:
        """A model-size mask -> float32 layer-size mask in 0..1 (0 outside the region)."""
        m = _as_unit_mask(model_mask)
        if m.shape != self.model_size:
            raise ValueError(f"mask must be the model's size {self.model_size}, got {m.shape}")
        out = np.zeros(self.layer_size, np.float32)
        out[self.region.slices] = self._model_to_region(m, Image.BILINEAR).clip(0, 1)
        return out

    def image_to_region(self, model_rgb) -> np.ndarray:
        """A model-size RGB image (uint8 [mh, mw, 3], or a generator tensor [1, 3, mh, mw] in [-1, 1])
        -> float32 [h, w, 3] at the region's size (0..255, not rounded)."""
        rgb = _as_rgb_float(model_rgb)
        if rgb.shape[:2] != self.model_size:
            raise ValueError(f"image must be the model's size {self.model_size}, got {rgb.shape[:2]}")
        return np.stack([self._model_to_region(rgb[..., i], Image.LANCZOS) for i in range(3)], -1).clip(0, 255)

    def _model_to_region(self, plane: np.ndarray, resample) -> np.ndarray:
        c = self.content
        img = Image.fromarray(plane.astype(np.float32), "F")
        return np.asarray(img.resize((self.region.width, self.region.height), resample, box=c.box), np.float32)


def _apply(f, points):
    if isinstance(points, np.ndarray):
        return f(points.astype(np.float64).reshape(-1, 2)).reshape(points.shape)
    pts = list(points)
    if not pts:
        return []
    xy = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in f(xy)]


def _resize_float(plane: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    if plane.shape[::-1] == tuple(size):
        return plane.astype(np.float32)
    return np.asarray(Image.fromarray(plane.astype(np.float32), "F").resize(size, resample), np.float32)


def _as_rgba(layer, size: tuple[int, int] | None = None) -> np.ndarray:
    if isinstance(layer, Image.Image):
        layer = np.asarray(layer.convert("RGBA"))
    arr = np.asarray(layer)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"layer must be 8-bit RGB or RGBA [H, W, 3|4], got {arr.dtype} {arr.shape}")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], 2)
    if size is not None and arr.shape[:2] != tuple(size):
        raise ValueError(f"layer must be {size} (height, width), got {arr.shape[:2]}")
    return arr


def _as_unit_mask(mask) -> np.ndarray:
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"))
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {m.shape}")
    if m.dtype == np.bool_:
        return m.astype(np.float32)
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0, 1)


def _as_rgb_float(img) -> np.ndarray:
    if hasattr(img, "detach"):
        t = img.detach().to("cpu").float()
        if t.ndim == 4:
            t = t[0]
        return (t.permute(1, 2, 0).numpy() * 127.5 + 127.5).clip(0, 255).astype(np.float32)
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"image must be RGB [H, W, 3], got {arr.shape}")
    return arr[..., :3].astype(np.float32)


# ---------------------------------------------------------------------- distances and feathering

def distance_to_outside(inside: np.ndarray, limit: int, outside_border: Sequence[bool] = (True,) * 4) -> np.ndarray:
    """Euclidean distance (pixel centre to pixel centre) from each True pixel to the nearest False one,
    capped at `limit` + 1; 0 on False pixels.

    `outside_border` (left, top, right, bottom) says whether the world beyond each edge of the array
    counts as outside (False) or as continuing the edge pixels. Exact, in O(limit * pixels).
    """
    inside = np.asarray(inside, dtype=bool)
    cap = float(limit + 1)
    if limit <= 0:
        return np.where(inside, cap, 0.0).astype(np.float32)
    p = limit + 1
    padded = np.pad(inside, p, mode="edge")
    left, top, right, bottom = outside_border
    if left:
        padded[:, :p] = False
    if right:
        padded[:, -p:] = False
    if top:
        padded[:p, :] = False
    if bottom:
        padded[-p:, :] = False
    # 1-D distances along columns to the nearest outside pixel, capped.
    h = padded.shape[0]
    idx = np.arange(h, dtype=np.float32)[:, None]
    outside = ~padded
    last = np.where(outside, idx, -np.inf)
    last = np.maximum.accumulate(last, axis=0)
    nxt = np.where(outside, idx, np.inf)
    nxt = np.minimum.accumulate(nxt[::-1], axis=0)[::-1]
    g = np.minimum(idx - last, nxt - idx)
    g = np.minimum(g, cap).astype(np.float32)
    g2 = g * g
    # Then along rows: d^2(x) = min over |dx| <= limit + 1 of dx^2 + g^2(x + dx).
    best = g2.copy()
    W = padded.shape[1]
    for dx in range(1, p + 1):
        shifted_l = np.full_like(g2, cap * cap)
        shifted_l[:, dx:] = g2[:, :W - dx]
        shifted_r = np.full_like(g2, cap * cap)
        shifted_r[:, :W - dx] = g2[:, dx:]
        np.minimum(best, np.minimum(shifted_l, shifted_r) + dx * dx, out=best)
    d = np.minimum(np.sqrt(best), cap)
    return d[p:-p, p:-p].astype(np.float32)


def feather_weights(mask: np.ndarray, feather: int, outside_border: Sequence[bool] = (True,) * 4) -> np.ndarray:
    """Blend weights in 0..1 from an editable mask: 0 wherever the mask is 0, rising linearly from the
    mask's edge to 1 at distance feather + 1 inside it, and capped by the mask's own soft value."""
    m = _as_unit_mask(mask)
    inside = m > 0
    if feather <= 0:
        return np.where(inside, m, 0).astype(np.float32)
    ramp = np.clip(distance_to_outside(inside, feather, outside_border) / (feather + 1), 0, 1)
    return np.minimum(ramp, m).astype(np.float32)


def changed_mask(edited_rgb, original_rgb, threshold: float = 6.0, dilate: int = 2) -> np.ndarray:
    """Where two images (uint8 [H, W, 3] or generator tensors) differ by more than `threshold` 8-bit
    levels in some channel, grown by `dilate` pixels (Euclidean): bool [H, W]."""
    a, b = _as_rgb_float(edited_rgb), _as_rgb_float(original_rgb)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    changed = np.abs(a - b).max(axis=2) > threshold
    if dilate > 0 and changed.any():
        changed = distance_to_outside(~changed, dilate, (False,) * 4) <= dilate
    return changed


@dataclasses.dataclass
class CompositeResult:
    layer: np.ndarray  # uint8 [H, W, 4], the full-size layer with the edit
    changed: Rect | None  # bounding box of the pixels that took (part of) the edit; None: nothing changed
    weights: np.ndarray  # float32 [h, w] blend weights over the region


def composite(layer, mapping: RegionMapping, edited, mask=None, reference=None, feather: int = 8,
              threshold: float = 6.0, dilate: int = 2, fill_transparent: bool = False) -> CompositeResult:
    """Blend an edited model-size image back into a full-size copy of the layer.

    mapping: a RegionMapping, or an alignment.AlignedMapping (an oriented quad: its region is the
    quad's bounding box, and pixels outside the quad get weight 0, so they are the layer's bytes).
    layer: the full layer, uint8 RGB or RGBA at mapping.layer_size. edited: the edit at the model's
    size (uint8 RGB or a generator tensor). mask: the editable region at the layer's (or region's)
    size, bool / 0..1 / 0..255; None derives it from the edit: with `reference` (the unedited
    reconstruction, model size) the pixels the edit changed by more than `threshold` levels,
    grown by `dilate` + `feather` pixels; without it the whole region. Where the region touches an
    edge of the layer, the mask is not feathered against that edge.

    Pixels with weight 0 (outside mask and region) are the layer's bytes unchanged, alpha is kept
    everywhere (unless fill_transparent), see the module docstring. An RGB layer comes back as
    RGBA with alpha 255, so callers get one format.
    """
    rgba = _as_rgba(layer, mapping.layer_size)
    r = mapping.region
    lh, lw = mapping.layer_size
    # Edges of the region that are layer edges: no feathering against them.
    border = (r.x > 0, r.y > 0, r.right < lw, r.bottom < lh)
    if mask is not None:
        m = _as_unit_mask(mask)
        if m.shape == mapping.layer_size:
            m = m[r.slices]
        elif m.shape != (r.height, r.width):
            raise ValueError(f"mask must be the layer's {mapping.layer_size} or the region's "
                             f"{(r.height, r.width)} size, got {m.shape}")
    elif reference is not None:
        ch = changed_mask(mapping.image_to_region(edited), mapping.image_to_region(reference), threshold, 0)
        grow = dilate + feather
        m = (distance_to_outside(~ch, grow, (False,) * 4) <= grow).astype(np.float32) if ch.any() \
            else np.zeros(ch.shape, np.float32)
    else:
        m = np.ones((r.height, r.width), np.float32)
    coverage = mapping.region_coverage()
    if coverage is not None:  # the edit exists only where the model's image covers the layer
        m = np.where(coverage, m, 0).astype(np.float32)
    weights = feather_weights(m, feather, border)
    out = rgba.copy()
    nz = weights > 0
    if nz.any():
        edit = mapping.image_to_region(edited)
        orig = rgba[r.slices].astype(np.float32)
        w = weights[..., None]
        blended = np.clip(np.rint(orig[..., :3] * (1 - w) + edit * w), 0, 255).astype(np.uint8)
        region_out = out[r.slices]
        region_out[..., :3] = np.where(nz[..., None], blended, region_out[..., :3])
        if fill_transparent:
            alpha = np.maximum(orig[..., 3], np.rint(weights * 255)).astype(np.uint8)
            region_out[..., 3] = np.where(nz, alpha, region_out[..., 3])
        ys, xs = np.nonzero(nz)
        changed = Rect.from_box(r.x + int(xs.min()), r.y + int(ys.min()),
                                r.x + int(xs.max()) + 1, r.y + int(ys.max()) + 1)
    else:
        changed = None
    return CompositeResult(out, changed, weights)


__all__ = ["Rect", "RegionMapping", "select_region", "composite", "CompositeResult", "feather_weights",
           "changed_mask", "distance_to_outside"]
