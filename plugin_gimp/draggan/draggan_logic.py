"""The GIMP plug-in's logic that needs no GIMP: points from paths, the selection's cut, and the
plug-in's words. Standard library only, importable without gi, so it is unit-tested outside GIMP
(tests/test_gimp_logic.py) and runs in any Python GIMP bundles (3.8+).

Coordinates: GIMP paths and the selection live in image coordinates; the daemon wants pixels of
the picture the plug-in sends, i.e. of the layer, so everything is shifted by the layer's offsets.

The conversation with the daemon (which session shows the layer, inversion, the drag, progress)
is the shared draggan_client.workflow, the same as the Krita plug-in's.
"""
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from draggan_client import catalogue as catalogue_words
from draggan_client import workflow

PARASITE = "draggan-session"  # on layers made by DragGAN and on images made by "New image from model"
DRAG_PATH_NAME = "drags"  # the path used when none is chosen or selected
TRACKED_PATH_NAME = "DragGAN handles (tracked)"  # after a drag: from where tracking left each handle to its target
ALIGN_PATH_NAME = "DragGAN align"  # four anchors: left eye, right eye, left and right mouth corner
LANDMARKS = ("left_eye", "right_eye", "mouth_left", "mouth_right")  # the daemon's names, in the path's order
BOX_FIELDS = ("center", "width", "height", "angle")

Point = Tuple[float, float]
Drag = Tuple[Point, Point]  # (handle, target)


class PluginError(Exception):
    """A message for the artist. calling=True: the input is wrong (GIMP's CALLING_ERROR)."""

    def __init__(self, message: str, calling: bool = False):
        super().__init__(message)
        self.message = message
        self.calling = calling


# ----------------------------------------------------------------------------- points

def anchors(control_points: Sequence[float]) -> List[Point]:
    """Anchors of a Bezier stroke from GIMP's control points: 6 doubles per anchor
    (in-handle x, y, anchor x, y, out-handle x, y)."""
    if len(control_points) % 6:
        raise PluginError("a path stroke has {} control values; expected 6 per anchor".format(len(control_points)))
    return [(float(control_points[i + 2]), float(control_points[i + 3])) for i in range(0, len(control_points), 6)]


def drags_from_strokes(strokes: Sequence[Sequence[float]], path_name: str = "the path") -> List[Drag]:
    """One drag per stroke: the first anchor is the handle, the last the target (image coordinates).
    A stroke with a single anchor has no target and is refused, naming the stroke."""
    if not strokes:
        raise PluginError("{} has no strokes. Draw each drag with the Paths tool: click the handle (the point to "
                          "move), then its target; Shift-click to start the next drag.".format(_quoted(path_name)),
                          calling=True)
    drags = []
    for number, cps in enumerate(strokes, 1):
        pts = anchors(cps)
        if len(pts) < 2:
            raise PluginError("stroke {} of {} has only one anchor, so it has no target. Click a second point "
                              "(where the handle should go) with the Paths tool, or delete that stroke."
                              .format(number, _quoted(path_name)), calling=True)
        drags.append((pts[0], pts[-1]))
    return drags


def drags_from_json(text: str) -> List[Drag]:
    """The "points" argument: [[hx, hy, tx, ty], ...] or [[[hx, hy], [tx, ty]], ...] in image coordinates."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise PluginError("'points' is not valid JSON ({}); write e.g. [[10, 20, 30, 40]] for one drag from "
                          "(10, 20) to (30, 40)".format(e), calling=True) from None
    if not isinstance(value, list) or not value:
        raise PluginError("'points' must be a non-empty JSON list of [hx, hy, tx, ty] drags", calling=True)
    drags = []
    for i, item in enumerate(value):
        flat = item
        if isinstance(item, list) and len(item) == 2 and all(isinstance(p, list) for p in item):
            flat = item[0] + item[1]
        if not (isinstance(flat, list) and len(flat) == 4 and all(_is_number(v) for v in flat)):
            raise PluginError("'points' item {} must be [hx, hy, tx, ty] (numbers), got {}".format(
                i + 1, json.dumps(item)[:60]), calling=True)
        drags.append(((float(flat[0]), float(flat[1])), (float(flat[2]), float(flat[3]))))
    return drags


def to_layer(drags: Sequence[Drag], offset_x: int, offset_y: int, width: int, height: int) -> List[Drag]:
    """Image coordinates -> layer pixels; every point must lie on the layer."""
    out = []
    for i, drag in enumerate(drags):
        moved = tuple((x - offset_x, y - offset_y) for x, y in drag)
        for (x, y), role in zip(moved, ("handle", "target")):
            if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
                raise PluginError("the {} of drag {} ({:g}, {:g}) is outside the layer (at {}, {}, size {}x{}); "
                                  "move it onto the layer".format(role, i + 1, x + offset_x, y + offset_y,
                                                                  offset_x, offset_y, width, height), calling=True)
        out.append(tuple((min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)) for x, y in moved))
    return out


def stroke_points(handle: Point, target: Point) -> List[float]:
    """GIMP control points of a straight stroke from handle to target (both handles of each anchor on
    the anchor), the shape drags_from_strokes reads back."""
    return [float(handle[0]), float(handle[1])] * 3 + [float(target[0]), float(target[1])] * 3


def tracked_strokes(handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]], offset_x: int,
                    offset_y: int) -> List[List[float]]:
    """The strokes of the tracked-handles path in image coordinates, one per drag (layer pixels from the
    daemon + the layer's offsets)."""
    return [stroke_points((h[0] + offset_x, h[1] + offset_y), (t[0] + offset_x, t[1] + offset_y))
            for h, t in zip(handles, targets)]


# ----------------------------------------------------------------------------- alignment

def align_from_strokes(strokes: Sequence[Sequence[float]]) -> Dict[str, Any]:
    """The landmarks of the path "DragGAN align" (image coordinates): one stroke of four anchors, the
    eye on the image's left, the other eye, the mouth corner on the left, the other corner."""
    if len(strokes) != 1 or len(anchors(strokes[0])) != 4:
        raise PluginError("the path '{}' frames the face for the model: it must be one stroke of exactly four "
                          "anchors, clicked on the left eye, the right eye, the left mouth corner and the right "
                          "mouth corner (left and right as seen in the image); it has {}".format(
                              ALIGN_PATH_NAME, _anchor_counts(strokes)), calling=True)
    return {name: [x, y] for name, (x, y) in zip(LANDMARKS, anchors(strokes[0]))}


def align_from_json(text: str) -> Dict[str, Any]:
    """The "align" argument (image coordinates): {"left_eye": [x, y], "right_eye": .., "mouth_left": ..,
    "mouth_right": ..} or {"box": {"center": [x, y], "width": w, "height": h, "angle": degrees}} (height
    and angle optional). The daemon checks the geometry; this checks the shape, to name the mistake."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise PluginError("'align' is not valid JSON ({})".format(e), calling=True) from None
    example = ('write {"left_eye": [x, y], "right_eye": [x, y], "mouth_left": [x, y], "mouth_right": [x, y]} '
               'or {"box": {"center": [x, y], "width": w, "angle": degrees}}')
    if isinstance(value, dict) and set(value) == set(LANDMARKS) and all(_is_point(value[k]) for k in LANDMARKS):
        return {k: [float(v) for v in value[k]] for k in LANDMARKS}
    box = value.get("box") if isinstance(value, dict) and set(value) == {"box"} else None
    if isinstance(box, dict) and set(box) <= set(BOX_FIELDS) and _is_point(box.get("center")) \
            and _is_number(box.get("width")) and all(_is_number(box[k]) for k in ("height", "angle") if k in box):
        return {"box": dict(box, center=[float(v) for v in box["center"]])}
    raise PluginError("'align' must be the four landmarks or a box: " + example, calling=True)


def align_to_layer(align: Dict[str, Any], offset_x: int, offset_y: int) -> Dict[str, Any]:
    """Image coordinates -> layer pixels, for the landmarks or the box's centre."""
    def moved(point: Sequence[float]) -> List[float]:
        return [point[0] - offset_x, point[1] - offset_y]

    if "box" in align:
        return {"box": dict(align["box"], center=moved(align["box"]["center"]))}
    return {k: moved(align[k]) for k in LANDMARKS}


def _anchor_counts(strokes: Sequence[Sequence[float]]) -> str:
    if not strokes:
        return "no stroke"
    return "{} stroke{} of {} anchors".format(len(strokes), "s" if len(strokes) > 1 else "",
                                              " + ".join(str(len(cps) // 6) for cps in strokes))


# ----------------------------------------------------------------------------- mask

def crop_plane(plane: bytes, plane_width: int, plane_height: int, x: int, y: int, width: int, height: int,
               fill: int = 0) -> bytes:
    """The width x height window at (x, y) of a one-byte-per-pixel plane; outside the plane is `fill`.
    Used to cut the image-sized selection at the layer's offsets (a layer may stick out of the canvas)."""
    if len(plane) != plane_width * plane_height:
        raise ValueError("plane has {} bytes, not {}x{}".format(len(plane), plane_width, plane_height))
    x0, x1 = max(x, 0), min(x + width, plane_width)
    row_fill = bytes([fill]) * width
    if x0 >= x1:
        return row_fill * height
    left, right = bytes([fill]) * (x0 - x), bytes([fill]) * (x + width - x1)
    rows = []
    for row in range(y, y + height):
        if 0 <= row < plane_height:
            start = row * plane_width
            rows.append(left + plane[start + x0:start + x1] + right)
        else:
            rows.append(row_fill)
    return b"".join(rows)


# ----------------------------------------------------------------------------- settings and words

def invert_settings(steps_w: int = 0, steps_wplus: int = -1, steps_pti: int = -1,
                    preview_every: int = 0) -> Optional[Dict[str, Any]]:
    """The inversion settings from the dialog's numbers: 0 (W) or -1 (W+, tuning) is the daemon's
    default, 0 skips W+ or pivotal tuning. preview_every: steps between previews of the fit (0: none,
    as for scripts, which get no preview layer)."""
    return workflow.invert_settings(steps_w if steps_w > 0 else None, steps_wplus if steps_wplus >= 0 else None,
                                    steps_pti if steps_pti >= 0 else None, preview_every=int(preview_every))


def drag_settings(steps: int, mask_lambda: float, learning_rate: float = 0.0, r1: float = 0.0, r2: int = 0,
                  w_layers: int = 6, feather: Optional[int] = None, preset: Optional[str] = None
                  ) -> workflow.DragSettings:
    """The drag's settings from the dialog's numbers: 0 in learning_rate/r1/r2 means the daemon's default.
    preset: the nick of the dialog's Preset choice (a name of workflow.PRESETS); empty: the daemon's
    default (DragSettings.options leaves the default out, for daemons from before presets)."""
    return workflow.DragSettings(steps=int(steps), mask_lambda=float(mask_lambda), preview_every=0,
                                 learning_rate=float(learning_rate) if learning_rate > 0 else None,
                                 r1=float(r1) if r1 > 0 else None, r2=int(r2) if r2 > 0 else None,
                                 w_layers=int(w_layers), feather=feather, preset=(preset or "").strip() or None)


DEFAULT_PRESET = workflow.PRESETS[0][0]  # the Preset choice's default, the daemon's own: DragGAN as published


RESET_DONE = ("Reset to the original picture: the daemon forgot the drags (a plain layer's fit is kept). Dragging "
              "the source starts from the original; a result layer still goes on from its own edit.")
RESET_SESSION_GONE = ("The daemon no longer has this picture's session (it was restarted or dropped it), so there "
                      "were no drags to forget: the next drag regenerates or re-fits the picture from the layer.")


def friendly(message: str, code: Optional[str] = None) -> str:
    """A daemon or client message with the advice that fits the GIMP plug-in."""
    if code == "unreachable":
        return (message + ". Start it with Filters > DragGAN > Daemon... (Start local daemon), or `draggan serve` "
                "in a terminal; the daemon's address is set there too. Then try again.")
    if code == "unauthorized":
        return message + " (set the daemon's access token in Filters > DragGAN > Daemon...)."
    if code == "unknown_model":
        return _capital(message) + " (choose a model in the Model list of the DragGAN dialog; the daemon's default " \
                                   "is the first entry)."
    if code == "model_not_downloaded":
        return _capital(message) + " (download it in Filters > DragGAN > Daemon...)."
    if code == "bad_region":
        return (_capital(message) + ". Select the part of the layer to edit (it must have visible pixels), or "
                "Select > None to use the whole layer.")
    if code == "point_outside":
        return _capital(message) + ". Select a region that holds every drag (handle and target)."
    if code == "inversion_unavailable":  # daemons before GAN inversion (501)
        return ("this daemon cannot edit pictures it did not make (it has no GAN inversion); update draggan-studio "
                "and restart `draggan serve`, or drag a layer made by Filters > DragGAN > New image from model. "
                "(Daemon: " + message + ")")
    return _capital(message) if message else "unknown error"


# ----------------------------------------------------------------------------- model lists and the Daemon... panel

DEFAULT_MODEL = "(default)"  # the model list's first entry: no model named (parentheses are not in model names)
ACTIONS = {  # Daemon...'s "action" choice: nick -> label
    "status": "Check the daemon",
    "save": "Save these settings",
    "start": "Start the local daemon",
    "stop": "Stop the local daemon",
    "download": "Download the chosen model",
    "setup": "Set up the local daemon (install it into the project folder)",
}
Choice = Tuple[str, str, str]  # (nick: the model name, label, help)


def model_choices(catalogue: Sequence[Dict[str, Any]], default_label: str) -> List[Choice]:
    """A model list for New image and Drag: the default first, then the daemon's usable models (those
    downloaded), each labelled by catalogue.model_label."""
    out = [(DEFAULT_MODEL, default_label, "")]
    for entry in catalogue:
        name = entry.get("name")
        if isinstance(name, str) and name and catalogue_words.usable(entry):
            out.append((name, catalogue_words.model_label(entry), str(entry.get("note") or "")))
    return out


def download_choices(catalogue: Sequence[Dict[str, Any]]) -> List[Choice]:
    """The catalogue's models that can be downloaded now (not downloaded, not downloading, with a URL),
    labelled with their size and licence, so both are seen before the download starts."""
    out = []
    for entry in catalogue:
        name = entry.get("name")
        if not (isinstance(name, str) and name) or not catalogue_words.can_download(entry):
            continue
        licence = entry.get("licence") or "licence not given"
        out.append((name, "{}, licence: {}".format(catalogue_words.model_label(entry), licence),
                    str(entry.get("note") or "")))
    return out


def model_argument(nick: Optional[str]) -> str:
    """The model name a dialog's choice stands for ("" for the default entry)."""
    nick = (nick or "").strip()
    return "" if nick == DEFAULT_MODEL else nick


def check_action(action: Optional[str]) -> str:
    action = (action or "").strip().lower()
    if action not in ACTIONS:
        raise PluginError("'action' must be one of {}, got '{}'".format(", ".join(ACTIONS), action[:40]),
                          calling=True)
    return action


def daemon_status(url: str, health: Optional[Dict[str, Any]], error: Optional[str] = None,
                  local_pid: int = 0, ended_log: Optional[Sequence[str]] = None) -> str:
    """What the Daemon... dialog says: whether the daemon at url answers; ended_log: the local daemon
    started from GIMP has ended, and these are the last lines of its log."""
    if health is None:
        text = "No DragGAN daemon answers at {}{}.".format(url, " ({})".format(error) if error else "")
        if ended_log is not None:
            text += " The local daemon started from GIMP (process {}) has ended{}".format(
                local_pid, "; the end of its log:\n" + "\n".join(ended_log) if ended_log else ".")
        return text
    device = health.get("device")
    local = " (started from GIMP, process {})".format(local_pid) if local_pid else ""
    return "The DragGAN daemon at {} answers{}{}.".format(url, local, ", device {}".format(device) if device else "")


def _capital(message: str) -> str:
    return message[:1].upper() + message[1:]


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_point(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))


def _quoted(name: str) -> str:
    return name if name.startswith("the ") else "path '{}'".format(name)
