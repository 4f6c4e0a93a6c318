"""Request parsing: JSON bodies, base64 PNGs and points, each checked against the daemon's limits.

Everything a client sends passes through here before it reaches the model, and anything wrong
ends as a 400 (or 413/415) that names the field and the rule, never as a 500 from deep inside.
PNG sizes are read from the header and checked (a mask's against its session too) before any
pixel is decoded, so a small file that would decompress to gigabytes is refused cheaply, and a
decode first reserves its memory in the daemon's decode budget (503 busy while that is full).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from typing import Any

from PIL import Image

from draggan_core.alignment import LANDMARKS, MAX_BOX_FACTOR, MIN_BOX_SIDE
from draggan_core.presets import DEFAULT as DEFAULT_PRESET, PRESETS

from . import pngread
from .budget import DecodeBudget
from .config import Limits
from .errors import ApiError, bad_request, short
from .geometry import LayerMapping, Mapping, Point

def parse_json(data: bytes, content_type: str | None) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is an empty object."""
    if not data:
        return {}
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    try:
        body = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise bad_request(f"the body is not valid JSON: {str(e)[:200]}", "bad_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "bad_json")
    return body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def check_fields(body: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    """Unknown fields are refused, so a misspelt option is an error rather than silently ignored.
    A field given as null counts as absent (its default applies)."""
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise bad_request(f"unknown field {short(unknown[0])}; allowed fields: {', '.join(allowed)}", "unknown_field")
    missing = [k for k in required if body.get(k) is None]
    if missing:
        raise bad_request(f"missing required field '{missing[0]}'", "missing_field")


def integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{key}' must be an integer, got {short(value)}")
    if not low <= value <= high:
        raise bad_request(f"'{key}' must be between {low} and {high}, got {short(value)}", "out_of_range")
    return value


def number(body: dict[str, Any], key: str, default: float | None, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return default
    x = finite(value)
    if x is None:
        raise bad_request(f"'{key}' must be a finite number, got {short(value)}")
    if not low <= x <= high:
        raise bad_request(f"'{key}' must be between {low:g} and {high:g}, got {x:g}", "out_of_range")
    return x


def finite(value: Any) -> float | None:
    """value as a finite float; None for anything else (booleans, text, NaN, inf, ints beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"'{key}' must be a string, got {short(value)}")
    return value


def png_file(body: dict[str, Any], key: str, limits: Limits) -> pngread.PngFile:
    """A base64 PNG field with its structure checked and its header read; nothing decoded yet."""
    value = body.get(key)
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be a base64-encoded PNG string", "bad_png")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"'{key}' is not valid base64", "bad_png") from None
    return pngread.read(key, data, limits.max_png_chunks)


def decoded(found: pngread.PngFile, mode: str, budget: DecodeBudget | None) -> Image.Image:
    """The PNG's pixels in `mode` ('RGBA' or 'L'), its memory reserved in the daemon's decode budget
    first (None: no budget, for parsing outside a daemon)."""
    if budget is not None:
        budget.reserve(found.decode_bytes(mode))
    try:
        return pngread.decode(found, mode)
    except Image.DecompressionBombError:  # only when the limits allow more pixels than Pillow does
        raise bad_request(f"'{found.key}' has more pixels than the image library decodes", "image_too_large") from None


def check_image_size(key: str, size: tuple[int, int], limits: Limits) -> None:
    width, height = size
    if width < 1 or height < 1 or width > limits.max_side or height > limits.max_side \
            or width * height > limits.max_pixels:
        raise bad_request(f"'{key}' is {width}x{height}; the daemon accepts at most {limits.max_side} px per side "
                          f"and {limits.max_pixels} pixels", "image_too_large")


def points(body: dict[str, Any], key: str, limits: Limits) -> list[Point]:
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise bad_request(f"'{key}' must be a non-empty list of [x, y] pairs", "bad_points")
    if len(value) > limits.max_points:
        raise bad_request(f"'{key}' has {len(value)} points; at most {limits.max_points} are allowed", "too_many_points")
    out = []
    for i, p in enumerate(value):
        xy = [finite(v) for v in p] if isinstance(p, list) and len(p) == 2 else [None]
        if None in xy:
            raise bad_request(f"'{key}[{i}]' must be [x, y] with finite numbers, got {short(p)}", "bad_points")
        out.append((xy[0], xy[1]))
    return out


def points_inside(key: str, pts: list[Point], mapping: Mapping | LayerMapping) -> None:
    for i, p in enumerate(pts):
        if not mapping.contains(p):
            bounds = mapping.describe_bounds() if isinstance(mapping, LayerMapping) else \
                f"the {mapping.width}x{mapping.height} image (x from 0 to {mapping.width - 1}, " \
                f"y from 0 to {mapping.height - 1})"
            raise bad_request(f"'{key}[{i}]' ({p[0]:g}, {p[1]:g}) is outside {bounds}", "point_outside")


# ----------------------------------------------------------------------------- requests

@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    model: str | None
    seed: int
    psi: float


def parse_generate(body: dict[str, Any]) -> GenerateRequest:
    check_fields(body, ("model", "seed", "psi"), required=("seed",))
    return GenerateRequest(text(body, "model"), integer(body, "seed", None, 0, 2 ** 32 - 1),
                           number(body, "psi", 0.7, -1.0, 2.0))


@dataclasses.dataclass(frozen=True)
class InvertRequest:
    """Inversion settings; None: the daemon's default for the model and device (editing.invert_config)."""
    steps_w: int | None
    steps_wplus: int | None  # 0 skips the W+ stage
    steps_pti: int | None  # 0 skips pivotal tuning
    pti: bool
    preview_every: int


INVERT_FIELDS = ("steps_w", "steps_wplus", "steps_pti", "pti", "preview_every")


@dataclasses.dataclass(frozen=True)
class BoxRequest:
    """An oriented box in layer pixels (draggan_core.alignment.OrientedBox); height None: the model's aspect."""
    center: Point
    width: float
    height: float | None
    angle: float  # degrees, clockwise on screen


@dataclasses.dataclass(frozen=True)
class AlignRequest:
    """How to frame a real layer the way the model was trained: four landmarks or a box (one is None)."""
    landmarks: dict[str, Point] | None  # left_eye, right_eye, mouth_left, mouth_right in layer pixels
    box: BoxRequest | None


@dataclasses.dataclass(frozen=True)
class SessionRequest:
    image: Image.Image  # RGBA
    from_session: str | None
    model: str | None = None
    region: tuple[int, int, int, int] | None = None  # x, y, width, height in layer pixels, used as given
    selection_bbox: tuple[int, int, int, int] | None = None  # grown by the margin (draggan_core.region.select_region)
    margin: float = 0.15
    invert: InvertRequest = InvertRequest(None, None, None, True, 10)
    align: AlignRequest | None = None  # instead of a region: an oriented quad (draggan_core.alignment)


SESSION_FIELDS = ("image", "from_session", "model", "region", "selection_bbox", "margin", "invert", "align")
BOX_FIELDS = ("center", "width", "height", "angle")
ALIGN_HELP = ("an object with the four landmarks left_eye, right_eye, mouth_left, mouth_right ([x, y] in layer "
              "pixels; left = on the image's left when the face is upright), or with 'box': {center, width, "
              "height?, angle?}")


def rectangle(body: dict[str, Any], key: str) -> tuple[int, int, int, int] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4 or \
            any(isinstance(v, bool) or not isinstance(v, int) or abs(v) > 2 ** 31 for v in value):
        raise bad_request(f"'{key}' must be [x, y, width, height] with integers, got {short(value)}", "bad_region")
    if value[2] < 1 or value[3] < 1:
        raise bad_request(f"'{key}' must have a positive width and height, got {short(value)}", "bad_region")
    return tuple(value)


def boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{key}' must be true or false, got {short(value)}")
    return value


def parse_invert(value: Any, limits: Limits) -> InvertRequest:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad_request(f"'invert' must be an object with fields {', '.join(INVERT_FIELDS)}, got {short(value)}")
    unknown = sorted(k for k in value if k not in INVERT_FIELDS)
    if unknown:
        raise bad_request(f"unknown field {short(unknown[0])} in 'invert'; allowed fields: {', '.join(INVERT_FIELDS)}",
                          "unknown_field")
    high = limits.max_invert_steps
    return InvertRequest(integer(value, "steps_w", None, 1, high), integer(value, "steps_wplus", None, 0, high),
                         integer(value, "steps_pti", None, 0, high), boolean(value, "pti", True),
                         integer(value, "preview_every", 10, 0, 10_000))


def align_point(value: dict[str, Any], key: str, size: tuple[int, int], prefix: str = "align.") -> Point:
    """[x, y] in layer pixels, at most one layer width (height) beyond the layer's edge: a landmark of a face
    the layer cuts off may lie outside it, but not anywhere at all."""
    p = value.get(key)
    xy = [finite(v) for v in p] if isinstance(p, list) and len(p) == 2 else [None]
    if None in xy:
        raise bad_request(f"'{prefix}{key}' must be [x, y] with finite numbers, got {short(p)}", "bad_align")
    width, height = size
    if not (-width <= xy[0] <= 2 * width and -height <= xy[1] <= 2 * height):
        raise bad_request(f"'{prefix}{key}' ({xy[0]:g}, {xy[1]:g}) is too far outside the {width}x{height} image "
                          f"(x from {-width} to {2 * width}, y from {-height} to {2 * height})", "out_of_range")
    return xy[0], xy[1]


def parse_box(value: Any, size: tuple[int, int]) -> BoxRequest:
    if not isinstance(value, dict):
        raise bad_request(f"'align.box' must be an object {{center, width, height?, angle?}}, got {short(value)}",
                          "bad_align")
    unknown = sorted(k for k in value if k not in BOX_FIELDS)
    if unknown:
        raise bad_request(f"unknown field {short(unknown[0])} in 'align.box'; allowed fields: {', '.join(BOX_FIELDS)}",
                          "unknown_field")
    for key in ("center", "width"):
        if value.get(key) is None:
            raise bad_request(f"'align.box' needs '{key}'", "bad_align")
    longest = MAX_BOX_FACTOR * max(size)  # draggan_core.alignment's bounds, so messages name the field
    named = {f"align.box.{k}": v for k, v in value.items()}
    return BoxRequest(align_point(value, "center", size, "align.box."),
                      number(named, "align.box.width", None, MIN_BOX_SIDE, longest),
                      number(named, "align.box.height", None, MIN_BOX_SIDE, longest),
                      number(named, "align.box.angle", 0.0, -360, 360))


def parse_align(value: Any, size: tuple[int, int]) -> AlignRequest | None:
    """The 'align' field against the image's (width, height); the geometry (eyes swapped, a box that misses
    the layer) is checked once the model is known (editing.aligned_mapping)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"'align' must be {ALIGN_HELP}; got {short(value)}", "bad_align")
    allowed = LANDMARKS + ("box",)
    unknown = sorted(k for k in value if k not in allowed)
    if unknown:
        raise bad_request(f"unknown field {short(unknown[0])} in 'align'; allowed fields: {', '.join(allowed)}",
                          "unknown_field")
    given = [k for k in allowed if value.get(k) is not None]
    if "box" in given:
        if len(given) > 1:
            raise bad_request("give either the four landmarks or 'box' in 'align', not both", "bad_align")
        return AlignRequest(None, parse_box(value["box"], size))
    missing = [k for k in LANDMARKS if k not in given]
    if missing:
        raise bad_request(f"'align' is missing '{missing[0]}'; it must be {ALIGN_HELP}", "bad_align")
    return AlignRequest({k: align_point(value, k, size) for k in LANDMARKS}, None)


def parse_session(body: dict[str, Any], limits: Limits, budget: DecodeBudget | None = None) -> SessionRequest:
    """The request, every field checked before the image is decoded (the decode waits for the budget)."""
    check_fields(body, SESSION_FIELDS, required=("image",))
    from_session = text(body, "from_session")
    if from_session is not None:
        extra = [k for k in SESSION_FIELDS[2:] if body.get(k) is not None]
        if extra:
            raise bad_request(f"'{extra[0]}' cannot be combined with 'from_session' (a copy of a session keeps its "
                              f"model and picture)", "bad_combination")
    region, bbox = rectangle(body, "region"), rectangle(body, "selection_bbox")
    if region is not None and bbox is not None:
        raise bad_request("give either 'region' (used as it is) or 'selection_bbox' (grown by 'margin'), not both",
                          "bad_combination")
    if body.get("align") is not None and (region is not None or bbox is not None):
        raise bad_request("'align' frames the layer itself: give it without 'region' or 'selection_bbox'",
                          "bad_combination")
    model, margin = text(body, "model"), number(body, "margin", 0.15, 0.0, 4.0)
    invert = parse_invert(body.get("invert"), limits)
    found = png_file(body, "image", limits)
    check_image_size("image", found.size, limits)
    if region is not None and (region[0] < 0 or region[1] < 0 or region[0] + region[2] > found.width
                               or region[1] + region[3] > found.height):
        raise bad_request(f"'region' {list(region)} is not inside the {found.width}x{found.height} image", "bad_region")
    if bbox is not None and not (bbox[0] < found.width and bbox[1] < found.height and bbox[0] + bbox[2] > 0
                                 and bbox[1] + bbox[3] > 0):
        raise bad_request(f"'selection_bbox' {list(bbox)} does not overlap the {found.width}x{found.height} image",
                          "bad_region")
    align = parse_align(body.get("align"), found.size)
    return SessionRequest(decoded(found, "RGBA", budget), from_session, model, region, bbox, margin, invert, align)


@dataclasses.dataclass(frozen=True)
class DragRequest:
    handles: list[Point]  # client pixels
    targets: list[Point]
    mask: Image.Image | None  # client size, grayscale, white = editable
    steps: int
    preview_every: int
    learning_rate: float | None  # None: the model's default
    mask_lambda: float
    w_layers: int
    r1: float | None  # model pixels; None: derived from the model's resolution
    r2: int | None
    feather: int = 8  # layer pixels; compositing into the layer of an inverted session
    from_state: str | None = None  # a kept state of the session to start from; None: its current state
    preset: str = DEFAULT_PRESET  # the named DragConfig settings (draggan_core/presets.py); the fields above override them


DRAG_FIELDS = ("handles", "targets", "mask", "steps", "preview_every", "learning_rate", "mask_lambda", "w_layers",
               "r1", "r2", "feather", "from_state", "preset")


def preset_name(body: dict[str, Any]) -> str:
    name = text(body, "preset") or DEFAULT_PRESET
    if name not in PRESETS:
        raise bad_request(f"unknown preset {short(name)}; the presets are {', '.join(PRESETS)}", "bad_preset")
    return name


def parse_drag(body: dict[str, Any], limits: Limits, mapping: Mapping, budget: DecodeBudget | None = None
               ) -> DragRequest:
    """The request, every field checked (the mask's size from its header) before the mask is decoded."""
    check_fields(body, DRAG_FIELDS, required=("handles", "targets"))
    handles, targets = points(body, "handles", limits), points(body, "targets", limits)
    if len(handles) != len(targets):
        raise bad_request(f"{len(handles)} handles but {len(targets)} targets; give one target per handle",
                          "bad_points")
    points_inside("handles", handles, mapping)
    points_inside("targets", targets, mapping)
    found = None if body.get("mask") is None else png_file(body, "mask", limits)
    if found is not None:
        if found.size != (mapping.width, mapping.height):
            raise bad_request(f"the mask is {found.width}x{found.height}; it must match the image, "
                              f"{mapping.width}x{mapping.height}", "bad_mask")
        check_image_size("mask", found.size, limits)
    options = dict(
        steps=integer(body, "steps", min(300, limits.max_steps), 1, limits.max_steps),
        preview_every=integer(body, "preview_every", 5, 0, 10_000),
        learning_rate=number(body, "learning_rate", None, 1e-6, 1.0),
        mask_lambda=number(body, "mask_lambda", 20.0, 0.0, 1e4),
        w_layers=integer(body, "w_layers", 6, 1, 64),
        r1=number(body, "r1", None, 1.0, 64.0),
        r2=integer(body, "r2", None, 1, 128),
        feather=integer(body, "feather", 8, 0, 256),
        from_state=text(body, "from_state"),
        preset=preset_name(body),
    )
    return DragRequest(handles, targets, None if found is None else decoded(found, "L", budget), **options)
