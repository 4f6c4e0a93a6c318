"""Aligned framing: show the model a layer's subject the way its training images were cropped, and map the edit back.

Each model declares a `Framing` (registry.ModelInfo.framing): FFHQ's oriented square from the eye
centres and mouth corners, the demo world's own constants for that recipe, or a centred crop framed
by a box. An alignment becomes an `AlignedMapping`, a similarity transform (rotation, uniform scale,
translation) between the layer and the model's image that moves images, masks and points both ways,
as region.RegionMapping does for an axis-aligned region; region.composite blends the edit back
through either. Conventions are region.py's; the recipe and the API: docs/api.md, "Alignment".
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .region import Point, Rect, _apply, _as_rgb_float, _as_rgba, _as_unit_mask, _hw

LANDMARKS = ("left_eye", "right_eye", "mouth_left", "mouth_right")
# Limits, in layer pixels. A box under 8 px leaves the model nothing to see (a 1024 px model would
# invent 99.99 % of its image), and one far larger than the layer shows almost nothing of it: both
# are mistakes, not edits. The bounds also keep every later computation finite.
MIN_BOX_SIDE = 8.0
MAX_BOX_FACTOR = 8.0  # times the layer's longer side
MIN_LANDMARK_DISTANCE = 1.0  # eye to eye, and eye midpoint to mouth midpoint


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a model's training images were framed. With the three constants it is an eye-and-mouth
    recipe (`box_from_landmarks`); without them, a centred crop that the user frames with a box."""

    name: str
    description: str
    eye_scale: float | None = None  # half side = max(eye_scale |e|, mouth_scale |m|)
    mouth_scale: float | None = None
    centre_shift: float | None = None  # centre = eye midpoint + centre_shift * m

    @property
    def uses_landmarks(self) -> bool:
        return self.eye_scale is not None


FFHQ = Framing("ffhq", "FFHQ alignment: an oriented square from the eye centres and the mouth corners",
               eye_scale=2.0, mouth_scale=1.8, centre_shift=0.1)
CENTRE = Framing("centre", "centred crop: an oriented box around the subject")
# The demo world (draggan_core/demo/world.py) draws its mean cat (every parameter 0.5: head centre at
# (0.5, 0.59) of the image, radius 0.2275, no tilt or turn) with its eyes 0.1841 image widths apart and
# the mouth corners' midpoint 0.0910 below the eye midpoint, and its training image is the square of
# side 1 centred 0.0855 above the eye midpoint. These constants make the recipe give exactly that
# square for the mean cat, and the same square relative to the head for any size, position and tilt
# (tests/test_alignment.py recomputes them from the world). A turned head narrows the eyes; the
# larger mouth term then keeps the scale.
DEMO = Framing("demo", "the demo world's framing: the recipe of FFHQ with the constants of the world's mean cat",
               eye_scale=2.715733, mouth_scale=5.494505, centre_shift=-0.939011)
FRAMINGS: dict[str, Framing] = {f.name: f for f in (FFHQ, CENTRE, DEMO)}


@dataclasses.dataclass(frozen=True)
class OrientedBox:
    """A rectangle in layer pixels turned by `angle` degrees (clockwise on screen) about its centre."""

    center: Point
    width: float
    height: float
    angle: float = 0.0

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the box's x axis (its "right") and y axis (its "down"), in layer pixels."""
        a = math.radians(self.angle)
        u = np.array([math.cos(a), math.sin(a)])
        return u, np.array([-u[1], u[0]])

    def corners(self) -> list[Point]:
        """Top-left, top-right, bottom-right, bottom-left, as the box's own axes see them."""
        u, v = self.axes
        c = np.asarray(self.center, dtype=np.float64)
        hw, hh = self.width / 2, self.height / 2
        return [tuple(map(float, c + sx * hw * u + sy * hh * v)) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]

    def to_dict(self) -> dict:
        return {"center": [float(self.center[0]), float(self.center[1])], "width": float(self.width),
                "height": float(self.height), "angle": float(self.angle)}


def box_from_landmarks(framing: Framing, left_eye: Sequence[float], right_eye: Sequence[float],
                       mouth_left: Sequence[float], mouth_right: Sequence[float]) -> OrientedBox:
    """The oriented square a landmark framing (FFHQ, demo) crops, in layer pixels.

    With e = right_eye - left_eye and m = mouth corners' midpoint - eyes' midpoint: the square's x axis
    is e + m turned a quarter turn (towards e for an upright face), its half side max(eye_scale |e|,
    mouth_scale |m|), its centre eyes' midpoint + centre_shift m (FFHQ: 2.0, 1.8, 0.1). "left" is the
    eye or mouth corner on the image's left when the face is upright (the subject's right).

    Raises ValueError for a framing without landmarks, for landmarks too close together to give a
    direction, and for eyes given the wrong way round (the mouth would be above the eyes: a mirrored
    face), so a slip of the user's clicks is reported instead of editing an upside-down mirror image.
    """
    if not framing.uses_landmarks:
        raise ValueError(f"the {framing.name!r} framing is a centred crop: give an oriented box, not landmarks")
    le, re_, ml, mr = (np.asarray(p, dtype=np.float64) for p in (left_eye, right_eye, mouth_left, mouth_right))
    eye_mid = (le + re_) / 2
    e, m = re_ - le, (ml + mr) / 2 - eye_mid
    if math.hypot(*e) < MIN_LANDMARK_DISTANCE or math.hypot(*m) < MIN_LANDMARK_DISTANCE:
        raise ValueError(f"the eyes must be at least {MIN_LANDMARK_DISTANCE:g} px apart, and the mouth corners' "
                         f"midpoint at least {MIN_LANDMARK_DISTANCE:g} px from the eyes' midpoint")
    if e[0] * m[1] - e[1] * m[0] <= 0:
        raise ValueError("the mouth is not below the eyes as left_eye -> right_eye see it: left_eye is the eye on "
                         "the image's left when the face is upright (the subject's right eye); are the eyes swapped?")
    axis = e + np.array([m[1], -m[0]])  # perp(m): m turned to point along e for an upright face
    half = max(framing.eye_scale * math.hypot(*e), framing.mouth_scale * math.hypot(*m))
    centre = eye_mid + framing.centre_shift * m
    return OrientedBox((float(centre[0]), float(centre[1])), 2 * half, 2 * half,
                       math.degrees(math.atan2(axis[1], axis[0])))


@dataclasses.dataclass(frozen=True)
class AlignedMapping:
    """The similarity transform between a layer and the model's image given by an oriented box.

    The box is fitted inside the model's image keeping its aspect ratio and centred (a square box on
    a square model fills it); the model's image shows the layer around the box where the box's
    aspect differs. `region` is the layer's pixels the model's image covers (its bounding box,
    clamped to the layer): only they can change.
    """

    oriented: ClassVar[bool] = True  # a turned quad (RegionMapping: an axis-aligned region)
    layer_size: tuple[int, int]
    model_size: tuple[int, int]
    box: OrientedBox
    scale: float  # model pixels per layer pixel
    region: Rect
    framing: str = "box"  # the Framing's name for landmarks, "box" for a box given as it is
    landmarks: tuple[tuple[str, Point], ...] | None = None  # what it was made from, for reports

    @classmethod
    def create(cls, layer_size: Sequence[int], model_size: Sequence[int], box: OrientedBox, framing: str = "box",
               landmarks: Mapping[str, Sequence[float]] | None = None) -> "AlignedMapping":
        """Raises ValueError for a box outside the limits or one that misses the layer."""
        layer_size, model_size = _hw(layer_size, "layer_size"), _hw(model_size, "model_size")
        values = (*box.center, box.width, box.height, box.angle)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"the box must have finite numbers, got {box}")
        longest = MAX_BOX_FACTOR * max(layer_size)
        if min(box.width, box.height) < MIN_BOX_SIDE or max(box.width, box.height) > longest:
            raise ValueError(f"the aligned box is {box.width:.1f} x {box.height:.1f} px; its sides must be from "
                             f"{MIN_BOX_SIDE:g} px to {longest:g} px ({MAX_BOX_FACTOR:g} times the layer's "
                             f"longer side)")
        mh, mw = model_size
        scale = min(mw / box.width, mh / box.height)
        marks = None if landmarks is None else tuple((k, (float(landmarks[k][0]), float(landmarks[k][1])))
                                                     for k in LANDMARKS)
        probe = cls(layer_size, model_size, box, scale, Rect(0, 0, 1, 1), framing, marks)
        region = probe._footprint()
        if region is None:
            raise ValueError(f"the aligned box (corners {_points_text(probe.quad())}) does not overlap the "
                             f"{layer_size[1]}x{layer_size[0]} layer")
        return dataclasses.replace(probe, region=region)

    @classmethod
    def from_landmarks(cls, layer_size: Sequence[int], model_size: Sequence[int], framing: Framing,
                       landmarks: Mapping[str, Sequence[float]]) -> "AlignedMapping":
        """The mapping of a landmark framing from {left_eye, right_eye, mouth_left, mouth_right}."""
        box = box_from_landmarks(framing, *(landmarks[k] for k in LANDMARKS))
        return cls.create(layer_size, model_size, box, framing.name, landmarks)

    # ------------------------------------------------------------------ geometry

    def _frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(box centre, box x axis, box y axis, model image centre), float64."""
        u, v = self.box.axes
        mh, mw = self.model_size
        return np.asarray(self.box.center, np.float64), u, v, np.array([(mw - 1) / 2, (mh - 1) / 2])

    def _to_model(self, xy: np.ndarray) -> np.ndarray:
        c, u, v, mc = self._frame()
        d = xy - c
        return np.stack([d @ u, d @ v], -1) * self.scale + mc

    def _to_layer(self, xy: np.ndarray) -> np.ndarray:
        c, u, v, mc = self._frame()
        d = (xy - mc) / self.scale
        return c + d[..., :1] * u + d[..., 1:] * v

    def to_model(self, points):
        """Layer points -> model points. A list of (x, y) gives a list of tuples; an array [N, 2] an array."""
        return _apply(self._to_model, points)

    def to_layer(self, points):
        """Model points -> layer points (the exact inverse of to_model, up to float rounding)."""
        return _apply(self._to_layer, points)

    def quad(self) -> list[Point]:
        """The model image's corners (its outer pixel edges) in layer pixels: top-left, top-right,
        bottom-right, bottom-left. For a box that fills the model (same aspect), the box's corners."""
        mh, mw = self.model_size
        return self.to_layer([(-0.5, -0.5), (mw - 0.5, -0.5), (mw - 0.5, mh - 0.5), (-0.5, mh - 0.5)])

    def in_frame(self, model_points) -> np.ndarray:
        """Which model points lie on the model's image (its outer pixel edges included): bool [N]."""
        xy = np.asarray(model_points, dtype=np.float64).reshape(-1, 2)
        mh, mw = self.model_size
        return (xy[:, 0] >= -0.5) & (xy[:, 0] <= mw - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= mh - 0.5)

    def clamp_model(self, model_points):
        """Clamp model points onto the model's image (its border pixels' centres)."""
        mh, mw = self.model_size

        def f(xy: np.ndarray) -> np.ndarray:
            return np.stack([np.clip(xy[:, 0], 0, mw - 1), np.clip(xy[:, 1], 0, mh - 1)], 1)
        return _apply(f, model_points)

    def contains(self, point: Sequence[float]) -> bool:
        """Whether a layer point is on the layer and on the part of it the model sees."""
        lh, lw = self.layer_size
        inside = 0 <= point[0] <= lw - 1 and 0 <= point[1] <= lh - 1
        return inside and bool(self.in_frame(self.to_model([tuple(point)]))[0])

    def bounds_text(self) -> str:
        """Where points must lie, in words for error messages."""
        return "the aligned quad the model sees, corners " + _points_text(self.quad())

    def _footprint(self) -> Rect | None:
        """The layer pixels whose cells the model's image touches, clamped to the layer; None: none."""
        q = np.asarray(self.quad())
        lh, lw = self.layer_size
        # Pixel i covers [i - 0.5, i + 0.5): the ones the quad's span overlaps (float noise tolerated).
        left, top = np.floor(q.min(axis=0) + 0.5 + 1e-6).astype(int)
        right, bottom = np.ceil(q.max(axis=0) + 0.5 - 1e-6).astype(int)
        left, top, right, bottom = max(int(left), 0), max(int(top), 0), min(int(right), lw), min(int(bottom), lh)
        if right <= left or bottom <= top:
            return None
        covered = self._cover(Rect.from_box(left, top, right, bottom))
        if not covered.any():
            return None
        return Rect.from_box(left, top, right, bottom)

    def _cover(self, r: Rect) -> np.ndarray:
        mx, my = self._model_coords(r)
        mh, mw = self.model_size
        return (mx >= -0.5) & (mx <= mw - 0.5) & (my >= -0.5) & (my <= mh - 0.5)

    def _model_coords(self, r: Rect, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """Model x and y [h, w] of the centres of rectangle r's layer pixels. Built from rows and columns
        (the transform is affine), so a large region costs two arrays, not a grid of points."""
        c, u, v, mc = self._frame()
        dx, dy = np.arange(r.x, r.right) - c[0], np.arange(r.y, r.bottom) - c[1]
        mx = (dx * u[0] * self.scale)[None, :] + (dy * u[1] * self.scale + mc[0])[:, None]
        my = (dx * v[0] * self.scale)[None, :] + (dy * v[1] * self.scale + mc[1])[:, None]
        return mx.astype(dtype, copy=False), my.astype(dtype, copy=False)

    @functools.cached_property
    def _coverage(self) -> np.ndarray:
        return self._cover(self.region)

    def region_coverage(self) -> np.ndarray:
        """bool [h, w] over `region`: the layer pixels whose centres the model's image covers; an edit
        can reach only these (region.composite gives the others weight 0). Computed once: every
        preview of a drag composites through it."""
        return self._coverage

    @property
    def shrink_in(self) -> int:
        """Block size averaged before warping the layer into the model (>= 2 where it shrinks 2x or more)."""
        return max(1, int(math.floor(1 / self.scale + 1e-9)))

    @property
    def shrink_out(self) -> int:
        """Block size averaged before warping the model's image back into the layer."""
        return max(1, int(math.floor(self.scale + 1e-9)))

    def to_dict(self) -> dict:
        """A JSON-able record: framing, landmarks (or null), box, scale, the model image's corners, region."""
        return {"framing": self.framing,
                "landmarks": None if self.landmarks is None else {k: list(p) for k, p in self.landmarks},
                "box": self.box.to_dict(), "scale": float(self.scale),
                "quad": [list(p) for p in self.quad()], "region": self.region.to_dict(),
                "layer_size": list(self.layer_size), "model_size": list(self.model_size)}

    # ------------------------------------------------------------------ images and masks

    def _model_grid(self) -> np.ndarray:
        mh, mw = self.model_size
        ys, xs = np.mgrid[0:mh, 0:mw]
        return np.stack([xs, ys], -1).astype(np.float64)

    def _layer_window(self, shrink: int) -> Rect:
        """The region grown by enough pixels for the bicubic kernel after block averaging, clamped."""
        grow = 3 * shrink + 2
        r = self.region
        lh, lw = self.layer_size
        return Rect.from_box(max(r.x - grow, 0), max(r.y - grow, 0), min(r.right + grow, lw), min(r.bottom + grow, lh))

    def crop(self, layer) -> np.ndarray:
        """The region's pixels as uint8 RGBA [h, w, 4] (what to hash for an inversion's session key)."""
        return np.ascontiguousarray(_as_rgba(layer, self.layer_size)[self.region.slices])

    def crop_and_fit(self, layer) -> tuple[np.ndarray, np.ndarray]:
        """The layer as the model's input: (RGB uint8 [mh, mw, 3], valid float32 [mh, mw]).

        Bicubic on premultiplied colour (transparent pixels never bleed their colour), after averaging
        whole blocks where the warp shrinks 2x or more (antialiasing, as FFHQ's recipe shrinks first).

        `valid` is the warped alpha / 255: 0 where the model's image falls outside the layer or on
        transparent pixels, so those do not count in the inversion's loss. Pixels with no valid colour
        get the mean colour of the valid ones (they are ignored; a flat fill keeps previews calm).
        """
        rgba = _as_rgba(layer, self.layer_size)
        win = self._layer_window(self.shrink_in)
        sub = rgba[win.slices].astype(np.float32)
        alpha = sub[..., 3] / 255.0
        planes = np.concatenate([(sub[..., :3] * alpha[..., None]).transpose(2, 0, 1), alpha[None]], 0)
        src = self._to_layer(self._model_grid()) - (win.x, win.y)
        out = warp(planes, src, self.shrink_in, "bicubic", "zeros")
        a = np.clip(out[3], 0, 1)
        seen = a > 1e-3
        colour = np.clip(out[:3] / np.maximum(a, 1e-3), 0, 255)
        fill = (colour * a).sum((1, 2)) / max(float(a.sum()), 1e-6)
        rgb = np.where(seen[None], colour, fill[:, None, None]).transpose(1, 2, 0)
        valid = np.where(seen, a, 0).astype(np.float32)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), valid

    def mask_to_model(self, mask) -> np.ndarray:
        """A layer-size (or region-size) mask -> float32 [mh, mw] in 0..1; 0 where the model's image is
        off the layer. Soft edges survive (bilinear, block-averaged where it shrinks)."""
        m = self._layer_plane(mask)
        win = self._layer_window(self.shrink_in)
        src = self._to_layer(self._model_grid()) - (win.x, win.y)
        return np.clip(warp(m[win.slices][None], src, self.shrink_in, "bilinear", "zeros")[0], 0, 1).astype(np.float32)

    def mask_to_layer(self, model_mask) -> np.ndarray:
        """A model-size mask -> float32 layer-size mask in 0..1 (0 where the model's image does not reach)."""
        m = _as_unit_mask(model_mask)
        if m.shape != self.model_size:
            raise ValueError(f"mask must be the model's size {self.model_size}, got {m.shape}")
        out = np.zeros(self.layer_size, np.float32)
        plane = np.clip(self._model_to_region(m[None], "bilinear")[0], 0, 1)
        out[self.region.slices] = np.where(self.region_coverage(), plane, 0)
        return out

    def image_to_region(self, model_rgb) -> np.ndarray:
        """A model-size RGB image (uint8 [mh, mw, 3], or a generator tensor [1, 3, mh, mw] in [-1, 1])
        -> float32 [h, w, 3] over `region` (0..255, not rounded); meaningful where region_coverage is."""
        rgb = _as_rgb_float(model_rgb)
        if rgb.shape[:2] != self.model_size:
            raise ValueError(f"image must be the model's size {self.model_size}, got {rgb.shape[:2]}")
        return np.clip(self._model_to_region(rgb.transpose(2, 0, 1), "bicubic"), 0, 255).transpose(1, 2, 0)

    def _model_to_region(self, planes: np.ndarray, mode: str) -> np.ndarray:
        # Region-size output (up to the whole layer): single precision, ample for model coordinates
        # (a model is at most 8192 px, float32 resolves 1/1000 px there).
        src = np.stack(self._model_coords(self.region, np.float32), -1)
        return warp(planes.astype(np.float32), src, self.shrink_out, mode, "border", precise=False)

    def _layer_plane(self, mask) -> np.ndarray:
        m = _as_unit_mask(mask)
        if m.shape == self.layer_size:
            return m
        r = self.region
        if m.shape != (r.height, r.width):
            raise ValueError(f"mask must be the layer's {self.layer_size} or the region's {(r.height, r.width)} "
                             f"size (height, width), got {m.shape}")
        out = np.zeros(self.layer_size, np.float32)
        out[r.slices] = m
        return out


def warp(planes: np.ndarray, src_xy: np.ndarray, shrink: int = 1, mode: str = "bicubic",
         padding: str = "zeros", precise: bool = True) -> np.ndarray:
    """Sample planes [C, h, w] at the points src_xy [H, W, 2] ((x, y) in the planes' pixels, centres at
    integers): [C, H, W], float64 (precise: a whole-pixel shift copies values exactly) or float32
    (for large outputs).

    shrink > 1 first averages shrink x shrink blocks, so a warp that shrinks does not alias (padding
    beyond the planes: zeros, i.e. transparent for premultiplied layers, or the edge pixels for
    'border'). Beyond the planes a sample reads zeros or the border, as `padding` says.
    """
    t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    dtype = np.float64 if precise else np.float32
    src = np.asarray(src_xy, dtype=dtype)
    if shrink > 1:
        h, w = t.shape[-2:]
        pad = (0, (-w) % shrink, 0, (-h) % shrink)
        t = F.pad(t, pad, mode="constant" if padding == "zeros" else "replicate")
        t = F.avg_pool2d(t, shrink)
        src = (src + 0.5) / shrink - 0.5
    h, w = t.shape[-2:]
    grid = (src + 0.5) / np.array([w, h], dtype=dtype) * 2 - 1
    with torch.no_grad():
        out = F.grid_sample(t.double() if precise else t, torch.from_numpy(grid.astype(dtype))[None], mode=mode,
                            padding_mode=padding, align_corners=False)
    return out[0].numpy()


def _points_text(points: Sequence[Point]) -> str:
    return ", ".join(f"({x:.0f}, {y:.0f})" for x, y in points)


__all__ = ["Framing", "FFHQ", "CENTRE", "DEMO", "FRAMINGS", "LANDMARKS", "OrientedBox", "AlignedMapping",
           "box_from_landmarks", "warp", "MIN_BOX_SIDE", "MAX_BOX_FACTOR"]
