"""Building daemon requests and reading its answers, without Qt or Krita.

Everything here works on plain data: Krita BGRA bytes, selection bytes (one byte per pixel,
0..255), the point list, the parameters and the daemon's JSON. The Krita-facing code reads the
document on the GUI thread, calls these functions, and hands the resulting plain dicts to the
worker thread that talks to the daemon through the shared client.
"""
import json
import zlib

from . import imaging

ANNOTATION_SESSION = "draggan/session"

# Parameters the docker edits; None = let the daemon choose (model defaults).
DEFAULT_PARAMS = {
    "steps": 200,
    "mask_lambda": 20.0,
    "preview_every": 5,
    "r1": None,
    "r2": None,
    "learning_rate": None,
    "w_layers": 6,
    # GAN inversion of layers the daemon did not generate: steps per stage (None = the daemon's default
    # for the model and device; 0 skips the W+ or the pivotal tuning stage)
    "invert_w": None,
    "invert_wplus": None,
    "invert_pti": None,
}
PARAM_LIMITS = {
    "steps": (1, 2000), "mask_lambda": (0.0, 1e4), "preview_every": (0, 10000), "r1": (1.0, 64.0),
    "r2": (1, 128), "learning_rate": (1e-6, 1.0), "w_layers": (1, 64),
    "invert_w": (1, 2000), "invert_wplus": (0, 2000), "invert_pti": (0, 2000),
}
INT_PARAMS = ("steps", "preview_every", "r2", "w_layers", "invert_w", "invert_wplus", "invert_pti")
ZERO_IS_A_VALUE = ("invert_wplus", "invert_pti")  # 0 = skip the stage, not "auto"


class RequestError(ValueError):
    """The request cannot be built; the message tells the artist what to do."""


def clean_params(params):
    """Defaults filled in, numbers clamped to the daemon's limits, 0/empty advanced values = auto."""
    out = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            continue
        if DEFAULT_PARAMS[key] is None and (value is None or value == "" or (value == 0 and key not in ZERO_IS_A_VALUE)
                                            or (key in ZERO_IS_A_VALUE and float(value) < 0)):
            out[key] = None
            continue
        if value is None:
            continue
        lo, hi = PARAM_LIMITS[key]
        v = int(round(float(value))) if key in INT_PARAMS else float(value)
        out[key] = min(max(v, lo), hi)
    return out


# -- the editable region ------------------------------------------------------------------------

def mask_from_selection(selection, width, height):
    """One byte per pixel (255 = editable) or None for "whole layer".

    selection: None (nothing selected) or the bytes of Selection.pixelData(0, 0, width, height).
    A selection that covers everything fully also means the whole layer; an empty one is an error.
    Soft (feathered) values are kept as they are.
    """
    if selection is None:
        return None
    selection = bytes(selection)
    if len(selection) != width * height:
        raise RequestError("selection has %d bytes, expected %d" % (len(selection), width * height))
    if selection.count(255) == len(selection):
        return None
    if selection.count(0) == len(selection):
        raise RequestError("The selection is empty: select the region to edit, or deselect all to edit "
                           "the whole layer.")
    return selection


def mask_bounds(mask, width, height):
    """(x, y, w, h) of the non-zero mask pixels, or None."""
    if mask is None:
        return (0, 0, width, height)
    rows = [y for y in range(height) if mask[y * width:(y + 1) * width].strip(b"\x00")]
    if not rows:
        return None
    x0, x1 = width, -1
    for y in rows:
        row = mask[y * width:(y + 1) * width]
        x0 = min(x0, len(row) - len(row.lstrip(b"\x00")))
        x1 = max(x1, len(row.rstrip(b"\x00")) - 1)
    return (x0, rows[0], x1 - x0 + 1, rows[-1] - rows[0] + 1)


# -- requests -------------------------------------------------------------------------------------

def selection_bbox(mask, width, height):
    """[x, y, w, h] of the selection (its non-zero pixels) for create_session, or None = whole layer."""
    if mask is None:
        return None
    box = mask_bounds(mask, width, height)
    return list(box) if box is not None else None


def invert_settings(params):
    """The `invert` object of create_session from the parameters, or None (all daemon defaults)."""
    p = clean_params(params)
    out = {}
    for key, field in (("invert_w", "steps_w"), ("invert_wplus", "steps_wplus"), ("invert_pti", "steps_pti")):
        if p[key] is not None:
            out[field] = p[key]
    return out or None


def layer_session_request(model, bbox, invert):
    """Keyword arguments of client.create_session (besides the PNG) for a layer the daemon did not
    generate: it fits the selection's bounding box (grown by the daemon's margin) into the model and
    starts an inversion job."""
    return {"model": model or None, "selection_bbox": list(bbox) if bbox is not None else None,
            "invert": dict(invert) if invert else None}


def layer_fingerprint(bgra, width, height):
    """A short checksum of the layer's pixels: a saved session is reused only for the same picture."""
    return "%dx%d:%08x" % (width, height, zlib.crc32(bytes(bgra)) & 0xFFFFFFFF)


def generate_request(model, seed, psi=None):
    req = {"model": model or None, "seed": int(seed)}
    if psi is not None:
        req["psi"] = float(psi)
    return req


def session_request(layer_bgra, width, height):
    """The layer as RGBA PNG bytes, for client.create_session (POST /sessions)."""
    return imaging.encode_bgra_png(layer_bgra, width, height)


def drag_request(points, params, mask=None, width=None, height=None):
    """Keyword arguments of client.drag (POST /sessions/<sid>/drag) from the point list, the
    parameters and the optional mask bytes (sent as a grayscale PNG, "mask_png")."""
    pairs = points.complete_pairs()
    if not pairs:
        raise RequestError("Place at least one handle (red) and its target (blue) with the Drag tool first.")
    p = clean_params(params)
    req = {"handles": [[round(h[0], 3), round(h[1], 3)] for h, t in pairs],
           "targets": [[round(t[0], 3), round(t[1], 3)] for h, t in pairs]}
    for key in ("steps", "mask_lambda", "preview_every", "r1", "r2", "learning_rate", "w_layers"):
        if p[key] is not None:
            req[key] = p[key]
    if mask is not None:
        if width is None or height is None:
            raise RequestError("mask without image size")
        for h, _t in pairs:
            if mask[int(round(h[1])) * width + int(round(h[0]))] == 0:
                raise RequestError("Handle (%.0f, %.0f) lies outside the selection; the selection is the region "
                                   "that may change, so it must contain the handles." % (h[0], h[1]))
        req["mask_png"] = imaging.encode_mask_png(mask, width, height)
    return req


# -- answers --------------------------------------------------------------------------------------

FINAL_STATES = ("done", "failed", "cancelled")


def format_eta(seconds):
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)
    if seconds >= 60:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d s" % seconds


class Progress(object):
    """What the docker shows for one job status answer."""

    def __init__(self, job):
        self.job = job
        self.kind = job.get("kind") or "drag"
        self.inversion = job.get("inversion") or {}
        self.state = job.get("state", "queued")
        self.step = int(job.get("step") or 0)
        self.max_steps = int(job.get("max_steps") or 0)
        self.handles = [list(p) for p in (job.get("handles") or [])]
        self.preview_step = job.get("preview_step")
        self.reason = job.get("reason")
        self.eta = job.get("eta_seconds")
        err = job.get("error") or {}
        self.error = err.get("message") if isinstance(err, dict) else str(err)

    @property
    def finished(self):
        return self.state in FINAL_STATES

    @property
    def succeeded(self):
        return self.state == "done"

    @property
    def percent(self):
        if self.state == "done":
            return 100
        return int(100 * self.step / self.max_steps) if self.max_steps else 0

    @property
    def psnr(self):
        value = self.inversion.get("psnr")
        return float(value) if value is not None else None

    def text(self):
        if self.state == "queued":
            return "Waiting for the daemon (queued)..."
        if self.kind == "invert":
            return self._invert_text()
        if self.state == "running":
            eta = format_eta(self.eta)
            return "Step %d / %d%s" % (self.step, self.max_steps, (", about %s left" % eta) if eta else "")
        if self.state == "done":
            why = {"reached": "handles reached their targets", "max_steps": "step limit reached",
                   "stalled": "handles stopped moving", "stopped": "stopped"}.get(self.reason, self.reason or "")
            return "Done after %d steps%s" % (self.step, (" (%s)" % why) if why else "")
        if self.state == "cancelled":
            return "Cancelled"
        return "Failed: %s" % (self.error or "unknown error")

    def _invert_text(self):
        psnr = (", PSNR %.1f dB" % self.psnr) if self.psnr is not None else ""
        if self.state == "running":
            stage = STAGE_NAMES.get(self.inversion.get("stage"), self.inversion.get("stage") or "")
            eta = format_eta(self.eta)
            return "Inverting the layer (%s %d / %d)%s%s" % (
                stage, int(self.inversion.get("stage_step") or 0), int(self.inversion.get("stage_steps") or 0),
                psnr, (", about %s left" % eta) if eta else "")
        if self.state == "done":
            return "Inversion done%s%s" % (psnr, " (stopped early)" if self.reason == "stopped" else "")
        if self.state == "cancelled":
            return "Inversion cancelled"
        return "Inversion failed: %s" % (self.error or "unknown error")


STAGE_NAMES = {"w": "W", "w+": "W+", "pti": "PTI"}


def changed_layer_pixels(result_bgra, width, height, changed):
    """The result layer's BGRA for a layer session: the daemon's full-size result inside its `changed`
    rectangle ({x, y, width, height}), transparent everywhere else (None: nothing changed).

    The daemon's result is the layer itself outside the edit (bit-exact), so stacking this over the
    unchanged source shows exactly the daemon's picture, and the source stays as it was."""
    out = bytearray(width * height * 4)
    if not changed:
        return bytes(out)
    x0, y0 = max(0, int(changed["x"])), max(0, int(changed["y"]))
    x1 = min(width, int(changed["x"]) + int(changed["width"]))
    y1 = min(height, int(changed["y"]) + int(changed["height"]))
    if x1 <= x0 or y1 <= y0:
        return bytes(out)
    src = bytes(result_bgra)
    for y in range(y0, y1):
        a, b = 4 * (y * width + x0), 4 * (y * width + x1)
        out[a:b] = src[a:b]
    return bytes(out)


def result_layer_pixels(result_bgra, mask=None):
    """The result layer's BGRA: the daemon's picture, faded out outside the (soft) editable region,
    so the source layer below shows through exactly where the selection did not allow changes."""
    if mask is None:
        return bytes(result_bgra)
    out = bytearray(result_bgra)
    alpha = out[3::4]
    out[3::4] = bytes((a * m + 127) // 255 for a, m in zip(alpha, mask))
    return bytes(out)


def result_layer_name(model, n_points):
    return "DragGAN: %s %d point%s" % (model or "model", n_points, "" if n_points == 1 else "s")


def session_info_json(session_id, model, seed, width, height, url):
    return json.dumps({"session_id": session_id, "model": model, "seed": seed, "width": width,
                       "height": height, "daemon": url})


def layer_session_info_json(session_id, model, width, height, url, region, bbox, fingerprint, invert):
    """The annotation of a session the daemon made from a layer (inverted): what it was made from,
    so a later Run reuses it only for the same picture, model, inversion settings and a selection
    inside its region."""
    return json.dumps({"kind": "layer", "session_id": session_id, "model": model or None, "width": width,
                       "height": height, "daemon": url, "region": region, "selection_bbox": bbox,
                       "layer": fingerprint, "invert": invert or None})


def is_layer_session(info):
    return bool(info) and info.get("kind") == "layer"


def region_list(region):
    """[x, y, w, h] from the daemon's region ({x, y, width, height}) or a list, else None."""
    if isinstance(region, dict):
        try:
            return [int(region["x"]), int(region["y"]), int(region["width"]), int(region["height"])]
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(region, (list, tuple)) and len(region) == 4:
        return [int(v) for v in region]
    return None


def reusable_layer_session(info, model, width, height, url, bbox, fingerprint, invert):
    """The saved layer session's id when a Run with these settings can drag it directly, else None
    (then the layer is sent again; the daemon still reuses its session when nothing changed)."""
    if not is_layer_session(info):
        return None
    if ((info.get("model") or None) != (model or None) or (info.get("width"), info.get("height")) != (width, height)
            or info.get("daemon") != url or info.get("layer") != fingerprint
            or (info.get("invert") or None) != (invert or None)):
        return None
    region = region_list(info.get("region"))
    if bbox is None:  # the whole layer: only a session made for the whole layer
        return info["session_id"] if info.get("selection_bbox") is None else None
    if region is None:
        return None
    x, y, w, h = bbox
    rx, ry, rw, rh = region
    if rx <= x and ry <= y and x + w <= rx + rw and y + h <= ry + rh:
        return info["session_id"]
    return None


def parse_session_info(text):
    try:
        data = json.loads(text) if text else None
        return data if isinstance(data, dict) and data.get("session_id") else None
    except ValueError:
        return None
