"""Photo-like layers made from the demo world, for the editors' alignment tests (issue 16).

A real photo of a cat is not in the model's framing: turned, scaled, off-centre. `tilted_cat` makes
such a layer from the demo model's seed-0 picture by a known similarity and returns the same
similarity applied to the world's eye and mouth landmarks and to the README's drag (right ear up),
so a test can frame the layer by its landmarks and drag the ear, in the layer's pixels.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image

from draggan_core import registry
from draggan_core.checkpoint import load_generator
from draggan_core.demo import world
from draggan_core.demo.scenarios import make_drag
from draggan_core.demo.train import params_from_z
from draggan_core.stylegan2 import seed_to_z

LANDMARKS = ("left_eye", "right_eye", "mouth_left", "mouth_right")
CAT = 128  # the demo model's picture size


def tilted_cat(cat_png: bytes, path: Path, size: tuple[int, int], angle_deg: float, scale: float,
               placed: tuple[float, float], colour: tuple[int, int, int], mode: str = "RGBA") -> dict:
    """Write the cat (cat_png: the daemon's seed-0 demo picture at psi 1) turned angle_deg clockwise on
    screen, scaled, its centre at `placed` on a canvas of `size` in `colour` (a colour per editor
    version, so a shared daemon does not reuse another run's session). Returns {"landmarks": the four
    landmarks in LANDMARKS order, "drag": [hx, hy, tx, ty]} in the canvas's pixels."""
    z_dim = load_generator(registry.DEMO_FILE, device="cpu").z_dim
    marks = world.landmarks(params_from_z(seed_to_z(0, z_dim))[0].numpy(), CAT)
    drag = make_drag("right_ear_up", 0, z_dim, CAT)
    angle, centre = math.radians(angle_deg), (CAT / 2.0, CAT / 2.0)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale

    def forward(p):  # cat pixels -> canvas pixels
        dx, dy = p[0] - centre[0], p[1] - centre[1]
        return [round(placed[0] + cos * dx - sin * dy, 3), round(placed[1] + sin * dx + cos * dy, 3)]

    det = cos * cos + sin * sin  # the inverse, for PIL (output pixel -> input pixel)
    a, b, d, e = cos / det, sin / det, -sin / det, cos / det
    cat = Image.open(io.BytesIO(cat_png)).convert("RGBA")
    turned = cat.transform(size, Image.AFFINE, (a, b, centre[0] - a * placed[0] - b * placed[1],
                                                d, e, centre[1] - d * placed[0] - e * placed[1]),
                           resample=Image.BICUBIC, fillcolor=(0, 0, 0, 0))
    canvas = Image.new("RGBA", size, tuple(colour) + (255,))
    canvas.alpha_composite(turned)
    canvas.convert(mode).save(path)
    return {"landmarks": [forward(marks[k]) for k in LANDMARKS], "drag": forward(drag.handles[0]) + forward(drag.targets[0])}
