"""Regenerate docs/demo/: the demo model's sample grid and one drag GIF per scenario.

    .venv/bin/python scripts/demo_gallery.py [--seed 0] [--out docs/demo]

Every scenario is dragged on the same seed, so the pictures are not picked per edit; the script
prints each drag's outcome, which docs/demo/README.md records next to the pictures.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from draggan_core import load_generator, registry
from draggan_core.demo.scenarios import SCENARIOS
from draggan_core.demo.showcase import run_scenario, sample_grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="the seed every scenario is dragged on")
    ap.add_argument("--grid-seeds", type=int, default=8, help="columns of the sample grid (seeds 0..N-1)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default="docs/demo")
    args = ap.parse_args(argv)
    path, info = registry.resolve(registry.DEMO_MODEL)
    G = load_generator(path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sample_grid(G, list(range(args.grid_seeds)), out / "samples.png")
    print(f"wrote {out / 'samples.png'} (top: the world's render, bottom: the generator, seeds 0..{args.grid_seeds - 1})")
    for name in SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            drag, step = run_scenario(G, info, name, args.seed, Path(tmp), steps=args.steps, preview_every=4, scale=2)
            shutil.copy(Path(tmp) / "drag.gif", out / f"{name}.gif")
        print(f"{name} seed {args.seed}: {step.reason} after {step.step} steps, "
              f"largest handle-target distance {step.distance:.2f} px -> {out / f'{name}.gif'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
