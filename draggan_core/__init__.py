"""DragGAN core: StyleGAN generators, safe checkpoint loading and the point-drag editing engine.

Public API::

    from draggan_core import load_generator
    G = load_generator("path/to/checkpoint")
    ws = G.mapping(z, None, truncation_psi=0.7)
    img = G.synthesis(ws, noise_mode="const")

    s = DragSession(G, seed)
    s.set_points(handles=[(x, y)], targets=[(x2, y2)])
    for step in s.run(max_steps=200): ...
"""
from .checkpoint import CheckpointError, load_generator
from .drag import DragConfig, DragSession, DragStep
from .stylegan2 import Generator, GeneratorConfig, seed_to_z, ws_from_seed

__all__ = ["CheckpointError", "DragConfig", "DragSession", "DragStep", "Generator", "GeneratorConfig",
           "load_generator", "seed_to_z", "ws_from_seed"]
__version__ = "0.1.0"
