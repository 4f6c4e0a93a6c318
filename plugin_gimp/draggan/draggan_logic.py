"""The GIMP plug-in's logic that needs no GIMP: points from paths, masks, PNG files, requests,
answers and the session bookkeeping. Standard library only, importable without gi, so it is
unit-tested outside GIMP (tests/test_gimp_logic.py) and runs in any Python GIMP bundles (3.8+).

Coordinates: GIMP paths and the selection live in image coordinates; the daemon wants pixels of
the picture the plug-in sends, i.e. of the layer, so everything is shifted by the layer's offsets.

Two kinds of daemon sessions: a picture the daemon generated (its latent is known, dragged at once)
and any other layer (a "real" layer: the daemon fits its model to the selected part by GAN
inversion, an invert job, before the drag). edit() runs the whole conversation for one drag.
"""
import json
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from draggan_client.pngcodec import encode_png

PARASITE = "draggan-session"  # on layers made by DragGAN and on images made by "New image from model"
DRAG_PATH_NAME = "drags"  # the path used when none is chosen or selected

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


def editable_mask(selection: Optional[bytes], width: int, height: int) -> Optional[bytes]:
    """The mask to send for a layer-sized cut of the selection (0..255, soft values kept): None when
    there is no selection or it covers the whole layer (everything editable), an error when the
    selection misses the layer."""
    if selection is None:
        return None
    if len(selection) != width * height:
        raise ValueError("mask has {} bytes, not {}x{}".format(len(selection), width, height))
    if not selection.strip(b"\x00"):
        raise PluginError("the selection does not touch this layer, so nothing could change. Select the region "
                          "the drag may edit (or Select > None to edit the whole layer).", calling=True)
    if not selection.strip(b"\xff"):
        return None
    return selection


def mask_bbox(mask: Optional[bytes], width: int, height: int, drags: Sequence[Drag] = ()) -> Optional[List[int]]:
    """[x, y, width, height] (layer pixels) of the mask's non-zero pixels, grown to hold every drag
    point: the selection_bbox of a real layer's session (the daemon adds a margin). None without a
    mask (the whole layer)."""
    if mask is None:
        return None
    if len(mask) != width * height:
        raise ValueError("mask has {} bytes, not {}x{}".format(len(mask), width, height))
    x0, y0, x1, y1 = width, height, -1, -1
    for row in range(height):
        line = mask[row * width:(row + 1) * width]
        stripped = line.lstrip(b"\x00")
        if not stripped:
            continue
        x0 = min(x0, width - len(stripped))
        x1 = max(x1, len(line.rstrip(b"\x00")) - 1)
        y0, y1 = min(y0, row), row
    for drag in drags:
        for x, y in drag:
            x0, x1 = min(x0, int(math.floor(x))), max(x1, int(math.ceil(x)))
            y0, y1 = min(y0, int(math.floor(y))), max(y1, int(math.ceil(y)))
    if x1 < 0:
        return None
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def inside_region(drags: Sequence[Drag], bbox: Optional[Sequence[int]], region: Optional[Dict[str, int]],
                  width: int, height: int) -> bool:
    """Whether a real layer's session region ({x, y, width, height}, layer pixels) can take this drag:
    it holds every drag point and the selection's box, or the whole layer when there is no selection."""
    if not region:
        return False
    x0, y0 = region["x"], region["y"]
    x1, y1 = x0 + region["width"] - 1, y0 + region["height"] - 1
    if bbox is None:
        bbox = [0, 0, width, height]
    for drag in drags:
        for x, y in drag:
            if not (x0 <= x <= x1 and y0 <= y <= y1):
                return False
    if bbox is not None:
        bx, by, bw, bh = bbox
        return x0 <= bx and y0 <= by and bx + bw - 1 <= x1 and by + bh - 1 <= y1
    return True


# ----------------------------------------------------------------------------- PNG

def rgb_from_rgba(pixels: bytes) -> bytes:
    """Drop the alpha channel of RGBA bytes (the daemon's generators make opaque pictures)."""
    out = bytearray(len(pixels) // 4 * 3)
    out[0::3], out[1::3], out[2::3] = pixels[0::4], pixels[1::4], pixels[2::4]
    return bytes(out)


# ----------------------------------------------------------------------------- settings and requests

def drag_options(steps: int, mask_lambda: float, learning_rate: float = 0.0, r1: float = 0.0, r2: int = 0,
                 w_layers: int = 6, preview_every: int = 0) -> Dict[str, Any]:
    """Keyword options for DaemonClient.drag; 0 in learning_rate/r1/r2 means "the daemon's default"."""
    options = {"steps": int(steps), "mask_lambda": float(mask_lambda), "w_layers": int(w_layers),
               "preview_every": int(preview_every)}
    if learning_rate > 0:
        options["learning_rate"] = float(learning_rate)
    if r1 > 0:
        options["r1"] = float(r1)
    if r2 > 0:
        options["r2"] = int(r2)
    return options


def drag_request(drags: Sequence[Drag], mask_png: Optional[bytes], options: Dict[str, Any]) -> Dict[str, Any]:
    """Arguments for DaemonClient.drag(session_id, **request)."""
    return dict(options, handles=[[h[0], h[1]] for h, _ in drags], targets=[[t[0], t[1]] for _, t in drags],
                mask_png=mask_png)


STAGES = {"w": "W projection", "w+": "W+ projection", "pti": "pivotal tuning"}


def progress(status: Dict[str, Any]) -> Tuple[float, str]:
    """(fraction for GIMP's progress bar, text) from a job status (a drag, or a real layer's inversion)."""
    state, step, total = status.get("state"), status.get("step") or 0, status.get("max_steps") or 0
    inverting = status.get("kind") == "invert"
    if state == "queued":
        pos = status.get("queue_position")
        return 0.0, "DragGAN: waiting for the daemon" + (" (place {} in the queue)".format(pos) if pos else "") + \
            (" to fit the model to the layer" if inverting else "")
    if inverting:
        inv = status.get("inversion") or {}
        stage = inv.get("stage")
        text = "DragGAN: fitting the model to the layer"
        if stage:
            text += ", {} step {}/{}".format(STAGES.get(stage, stage), inv.get("stage_step") or 0,
                                             inv.get("stage_steps") or 0)
        if inv.get("psnr") is not None:
            text += ", PSNR {:.1f} dB".format(inv["psnr"])
    else:
        text = "DragGAN: step {}/{}".format(step, total)
        if status.get("distance") is not None:
            text += ", {:.1f} px to go".format(status["distance"])
    eta = status.get("eta_seconds")
    if eta is not None:
        text += ", about {:.0f} s left".format(math.ceil(eta))
    return (min(step / total, 1.0) if total else 0.0), text


def finished_job(status: Dict[str, Any]) -> Dict[str, Any]:
    """The final status of a job that produced a picture; a failed or cancelled job is an error."""
    state = status.get("state")
    if state == "done":
        return status
    what = "fitting of the model to the layer (GAN inversion)" if status.get("kind") == "invert" else "drag"
    if state == "cancelled":
        raise PluginError("the {} was cancelled on the daemon; the image is unchanged".format(what))
    error = status.get("error") or {}
    raise PluginError("the {} failed on the daemon: {}".format(what, error.get("message") or "no reason given"))


def layer_name(status: Dict[str, Any], psnr: Optional[float] = None) -> str:
    """The result layer's name; psnr: how closely the model reproduced a real layer (dB), if known."""
    reasons = {"reached": "targets reached", "max_steps": "step limit", "stalled": "stalled", "stopped": "stopped"}
    extra = ", model fit {:.1f} dB".format(psnr) if psnr is not None else ""
    return "DragGAN drag ({} steps, {}{})".format(status.get("step", 0),
                                                  reasons.get(status.get("reason"), status.get("reason") or "done"),
                                                  extra)


def friendly(message: str, code: Optional[str] = None) -> str:
    """A daemon or client message with the advice that fits the GIMP plug-in."""
    if code == "unreachable":
        return (message + ". Start it with `draggan serve` (or fix the daemon URL in Filters > DragGAN > "
                "DragGAN Drag's dialog), then try again.")
    if code == "unauthorized":
        return message + " (the Token field of the DragGAN dialog)."
    if code == "unknown_model":
        return _capital(message) + " (the Model field of the DragGAN dialog; empty: the daemon's default model)."
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


def _capital(message: str) -> str:
    return message[:1].upper() + message[1:]


def invert_settings(steps_w: int = 0, steps_wplus: int = -1, steps_pti: int = -1) -> Dict[str, Any]:
    """The 'invert' object of a real layer's session: 0 (W) or -1 (W+, tuning) for the daemon's default
    step counts, 0 skips W+ or pivotal tuning. Previews are off: the plug-in shows none."""
    settings = {"preview_every": 0}  # type: Dict[str, Any]
    if steps_w > 0:
        settings["steps_w"] = int(steps_w)
    if steps_wplus >= 0:
        settings["steps_wplus"] = int(steps_wplus)
    if steps_pti >= 0:
        settings["steps_pti"] = int(steps_pti)
    return settings


# ----------------------------------------------------------------------------- sessions

REAL = "layer"  # origin of a real layer's session (the daemon inverted the layer)
NOT_THIS_PICTURE = ("different_picture", "inversion_unavailable")  # from_session refused: other pixels


def session_info(session: Dict[str, Any], url: str, seed: Optional[int] = None, psi: Optional[float] = None,
                 origin: str = "generated") -> Dict[str, Any]:
    """What a layer (and its image) remember about the daemon session whose picture they show.
    handles/targets are the session's state for this picture; if the session has moved on (a later
    drag), they differ and the layer's picture must be given to the daemon again. origin: "generated"
    (New image), "drag" (a drag of a generated picture) or "layer" (a drag of a real layer, whose
    session also has the edited region)."""
    info = {"url": url, "session_id": session["session_id"], "model": session.get("model"),
            "width": session["width"], "height": session["height"], "handles": session.get("handles") or [],
            "targets": session.get("targets") or [], "seed": seed, "psi": psi, "origin": origin}
    if session.get("region") is not None:
        info["region"] = session["region"]
    return info


def encode_info(info: Dict[str, Any]) -> bytes:
    return json.dumps(info, sort_keys=True).encode("utf-8")


def decode_info(data: Optional[bytes]) -> Optional[Dict[str, Any]]:
    if not data:
        return None
    try:
        info = json.loads(bytes(data).decode("utf-8"))
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("session_id"), str) else None


def same_state(info: Dict[str, Any], session: Dict[str, Any]) -> bool:
    return (_points(info.get("handles")) == _points(session.get("handles"))
            and _points(info.get("targets")) == _points(session.get("targets")))


def _code(error: Exception) -> Optional[str]:
    return getattr(error, "code", None)  # DaemonError from the shared client


def resolve_session(client: Any, info: Optional[Dict[str, Any]], width: int, height: int,
                    layer_png: Callable[[], bytes], trusted: bool = True, drags: Sequence[Drag] = (),
                    bbox: Optional[Sequence[int]] = None, model: Optional[str] = None) -> Optional[str]:
    """The id of a daemon session showing this layer's picture, or None when the layer needs a real
    layer's session (GAN inversion, see edit()).

    Reuses the layer's own session when it still shows it (a real layer's session also when it
    covers the drags and the selection, and was made with `model` when one is given), else for a
    generated picture makes one from the session's picture (a scaled or older copy) or from the seed
    it was generated from. `client` is a DaemonClient; layer_png() gives the layer as PNG bytes.
    trusted=False (the info is the image's, not the layer's): the daemon compares the pixels before
    a generated session is reused, and a real layer's session is found by the daemon from the pixels.
    """
    if info is None:
        return None
    sid, from_session, current = info["session_id"], None, None
    try:
        current = client.session(sid)
    except Exception as e:
        if _code(e) != "unknown_session":
            raise
    if current is not None and current.get("region") is not None:  # a real layer's session
        if (trusted and (current["width"], current["height"]) == (width, height) and same_state(info, current)
                and inside_region(drags, bbox, current["region"], width, height)
                and model in (None, current.get("model")) and current.get("ready", True)):
            return sid
        return None
    if current is not None:
        if trusted and (current["width"], current["height"]) == (width, height) and same_state(info, current):
            return sid
        from_session = sid
    if info.get("origin") == REAL:
        return None
    if from_session is not None:
        try:
            return client.create_session(layer_png(), from_session=from_session)["session_id"]
        except Exception as e:
            if _code(e) not in NOT_THIS_PICTURE + ("unknown_session",):
                raise
    if trusted and info.get("origin") == "generated" and info.get("seed") is not None:
        made = client.generate(seed=int(info["seed"]), model=info.get("model"), psi=info.get("psi"))
        if (made["width"], made["height"]) == (width, height):
            return made["session_id"]
        try:
            return client.create_session(layer_png(), from_session=made["session_id"])["session_id"]
        except Exception as e:
            if _code(e) not in NOT_THIS_PICTURE:
                raise
    return None


BUSY = ("session_busy", "session_inverting")


def start_drag(client: Any, session_id: str, request: Dict[str, Any], patience: float = 0.0,
               sleep: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
    """client.drag, retried for up to `patience` seconds while the session is still busy (right after
    its inversion ended, the daemon may need a moment to release it)."""
    waited = 0.0
    while True:
        try:
            return client.drag(session_id, **request)
        except Exception as e:
            if _code(e) not in BUSY or waited >= patience:
                raise
        sleep(0.2)
        waited += 0.2


def edit(client: Any, info: Optional[Dict[str, Any]], trusted: bool, width: int, height: int, rgba: bytes,
         drags: Sequence[Drag], mask: Optional[bytes], options: Dict[str, Any], model: Optional[str] = None,
         invert: Optional[Dict[str, Any]] = None, feather: Optional[int] = None,
         watch_job: Callable[[str], None] = lambda job_id: None,
         on_status: Callable[[Dict[str, Any]], None] = lambda status: None,
         sleep: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
    """One DragGAN Drag, all the talking to the daemon (no GIMP calls, runs on the worker thread).

    rgba: the layer's pixels (R'G'B'A u8, width x height); drags in layer pixels; mask: the layer-sized
    selection cut (None: the whole layer); options: drag_options(). A generated picture is dragged
    on its session (resolve_session). Any other layer is sent with the model (`model`, else the
    image's DragGAN model, else the daemon's default), the selection's box as selection_bbox and
    the inversion settings; the daemon reuses its session for the same layer and settings, or
    starts an invert job, which is waited for. Every job id goes to watch_job (the watchdog cancels
    them if GIMP kills the plug-in), every job status to on_status. Returns {final, png, session,
    info, real, reused, psnr, changed}: the drag's final status, the result PNG (the full layer),
    the session after the drag, what the new layer remembers, whether the layer was a real one,
    whether its real layer's session was reused, the model's fit of the layer (dB; real layers) and the
    rectangle the drag changed (real layers)."""
    model = (model or "").strip() or None
    mask_png = encode_png(width, height, 1, mask) if mask is not None else None
    bbox = mask_bbox(mask, width, height, drags)
    session_id = resolve_session(client, info, width, height,
                                 lambda: encode_png(width, height, 3, rgb_from_rgba(rgba)), trusted, drags, bbox, model)
    real = session_id is None or (info is not None and info.get("origin") == REAL and session_id == info["session_id"])
    reused, inverted, patience = real and session_id is not None, None, 0.0
    if session_id is None:
        made = client.create_session(encode_png(width, height, 4, rgba), model=model or (info or {}).get("model"),
                                     selection_bbox=bbox, invert=invert)
        session_id, reused = made["session_id"], bool(made.get("reused"))
        if made.get("job_id"):
            watch_job(made["job_id"])
            inverted = finished_job(client.wait(made["job_id"], on_progress=on_status))
            patience = 5.0
    request = drag_request(drags, mask_png, options)
    if real and feather is not None:
        request["feather"] = int(feather)
    job = start_drag(client, session_id, request, patience, sleep)
    watch_job(job["job_id"])
    on_status(job)
    final = finished_job(client.wait(job["job_id"], on_progress=on_status))
    png = client.result(job["job_id"])
    session = client.session(session_id)
    psnr = None
    if real:
        psnr = _fit_psnr(client, inverted, session)
        new_info = session_info(session, client.url, origin=REAL)
    else:
        new_info = session_info(session, client.url, (info or {}).get("seed"), (info or {}).get("psi"), origin="drag")
    return {"final": final, "png": png, "session": session, "info": new_info, "real": real, "reused": reused,
            "psnr": psnr, "changed": final.get("changed")}


def _fit_psnr(client: Any, inverted: Optional[Dict[str, Any]], session: Dict[str, Any]) -> Optional[float]:
    """The PSNR of the real layer's inversion: from the job just waited for, else from the session's
    invert job while the daemon still keeps it."""
    status = inverted
    if status is None and session.get("invert_job"):
        try:
            status = client.job(session["invert_job"])
        except Exception:  # the daemon keeps only recent jobs
            return None
    psnr = ((status or {}).get("inversion") or {}).get("psnr")
    return float(psnr) if psnr is not None else None


def _points(value: Any) -> List[Tuple[float, float]]:
    return [(float(p[0]), float(p[1])) for p in (value or [])]


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _quoted(name: str) -> str:
    return name if name.startswith("the ") else "path '{}'".format(name)
