"""The memory to plan per session at 256, 512 and 1024 px, as the daemon's session store counts it.

For each size it builds a StyleGAN2 generator of the official config-f shape (channel base 32768, at most 512
channels; the weights do not change the sizes), opens a session as /generate does, drags it (one handle, an
editable mask) and records each drag's state as the daemon does, then reads backend/sessions.py's own
estimate: the live DragSession, the initial state, each further kept state, and what a real layer's session
adds (its tuned generator copy after pivotal tuning, its reconstruction; the layer itself is 4 bytes a pixel
of the layer as sent). The generator each device loads once per model is listed beside. CPU only.

    .venv/bin/python benchmarks/session_sizes.py [--sizes 256 512 1024] [--drags 3]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from backend.config import Limits
from backend.geometry import Mapping
from backend.sessions import Session, SessionState, estimate_bytes
from draggan_core.drag import DragSession
from draggan_core.invert import module_bytes
from draggan_core.stylegan2 import Generator, GeneratorConfig

MIB = 2 ** 20


def sizes_at(resolution: int, drags: int) -> dict[str, float]:
    """MiB, as the session store counts them, for one session of a `resolution` px model."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=resolution)).eval().requires_grad_(False)
    session = Session(model=None, drag=DragSession(G, 0), mapping=Mapping(resolution, resolution, resolution,
                                                                          resolution))
    session.start_states()
    opened = session.estimate()
    mask = np.zeros((resolution, resolution), np.uint8)
    mask[resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 255
    handle = (resolution * 0.45, resolution * 0.5)
    for i in range(drags):
        target = (handle[0] + resolution * 0.02 * (i + 1), handle[1])
        session.drag.set_points([handle], [target])
        session.drag.set_mask(mask)
        for _ in session.drag.run(max_steps=2):
            pass
        session.add_state(SessionState.of(session.drag, [handle], [target]), Limits().max_states_per_session)
    state = session.states[-1].bytes
    at_bound = session.estimate() + (Limits().max_states_per_session - len(session.states)) * state
    tuned = module_bytes(G)  # pivotal tuning keeps a full copy of the generator in the session
    reference = 3 * resolution * resolution * 4  # the reconstruction, float32
    return {"model": module_bytes(G) / MIB, "opened": opened / MIB, "live drag": estimate_bytes(session.drag) / MIB,
            "state": state / MIB, "full": at_bound / MIB, "real extra": (tuned + reference) / MIB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--drags", type=int, default=3, help="drags recorded before the sizes are read")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    states = Limits().max_states_per_session
    print(f"| model px | generator (once per device and model) | session after /generate | live DragSession with "
          f"a mask | one more kept state | session after drags with a mask, {states} states kept | a real layer "
          f"adds (tuned copy + reconstruction; plus the layer, 4 B/px) |")
    print("|---|---|---|---|---|---|---|")
    for resolution in args.sizes:
        s = sizes_at(resolution, args.drags)
        print(f"| {resolution} | {s['model']:.1f} MiB | {s['opened']:.2f} MiB | {s['live drag']:.2f} MiB | "
              f"{s['state']:.3f} MiB | {s['full']:.2f} MiB | {s['real extra']:.1f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
