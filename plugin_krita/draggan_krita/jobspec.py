"""The Krita side of a drag's request and result, without Qt or Krita.

Everything here works on plain data: Krita BGRA bytes, selection bytes (one byte per pixel,
0..255), the point list, the docker's parameters. It turns them into the shared workflow's Edit
(draggan_client/workflow.py holds the conversation with the daemon, the same as GIMP's) and turns
the daemon's pictures into the pixels of Krita's result layers.
"""
from . import imaging
from .draggan_client import workflow

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
    "preset": workflow.PRESETS[0][0],  # the daemon's named drag settings (workflow.PRESETS)
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
        if key == "preset":  # a name; one this plug-in does not know (an older or newer one's) is dropped
            out[key] = value if value in workflow.PRESET_NAMES else DEFAULT_PARAMS[key]
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


# -- requests -------------------------------------------------------------------------------------

def invert_settings(params):
    """The inversion settings from the parameters, or None (all daemon defaults)."""
    p = clean_params(params)
    return workflow.invert_settings(p["invert_w"], p["invert_wplus"], p["invert_pti"])


def drag_settings(params):
    p = clean_params(params)
    return workflow.DragSettings(steps=p["steps"], mask_lambda=p["mask_lambda"], preview_every=p["preview_every"],
                                 learning_rate=p["learning_rate"], r1=p["r1"], r2=p["r2"], w_layers=p["w_layers"],
                                 preset=p["preset"])


def edit_request(points, params, layer_bgra, width, height, selection, model):
    """The shared workflow's Edit for a Run: the complete point pairs, the layer as RGBA, the editable
    mask from the selection bytes (None: nothing selected). The document's session record is not
    the layer's own, so it is trusted only for the pixels it was made from (its fingerprint)."""
    pairs = points.complete_pairs()
    if not pairs:
        raise workflow.WorkflowError("Place at least one handle (red) and its target (blue) with the Drag tool first.")
    mask = workflow.editable_mask(selection, width, height)
    return workflow.Edit(width, height, imaging.bgra_to_rgba(bytes(layer_bgra)), 4,
                         [(tuple(h), tuple(t)) for h, t in pairs], mask, drag_settings(params),
                         model=model or None, invert=invert_settings(params), trusted=False)


def generated_record(answer, url):
    """The document's record of a picture the daemon generated (daemon.generate's answer), with its
    pixels' fingerprint: a document's record is trusted only for the layer that shows those pixels."""
    return workflow.generated_record(answer, url, answer["seed"], pixels=imaging.bgra_to_rgba(bytes(answer["bgra"])))


def layer_fingerprint(bgra, width, height):
    """The fingerprint of a layer's Krita BGRA pixels, as the workflow computes it for a Run on that layer."""
    return workflow.layer_fingerprint(imaging.bgra_to_rgba(bytes(bgra)), width, height)


def generate_request(model, seed, psi=None):
    req = {"model": model or None, "seed": int(seed)}
    if psi is not None:
        req["psi"] = float(psi)
    return req


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

