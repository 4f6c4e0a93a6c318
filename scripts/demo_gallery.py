"""Regenerate docs/demo/: the demo model's sample grid and one drag GIF per scenario.

    .venv/bin/python scripts/demo_gallery.py [--seed 0] [--out docs/demo]

Every scenario is dragged on the same seed, so the pictures are not picked per edit; the script
writes each drag's outcome into docs/demo/README.md next to the pictures.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from draggan_core import load_generator, registry
from draggan_core.formats import native
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
    rows = []
    for name in SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            _, step = run_scenario(G, info, name, args.seed, Path(tmp), steps=args.steps, preview_every=4, scale=2)
            shutil.copy(Path(tmp) / "drag.gif", out / f"{name}.gif")
        rows.append(f"| {name.replace('_', ' ')} | ![{name}]({name}.gif) | {step.reason} after {step.step} steps | "
                    f"{step.distance:.2f} px |")
        print(rows[-1])
    (out / "README.md").write_text(page(path, args.seed, args.grid_seeds, rows))
    print(f"wrote {out / 'README.md'}")
    return 0


def page(model_path: str, seed: int, grid_seeds: int, rows: list[str]) -> str:
    meta = native.read_metadata(model_path)
    return f"""# The demo model at work

Made by `scripts/demo_gallery.py --seed {seed}` from `draggan_core/demo/demo_model.safetensors`
({meta.get("trained_iterations", "?")} training iterations); regenerate it after retraining.

## Samples

![samples](samples.png)

Seeds 0-{grid_seeds - 1} at truncation psi 1: the top row is what the procedural world renders for each
seed's parameters (the training target), the bottom row is what the generator draws.

## Drags (seed {seed}, every scenario, not picked per edit)

Red: handle points as tracked; blue: targets taken from the world's geometry after the edit
(`draggan_core/demo/scenarios.py`). Numbers over many seeds: the README's demo-model table.

| scenario | drag | outcome | largest handle-target distance |
|---|---|---|---|
""" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
