"""Pictures of the demo model at work: one scenario's drag as images and a GIF, and a sample grid.

Shared by `draggan demo` (the README's main command) and scripts/demo_gallery.py (docs/demo/),
so what the docs show is exactly what the command produces.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import registry
from ..drag import DragConfig, DragSession, DragStep
from ..images import to_pil
from ..overlay import draw_points, save_gif
from ..presets import DEFAULT as DEFAULT_PRESET
from ..stylegan2 import seed_to_z
from .scenarios import Drag, make_drag
from .train import render_targets


def run_scenario(G: torch.nn.Module, info: registry.ModelInfo, scenario: str, seed: int, out: Path,
                 steps: int = 200, preview_every: int = 2, scale: int = 3, preset: str = DEFAULT_PRESET
                 ) -> tuple[Drag, DragStep]:
    """Drag `scenario` on `seed`'s image; write before.png, after.png, after_points.png and drag.gif to `out`."""
    drag = make_drag(scenario, seed, G.z_dim, G.img_resolution)
    session = DragSession(G, G.mapping(drag.z_before.to(G.mapping.w_avg.device), None),
                          config=DragConfig.preset(preset, learning_rate=registry.default_learning_rate(info)))
    session.set_points(drag.handles, drag.targets)
    out.mkdir(parents=True, exist_ok=True)
    before = to_pil(session.image())
    before.save(out / "before.png")
    frames = [draw_points(before, drag.handles, drag.targets, scale)]
    step = None
    for step in session.run(max_steps=steps, preview_every=preview_every):
        if step.preview is not None:
            frames.append(draw_points(to_pil(step.preview), step.handles, drag.targets, scale))
    after = to_pil(session.image())
    after.save(out / "after.png")
    frames.append(draw_points(after, step.handles, drag.targets, scale))
    frames[-1].save(out / "after_points.png")
    save_gif(frames, str(out / "drag.gif"))
    return drag, step


@torch.no_grad()
def sample_grid(G: torch.nn.Module, seeds: list[int], path: Path) -> None:
    """Two rows per seed column: the world's render of the seed's parameters, then the generator's image (psi 1)."""
    z = torch.cat([seed_to_z(s, G.z_dim) for s in seeds])
    drawn = G.synthesis(G.mapping(z.to(G.mapping.w_avg.device), None), noise_mode="const").cpu()
    truth = render_targets(z, G.img_resolution)

    def row(images: torch.Tensor) -> np.ndarray:
        return np.concatenate([np.asarray(to_pil(img[None])) for img in images], axis=1)

    Image.fromarray(np.concatenate([row(truth), row(drawn)], axis=0)).save(path)
