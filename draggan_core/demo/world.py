"""Procedural cartoon cat head: the training world of the embedded demo generator.

A drag only means something if the generator's latent space encodes movable parts,
so the demo generator is trained by regression on images rendered from an explicit
parameter vector. Every part (ear, eye, mouth) then has ground-truth geometry, and
benchmarks can ask `landmarks` where a part really is, or `fit_params` which
parameters explain an edited image.

Shapes are signed distance functions evaluated at pixel centres. Coverage is the
signed distance in pixels turned into a one-pixel ramp: that antialiases like a box
filter on straight edges and, unlike a supersampled rasteriser, keeps the image a
continuous function of the parameters, so small parameter steps never make pixels pop.

Conventions: image pixels with x to the right and y down; "left" and "right" parts
are the image-left and image-right ones (the viewer's, not the animal's). Shapes
live in a head frame whose unit is the head radius, y down, before head tilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

Point = tuple[float, float]
Window = tuple[slice, slice]

# name -> (value at 0, value at 1, meaning). Normalised parameters map linearly.
PARAM_RANGES: dict[str, tuple[float, float, str]] = {
    "head_x": (0.45, 0.55, "head centre x, fraction of image width"),
    "head_y": (0.56, 0.62, "head centre y, fraction of image height"),
    "head_size": (0.21, 0.245, "head radius, fraction of image size"),
    "head_yaw": (-0.4, 0.4, "head turn in radians; positive turns the face to image right"),
    "head_tilt": (-0.25, 0.25, "in-plane head roll in radians; positive is clockwise"),
    "left_ear_angle": (0.8, 0.0, "outward lean of the left ear in radians (0 = upright)"),
    "left_ear_length": (0.4, 0.8, "left ear length beyond its pivot, head radii"),
    "right_ear_angle": (0.8, 0.0, "outward lean of the right ear in radians (0 = upright)"),
    "right_ear_length": (0.4, 0.8, "right ear length beyond its pivot, head radii"),
    "left_eye_open": (0.0, 1.0, "left eyelid opening (0 = closed line, 1 = fully open)"),
    "right_eye_open": (0.0, 1.0, "right eyelid opening (0 = closed line, 1 = fully open)"),
    "gaze_x": (-1.0, 1.0, "pupil offset, fraction of its horizontal travel (+ = image right)"),
    "gaze_y": (-1.0, 1.0, "pupil offset, fraction of its vertical travel (+ = down)"),
    "mouth_open": (0.0, 0.32, "mouth opening height, head radii"),
    "tongue": (0.0, 0.24, "tongue length below the lower lip, head radii"),
    "fur_hue": (0.0, 1.0, "position along the fur palette grey > ginger > brown > cream"),
    "fur_light": (0.7, 1.1, "fur brightness factor"),
    "inner_ear_hue": (0.0, 1.0, "position along the inner-ear palette rose > pink > peach"),
    "iris_hue": (0.0, 1.0, "position along the iris palette green > yellow > amber > blue"),
    "bg_hue_top": (0.0, 1.0, "hue of the background's top colour, in turns"),
    "bg_hue_bottom": (0.0, 1.0, "hue of the background's bottom colour, in turns"),
    "bg_light": (0.72, 1.0, "background brightness"),
}
PARAM_NAMES: tuple[str, ...] = tuple(PARAM_RANGES)
NUM_PARAMS: int = len(PARAM_NAMES)
_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}

FUR_PALETTE = np.array(
    [[0.56, 0.58, 0.64], [0.95, 0.58, 0.24], [0.58, 0.38, 0.24], [0.96, 0.86, 0.68]], np.float32
)
INNER_EAR_PALETTE = np.array([[0.90, 0.52, 0.60], [1.00, 0.72, 0.78], [1.00, 0.76, 0.60]], np.float32)
IRIS_PALETTE = np.array(
    [[0.45, 0.78, 0.35], [0.93, 0.85, 0.30], [0.95, 0.60, 0.18], [0.40, 0.68, 0.95]], np.float32
)
NOSE_COLOUR = np.array([0.86, 0.42, 0.50], np.float32)
MOUTH_COLOUR = np.array([0.36, 0.10, 0.14], np.float32)
TONGUE_COLOUR = np.array([0.96, 0.48, 0.56], np.float32)
PUPIL_COLOUR = np.array([0.06, 0.05, 0.07], np.float32)
WHITE = np.array([1.0, 1.0, 1.0], np.float32)
CREAM = np.array([1.0, 0.97, 0.92], np.float32)

# Fixed shape constants, in head radii.
HEAD_RX, HEAD_RY = 1.0, 0.84
CHEEK_Y, CHEEK_RX, CHEEK_RY = 0.3, 1.1, 0.55
OUTLINE = 0.045
EAR_THETA, EAR_RADIUS, EAR_HALF_WIDTH = 0.72, 0.8, 0.36
EYE_THETA, EYE_Y, EYE_RX, EYE_RY = 0.44, -0.02, 0.21, 0.25
NOSE_Y, NOSE_HALF_WIDTH, NOSE_HEIGHT = 0.27, 0.085, 0.075
MOUTH_Y, LIP_RADIUS = 0.38, 0.085
PAD_THETA, PAD_Y, PAD_RADIUS = 0.2, 0.44, 0.19


# ---------------------------------------------------------------- parameters


def physical(params: np.ndarray) -> dict[str, float]:
    """Normalised [0, 1] vector -> physical values, per PARAM_RANGES."""
    return {
        name: lo + float(p) * (hi - lo)
        for (name, (lo, hi, _)), p in zip(PARAM_RANGES.items(), np.asarray(params))
    }


def sample_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """Independent uniform draws, so training covers every edit direction evenly."""
    return rng.random((n, NUM_PARAMS), dtype=np.float32)


def set_param(params: np.ndarray, name: str, value: float) -> np.ndarray:
    """Copy of `params` with one named entry replaced; keeps callers off raw indices."""
    out = np.array(params, dtype=np.float32, copy=True)
    out[_INDEX[name]] = value
    return out


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Pose:
    """Where the head frame sits in the image (normalised 0..1 coordinates)."""

    cx: float
    cy: float
    radius: float
    cos: float
    sin: float

    def to_image(self, point: Point) -> Point:
        u, v = point
        return (
            self.cx + self.radius * (self.cos * u - self.sin * v),
            self.cy + self.radius * (self.sin * u + self.cos * v),
        )


@dataclass(frozen=True)
class Ear:
    tip: Point
    base_a: Point
    base_b: Point
    inner_tip: Point
    inner_a: Point
    inner_b: Point


@dataclass(frozen=True)
class Eye:
    center: Point
    rx: float
    ry: float  # current eyelid opening; 0 when closed
    pupil: Point


@dataclass(frozen=True)
class Mouth:
    top: Point  # where the two upper-lip arcs meet, under the nose
    lip_rx: float  # horizontal radius of each upper-lip arc
    lip_bottom: float  # y of the arcs' lowest points, where the opening starts
    bottom: Point  # lowest point of the opening; at lip_bottom when closed
    rx: float  # half-width of the opening
    tongue_top: float
    tongue_tip: Point


@dataclass(frozen=True)
class Geometry:
    """Every shape the renderer draws, in head-frame coordinates; also feeds `landmarks`."""

    pose: Pose
    yaw: float
    ears: tuple[Ear, Ear]
    eyes: tuple[Eye, Eye]
    nose: Point
    nose_half_width: float
    mouth: Mouth
    pads: tuple[Point, Point]
    pad_rx: float
    whiskers: tuple[tuple[Point, Point], ...]
    chin: Point


def _project(theta: float, yaw: float, radius: float = 1.0) -> tuple[float, float]:
    """Sideways position and width squash of a face feature at longitude theta.

    The face is treated as a sphere seen from the front: turning the head moves a
    feature along sin(theta + yaw) and foreshortens it by cos(theta + yaw).
    """
    angle = theta + yaw
    squash = min(max(math.cos(angle) / math.cos(theta), 0.25), 1.2)
    return radius * math.sin(angle), squash


def _sunk(x: float) -> np.ndarray:
    """A point below the head's top edge at x, deep enough for the head to hide it."""
    x = min(max(x, -0.95 * HEAD_RX), 0.95 * HEAD_RX)
    return np.array([x, -0.75 * HEAD_RY * math.sqrt(1.0 - (x / HEAD_RX) ** 2)])


def _box(left: float, top: float, right: float, bottom: float) -> list[Point]:
    """All four corners, so the box still bounds its contents after the head's tilt."""
    return [(left, top), (right, top), (left, bottom), (right, bottom)]


def _as_point(vector: np.ndarray) -> Point:
    return float(vector[0]), float(vector[1])


def _ear(side: float, lean: float, length: float, yaw: float) -> Ear:
    """A triangle whose base stays planted in the head while the tip swings: ears bend, they do not slide."""
    x, squash = _project(side * EAR_THETA, yaw, EAR_RADIUS)
    half = EAR_HALF_WIDTH * squash
    pivot = _sunk(x)
    tip = pivot + (length + 0.25) * np.array([side * math.sin(lean), -math.cos(lean)])
    inner_tip = pivot + 0.8 * (tip - pivot)
    inner_a, inner_b = (
        corner + 0.12 * (inner_tip - corner) for corner in (_sunk(x - 0.55 * half), _sunk(x + 0.55 * half))
    )
    return Ear(
        tip=_as_point(tip),
        base_a=_as_point(_sunk(x - half)),
        base_b=_as_point(_sunk(x + half)),
        inner_tip=_as_point(inner_tip),
        inner_a=_as_point(inner_a),
        inner_b=_as_point(inner_b),
    )


def _eye(side: float, opening: float, gaze: Point, yaw: float) -> Eye:
    x, squash = _project(side * EYE_THETA, yaw, 0.95)
    rx = EYE_RX * squash
    pupil = (x + gaze[0] * 0.45 * rx + 0.3 * EYE_RX * math.sin(yaw), EYE_Y + gaze[1] * 0.35 * EYE_RY)
    return Eye(center=(x, EYE_Y), rx=rx, ry=EYE_RY * opening, pupil=pupil)


def _mouth(x: float, squash: float, opening: float, tongue: float) -> Mouth:
    lip_bottom = MOUTH_Y + 0.8 * LIP_RADIUS
    bottom = lip_bottom + opening
    return Mouth(
        top=(x, MOUTH_Y),
        lip_rx=LIP_RADIUS * squash,
        lip_bottom=lip_bottom,
        bottom=(x, bottom),
        rx=(0.12 + 0.5 * opening) * squash,
        tongue_top=lip_bottom + 0.5 * opening,
        tongue_tip=(x, bottom + tongue - 0.03),
    )


def _whiskers(pads: tuple[Point, Point]) -> tuple[tuple[Point, Point], ...]:
    return tuple(
        ((x + side * 0.1, PAD_Y + dy), (x + side * 0.75, PAD_Y + 2.2 * dy - 0.04))
        for side, (x, _) in zip((-1.0, 1.0), pads)
        for dy in (-0.06, 0.0, 0.06)
    )


def geometry(params: np.ndarray) -> Geometry:
    """The one place where parameters become shapes, shared by `render` and `landmarks`."""
    p = physical(np.clip(np.asarray(params, dtype=np.float32), 0.0, 1.0))
    yaw, tilt = p["head_yaw"], p["head_tilt"]
    mid_x, mid_squash = _project(0.0, yaw, 1.05)
    gaze = (p["gaze_x"], p["gaze_y"])
    pads = (_project(-PAD_THETA, yaw)[0], PAD_Y), (_project(PAD_THETA, yaw)[0], PAD_Y)
    return Geometry(
        pose=Pose(p["head_x"], p["head_y"], p["head_size"], math.cos(tilt), math.sin(tilt)),
        yaw=yaw,
        ears=(
            _ear(-1.0, p["left_ear_angle"], p["left_ear_length"], yaw),
            _ear(1.0, p["right_ear_angle"], p["right_ear_length"], yaw),
        ),
        eyes=(_eye(-1.0, p["left_eye_open"], gaze, yaw), _eye(1.0, p["right_eye_open"], gaze, yaw)),
        nose=(_project(0.0, yaw, 1.12)[0], NOSE_Y),
        nose_half_width=NOSE_HALF_WIDTH * mid_squash,
        mouth=_mouth(mid_x, mid_squash, p["mouth_open"], p["tongue"]),
        pads=pads,
        pad_rx=PAD_RADIUS * mid_squash,
        whiskers=_whiskers(pads),
        chin=(0.25 * math.sin(yaw), CHEEK_Y + CHEEK_RY),
    )


def landmarks(params: np.ndarray, size: int = 128) -> dict[str, Point]:
    """Image-pixel positions (x right, y down) of semantic points, from the render geometry.

    Continuous coordinates: pixel column j spans [j, j + 1), so its centre is j + 0.5.
    Eyes are the eye centres (the pupils move with gaze on their own; they are hidden
    when the eye is nearly closed); `tongue_tip` hangs below the lip only when the
    tongue parameter is above zero. `mouth_left` and `mouth_right` are the mouth's
    corners, the outer ends of the two upper-lip arcs: they do not move when the mouth
    opens, so with the eyes they frame a face the way FFHQ's alignment recipe does
    (draggan_core.alignment, the demo framing).
    """
    g = geometry(params)
    points = {
        "head_center": (0.0, 0.0),
        "left_ear_tip": g.ears[0].tip,
        "right_ear_tip": g.ears[1].tip,
        "left_eye": g.eyes[0].center,
        "right_eye": g.eyes[1].center,
        "left_pupil": g.eyes[0].pupil,
        "right_pupil": g.eyes[1].pupil,
        "nose": g.nose,
        "mouth_top": g.mouth.top,
        "mouth_bottom": g.mouth.bottom,
        "mouth_left": (g.mouth.top[0] - 2.0 * g.mouth.lip_rx, MOUTH_Y),
        "mouth_right": (g.mouth.top[0] + 2.0 * g.mouth.lip_rx, MOUTH_Y),
        "tongue_tip": g.mouth.tongue_tip,
        "chin": g.chin,
    }
    pixels = {}
    for name, point in points.items():
        x, y = g.pose.to_image(point)
        pixels[name] = (x * size, y * size)
    return pixels


# ---------------------------------------------------------------- signed distances
# In head radii, negative inside. They only need to be accurate near the boundary,
# which is all the one-pixel coverage ramp reads.


def _ellipse(u: np.ndarray, v: np.ndarray, center: Point, rx: float, ry: float) -> np.ndarray:
    """First-order ellipse distance; stays right for very flat ellipses (a closing eye)."""
    x = (u - center[0]) * (1.0 / rx)
    y = (v - center[1]) * (1.0 / ry)
    k0 = np.hypot(x, y)
    k1 = np.hypot(x * (1.0 / rx), y * (1.0 / ry))
    k1 += 1e-6 / min(rx, ry)  # keeps the centre pixel inside instead of 0/0
    return (k0 - 1.0) * (k0 + 1e-6) / k1


def _circle(u: np.ndarray, v: np.ndarray, center: Point, radius: float) -> np.ndarray:
    return np.hypot(u - center[0], v - center[1]) - radius


def _triangle(u: np.ndarray, v: np.ndarray, a: Point, b: Point, c: Point) -> np.ndarray:
    """Exact distance: the edge half-planes inside, the nearest edge segment outside.

    Half-planes alone would let the coverage ramp and the outline run on past a
    sharp ear tip for several pixels.
    """
    flip = -1.0 if (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) < 0 else 1.0
    planes = outside = None
    for (x0, y0), (x1, y1) in ((a, b), (b, c), (c, a)):
        scale = flip / math.hypot(x1 - x0, y1 - y0)
        plane = (u - x0) * ((y1 - y0) * scale) + (v - y0) * ((x0 - x1) * scale)
        edge = _segment(u, v, (x0, y0), (x1, y1), 0.0)
        planes = plane if planes is None else np.maximum(planes, plane)
        outside = edge if outside is None else np.minimum(outside, edge)
    return np.where(planes > 0.0, outside, planes)


def _segment(u: np.ndarray, v: np.ndarray, a: Point, b: Point, half_width: float) -> np.ndarray:
    bx, by = b[0] - a[0], b[1] - a[1]
    du, dv = u - a[0], v - a[1]
    h = _unit(du * (bx / (bx * bx + by * by)) + dv * (by / (bx * bx + by * by)))
    return np.hypot(du - bx * h, dv - by * h) - half_width


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union with a rounded crease, so ears grow out of the head without a notch."""
    h = _unit((b - a) * (0.5 / k) + 0.5)
    return b + (a - b) * h - k * h * (1.0 - h)


def _unit(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] in place (np.clip's wrapper costs more than the work on small arrays)."""
    return np.minimum(np.maximum(x, 0.0, out=x), 1.0, out=x)


def _head(u: np.ndarray, v: np.ndarray, yaw: float) -> np.ndarray:
    cheeks = _ellipse(u, v, (0.08 * math.sin(yaw), CHEEK_Y), CHEEK_RX, CHEEK_RY)
    return _smooth_union(_ellipse(u, v, (0.0, 0.0), HEAD_RX, HEAD_RY), cheeks, 0.12)


# ---------------------------------------------------------------- rasterising

FAR = np.float32(1e3)  # distance meaning "no shape here" outside every evaluated window
HEAD_BOX = _box(-CHEEK_RX, -HEAD_RY, CHEEK_RX, CHEEK_Y + CHEEK_RY)


class Canvas:
    """Planar float RGB image [3, H, W] plus every pixel centre in head-frame coordinates.

    Planar because numpy is slow on a trailing axis of length 3.
    """

    def __init__(self, pose: Pose, size: int, background: np.ndarray) -> None:
        self.pose = pose
        self.size = size
        self.image = background
        self.pixels_per_unit = pose.radius * size
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        dx = (centres - pose.cx)[None, :]
        dy = (centres - pose.cy)[:, None]
        self.u = (pose.cos * dx + pose.sin * dy) / pose.radius
        self.v = (pose.cos * dy - pose.sin * dx) / pose.radius

    def window(self, points: list[Point], margin: float) -> Window:
        """Pixel box around head-frame points, grown by `margin` head radii plus the antialiasing ramp.

        Each part is evaluated only inside its own box; that is what keeps a frame
        within a couple of milliseconds.
        """
        corners = [self.pose.to_image(point) for point in points]
        grow = margin * self.pose.radius + 1.5 / self.size

        def span(values: list[float]) -> slice:
            start = math.floor((min(values) - grow) * self.size)
            stop = math.floor((max(values) + grow) * self.size) + 1
            return slice(min(max(start, 0), self.size), min(max(stop, 0), self.size))

        return span([y for _, y in corners]), span([x for x, _ in corners])

    def coords(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        return self.u[window], self.v[window]

    def paint(self, window: Window, distance: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
        coverage = distance * np.float32(-self.pixels_per_unit)
        coverage += np.float32(0.5)
        _unit(coverage)
        if alpha != 1.0:
            coverage *= np.float32(alpha)
        patch = self.image[(slice(None),) + window]
        patch += coverage * (colour[:, None, None] - patch)

    def to_uint8(self) -> np.ndarray:
        """Planar float -> interleaved bytes, one channel at a time (fast strided copies)."""
        planes = self.image * np.float32(255.0)
        planes += np.float32(0.5)
        np.minimum(np.maximum(planes, 0.0, out=planes), 255.0, out=planes)
        out = np.empty((self.size, self.size, 3), np.uint8)
        for channel in range(3):
            out[..., channel] = planes[channel]
        return out


def _palette(palette: np.ndarray, position: float) -> np.ndarray:
    """Piecewise-linear walk along a palette, continuous in `position`."""
    scaled = position * (len(palette) - 1)
    i = min(int(scaled), len(palette) - 2)
    return palette[i] + (scaled - i) * (palette[i + 1] - palette[i])


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    """HSV -> RGB; periodic in hue, so the background never jumps at hue 0 = 1."""
    channel = np.mod(hue * 6.0 + np.array([5.0, 3.0, 1.0]), 6.0)
    ramp = np.clip(np.minimum(channel, 4.0 - channel), 0.0, 1.0)
    return (value * (1.0 - saturation * ramp)).astype(np.float32)


def _background(p: dict[str, float], size: int) -> np.ndarray:
    top = _hsv(p["bg_hue_top"], 0.35, p["bg_light"])
    bottom = _hsv(p["bg_hue_bottom"], 0.45, p["bg_light"] * 0.9)
    t = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :, None]
    column = top[:, None, None] + t * (bottom - top)[:, None, None]
    return np.ascontiguousarray(np.broadcast_to(column, (3, size, size)))


def _draw_silhouette(canvas: Canvas, g: Geometry, fur: np.ndarray, inner_colour: np.ndarray) -> None:
    """Head and ears as one outlined shape: a cartoon draws no line where an ear meets the head."""
    body = np.full((canvas.size, canvas.size), FAR, np.float32)
    head_window = canvas.window(HEAD_BOX, 0.3)
    body[head_window] = _head(*canvas.coords(head_window), g.yaw)
    for ear in g.ears:
        window = canvas.window([ear.tip, ear.base_a, ear.base_b], 0.1)
        triangle = _triangle(*canvas.coords(window), ear.tip, ear.base_a, ear.base_b)
        body[window] = _smooth_union(body[window], triangle, 0.08)
    ear_corners = [point for ear in g.ears for point in (ear.tip, ear.base_a, ear.base_b)]
    whole = canvas.window(HEAD_BOX + ear_corners, 0.1)
    canvas.paint(whole, body[whole] - OUTLINE, fur * 0.42)
    canvas.paint(whole, body[whole], fur)
    for ear in g.ears:
        window = canvas.window([ear.inner_tip, ear.inner_a, ear.inner_b], 0.05)
        u, v = canvas.coords(window)
        inner = _triangle(u, v, ear.inner_tip, ear.inner_a, ear.inner_b)
        canvas.paint(window, np.maximum(inner, -0.02 - _head(u, v, g.yaw)), inner_colour)


def _draw_muzzle(canvas: Canvas, g: Geometry, fur: np.ndarray) -> None:
    pad_ry = PAD_RADIUS * 0.85
    (left, y), (right, _) = g.pads
    window = canvas.window(_box(left - g.pad_rx, y - pad_ry, right + g.pad_rx, y + pad_ry), 0.0)
    u, v = canvas.coords(window)
    pads = np.minimum(*(_ellipse(u, v, pad, g.pad_rx, pad_ry) for pad in g.pads))
    canvas.paint(window, pads, fur + 0.65 * (CREAM - fur))
    for side in range(2):
        strokes = g.whiskers[3 * side : 3 * side + 3]
        window = canvas.window([point for stroke in strokes for point in stroke], 0.02)
        u, v = canvas.coords(window)
        whiskers = np.minimum.reduce([_segment(u, v, a, b, 0.012) for a, b in strokes])
        canvas.paint(window, whiskers, fur * 0.3, 0.8)


def _draw_eye(canvas: Canvas, eye: Eye, iris: np.ndarray, fur: np.ndarray) -> None:
    x, y = eye.center
    reach_x, reach_y = eye.rx + OUTLINE, max(eye.ry, EYE_RY) + OUTLINE
    window = canvas.window(_box(x - reach_x, y - reach_y, x + reach_x, y + reach_y), 0.0)
    u, v = canvas.coords(window)
    canvas.paint(window, _ellipse(u, v, eye.center, eye.rx + OUTLINE, eye.ry + OUTLINE), fur * 0.25)
    # A one-pixel ramp would still show half a pixel of a zero-height eyeball, so
    # thin eyeballs fade with their height in pixels.
    fade = min(1.0, 2.0 * eye.ry * canvas.pixels_per_unit)
    ball = _ellipse(u, v, eye.center, eye.rx, max(eye.ry, 1e-4))
    canvas.paint(window, ball, iris, fade)
    pupil = _ellipse(u, v, eye.pupil, eye.rx * 0.55, EYE_RY * 0.8)
    canvas.paint(window, np.maximum(pupil, ball), PUPIL_COLOUR, fade)
    glint = _circle(u, v, (eye.pupil[0] + 0.35 * eye.rx, eye.pupil[1] - 0.35 * EYE_RY), 0.045)
    canvas.paint(window, np.maximum(glint, ball), WHITE, fade)


def _draw_mouth(canvas: Canvas, g: Geometry, fur: np.ndarray) -> None:
    """Dark opening, tongue hanging over the lower lip, the two upper-lip arcs, then the nose."""
    m = g.mouth
    mx, top = m.top
    bottom = m.bottom[1]
    reach = max(m.rx, 2.0 * m.lip_rx)
    left, right = min(mx, g.nose[0]) - reach, max(mx, g.nose[0]) + reach
    window = canvas.window(_box(left, NOSE_Y - NOSE_HEIGHT, right, m.tongue_tip[1] + 0.03), 0.05)
    u, v = canvas.coords(window)
    half_height = (bottom - m.lip_bottom) * 0.5 + 0.02
    inside = _ellipse(u, v, (mx, m.lip_bottom + half_height - 0.04), m.rx, half_height)
    inside = np.maximum(inside, top + 0.02 - v)
    canvas.paint(window, inside, MOUTH_COLOUR)
    tongue_ry = max(m.tongue_tip[1] - m.tongue_top, 0.0) * 0.5 + 0.02
    tongue = _ellipse(u, v, (mx, (m.tongue_top + m.tongue_tip[1]) * 0.5), m.lip_rx * 1.1, tongue_ry)
    below_lip = bottom - 0.015 - v
    canvas.paint(window, np.maximum(tongue, np.minimum(inside, below_lip)), TONGUE_COLOUR)
    line = fur * 0.25
    for side in (-1.0, 1.0):
        x = (u - mx - side * m.lip_rx) * (LIP_RADIUS / m.lip_rx)
        lip = np.maximum(np.abs(np.hypot(x, v - top) - LIP_RADIUS) - 0.018, top - v)
        canvas.paint(window, lip, line)
    canvas.paint(window, _segment(u, v, (g.nose[0], NOSE_Y), (mx, top), 0.016), line)
    nose = _triangle(
        u,
        v,
        (g.nose[0] - g.nose_half_width, NOSE_Y - NOSE_HEIGHT * 0.5),
        (g.nose[0] + g.nose_half_width, NOSE_Y - NOSE_HEIGHT * 0.5),
        (g.nose[0], NOSE_Y + NOSE_HEIGHT * 0.5),
    )
    canvas.paint(window, nose - 0.015, NOSE_COLOUR)


def render(params: np.ndarray, size: int = 128) -> np.ndarray:
    """Parameters [NUM_PARAMS] (clamped to [0, 1]) -> uint8 RGB image [size, size, 3]."""
    params = np.clip(np.asarray(params, dtype=np.float32), 0.0, 1.0)
    p = physical(params)
    g = geometry(params)
    fur = np.clip(_palette(FUR_PALETTE, p["fur_hue"]) * p["fur_light"], 0.0, 1.0)
    canvas = Canvas(g.pose, size, _background(p, size))
    _draw_silhouette(canvas, g, fur, _palette(INNER_EAR_PALETTE, p["inner_ear_hue"]))
    _draw_muzzle(canvas, g, fur)
    iris = _palette(IRIS_PALETTE, p["iris_hue"])
    for eye in g.eyes:
        _draw_eye(canvas, eye, iris, fur)
    _draw_mouth(canvas, g, fur)
    return canvas.to_uint8()


def render_batch(params: np.ndarray, size: int = 128) -> np.ndarray:
    """[n, NUM_PARAMS] -> uint8 [n, size, size, 3]."""
    params = np.asarray(params, dtype=np.float32)
    out = np.empty((len(params), size, size, 3), np.uint8)
    for i, row in enumerate(params):
        out[i] = render(row, size)
    return out


# ---------------------------------------------------------------- fitting
# Recovers parameters from an image by minimising the mean squared pixel error at
# 64 px, so benchmarks can ask where a drag really moved a part. One-parameter grid
# passes (global line searches) escape the local minima a plain descent falls into,
# such as a head turned the wrong way; a Hooke-Jeeves pattern search with shrinking
# steps then polishes all parameters together.

FIT_SIZE = 64
_GRID = np.linspace(0.0, 1.0, 9, dtype=np.float32)
COLOUR_PARAMS = (
    "fur_hue", "fur_light", "inner_ear_hue", "iris_hue", "bg_hue_top", "bg_hue_bottom", "bg_light"
)
_SHAPE_INDEX = np.array([i for i, name in enumerate(PARAM_NAMES) if name not in COLOUR_PARAMS])
_ALL_INDEX = np.arange(NUM_PARAMS)
_CYCLIC = [name in ("bg_hue_top", "bg_hue_bottom") for name in PARAM_NAMES]  # hue 1 is hue 0


def _shrink(image: np.ndarray, size: int) -> np.ndarray:
    """Box-filtered downscale: the same area averaging the coverage ramp approximates."""
    if image.shape[0] != size:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BOX))
    return image.astype(np.float32)


def _error(params: np.ndarray, target: np.ndarray) -> float:
    difference = render(params, target.shape[0]).astype(np.float32) - target
    return float(np.mean(difference * difference))


def _grid_sweep(
    params: np.ndarray, error: float, target: np.ndarray, indices: np.ndarray = _ALL_INDEX
) -> tuple[np.ndarray, float]:
    """Tries every grid value of each parameter in turn, keeping the best: a global line search."""
    for i in indices:
        for value in _GRID:
            trial = params.copy()
            trial[i] = value
            trial_error = _error(trial, target)
            if trial_error < error:
                params, error = trial, trial_error
    return params, error


def _explore(params: np.ndarray, error: float, target: np.ndarray, step: float) -> tuple[np.ndarray, float]:
    """One step up or down per parameter, keeping whatever lowers the error."""
    for i in range(NUM_PARAMS):
        for delta in (step, -step):
            trial = params.copy()
            value = trial[i] + delta
            trial[i] = value % 1.0 if _CYCLIC[i] else min(max(value, 0.0), 1.0)
            if trial[i] == params[i]:
                continue
            trial_error = _error(trial, target)
            if trial_error < error:
                params, error = trial, trial_error
                break
    return params, error


def _pattern_search(
    params: np.ndarray, target: np.ndarray, step_sizes: list[float], sweeps: int = 4
) -> tuple[np.ndarray, float]:
    """Hooke-Jeeves search: after each improving sweep, also try repeating the whole move.

    The repeated move follows diagonal valleys (head shift against head turn, fur
    hue against brightness) that one-parameter steps only zig-zag along.
    """
    error = _error(params, target)
    for step in step_sizes:
        for _ in range(sweeps):
            moved, moved_error = _explore(params, error, target, step)
            if moved_error >= error:
                break
            ahead = np.clip(2.0 * moved - params, 0.0, 1.0)
            ahead_error = _error(ahead, target)
            params, error = (ahead, ahead_error) if ahead_error < moved_error else (moved, moved_error)
    return params, error


def fit_params(
    image: np.ndarray, init: np.ndarray | None = None, steps: int = 5, starts: int = 3, seed: int = 0
) -> np.ndarray:
    """Parameters whose render best matches a uint8 RGB `image` (any square size).

    `init` replaces the neutral starting point (a close one is kept); `steps` is the
    number of halvings of the final search step (finest = 0.06 / 2**(steps-1)).
    Deterministic for a given seed; about 2-4 s on one core.
    """
    target = _shrink(image, FIT_SIZE)
    # Colours dominate the pixel error, so settle them on a neutral head first;
    # candidate poses are then ranked by how well their shapes match.
    start = np.full(NUM_PARAMS, 0.5, np.float32) if init is None else np.asarray(init, np.float32)
    start = np.clip(start, 0.0, 1.0)
    start, _ = _grid_sweep(start, _error(start, target), target)
    candidates = np.repeat(start[None], 48, axis=0)
    rng = np.random.default_rng(seed)
    candidates[:, _SHAPE_INDEX] = rng.random((len(candidates), len(_SHAPE_INDEX)), dtype=np.float32)
    ranked = sorted([start, *candidates], key=lambda params: _error(params, target))
    best, best_error = None, math.inf
    for params in ranked[:starts]:
        params, _ = _grid_sweep(params, _error(params, target), target, _SHAPE_INDEX)
        params, error = _pattern_search(params, target, [0.25, 0.12, 0.06], sweeps=3)
        if error < best_error:
            best, best_error = params, error
    best, best_error = _grid_sweep(best, best_error, target)
    return _pattern_search(best, target, [0.06 / 2**k for k in range(steps)])[0]
