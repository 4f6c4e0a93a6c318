"""Drag success and paired reconstruction on the embedded demo model.

For every seed and scenario (raise an ear, open the mouth, turn or move the head) it drags the
landmarks of the seed's image to where the procedural world puts them after the edit, and reports:

* success: the tracked handles ended within the stop distance of their targets;
* final distance: mean handle-to-target distance in pixels after the drag;
* content moved: the world parameters fitted to the result (world.fit_params) put the dragged
  landmarks this many pixels from the targets (vs. before the drag), i.e. the part really moved;
* paired reconstruction (the paper's Table 2 protocol): MSE and SSIM between the drag result and
  the generator's image of the edited parameters, inside the region around the dragged points
  (the bounding box of handles and targets grown by 12 px), with "no edit" as the baseline.

    python benchmarks/bench_demo_drags.py --seeds 10 [--steps 200] [--scenario open_mouth ...] [--lr 0.002]
        [--precision bf16] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

from draggan_core import load_generator, registry
from draggan_core.demo import world
from draggan_core.demo.scenarios import SCENARIOS, make_drag
from draggan_core.drag import DragConfig, DragSession
from draggan_core.images import to_uint8
from draggan_core.losses import ssim
from draggan_core.precision import PRECISIONS


def region(drag, size: int, margin: int = 12) -> tuple[slice, slice]:
    pts = np.array(drag.handles + drag.targets)
    x0, y0 = np.floor(pts.min(axis=0) - margin).astype(int).clip(0, size)
    x1, y1 = np.ceil(pts.max(axis=0) + margin + 1).astype(int).clip(0, size)
    return slice(y0, y1), slice(x0, x1)


def compare(a: torch.Tensor, b: torch.Tensor, box: tuple[slice, slice]) -> tuple[float, float]:
    """MSE (images in [-1, 1]) and SSIM inside the box."""
    a, b = a[:, :, box[0], box[1]], b[:, :, box[0], box[1]]
    return float((a - b).square().mean()), float(ssim(a, b).mean())


def landmark_error(image: np.ndarray, drag, names: tuple[str, ...], init: np.ndarray) -> float:
    fitted = world.fit_params(image, init=init)
    marks = world.landmarks(fitted, image.shape[0])
    return float(np.mean([np.hypot(*(np.subtract(marks[n], t))) for n, t in zip(names, drag.targets)]))


def run(G, lr: float, scenarios: list[str], seeds: int, steps: int, fit: bool, precision: str = "fp32",
        images: str | None = None) -> list[dict]:
    rows = []
    for name in scenarios:
        scenario = SCENARIOS[name]
        for seed in range(seeds):
            try:
                drag = make_drag(name, seed, G.z_dim, G.img_resolution)
            except ValueError as e:  # the edit hardly moves this seed's points, or cannot be reached
                print(f"skipped: {e}", flush=True)
                continue
            with torch.no_grad():
                w1 = G.mapping(drag.z_before, None)
                target_img = G.synthesis(G.mapping(drag.z_after, None))
            s = DragSession(G, w1, config=DragConfig(learning_rate=lr, precision=precision))
            s.set_points(drag.handles, drag.targets)
            before = s.image()
            t0 = time.perf_counter()
            for step in s.run(max_steps=steps):
                pass
            after = s.image()
            n = len(scenario.landmarks)
            dist = np.hypot(*(np.array(step.handles[:n]) - np.array(drag.targets[:n])).T).mean()
            box = region(drag, G.img_resolution)
            mse_edit, ssim_edit = compare(after, target_img, box)
            mse_none, ssim_none = compare(before, target_img, box)
            row = {"scenario": name, "seed": seed, "reached": step.reason == "reached", "steps": step.step,
                   "handles": step.handles,
                   "seconds": time.perf_counter() - t0, "final_distance": float(dist), "mse_edit": mse_edit,
                   "ssim_edit": ssim_edit, "mse_none": mse_none, "ssim_none": ssim_none}
            if images:
                row["image"] = os.path.join(images, f"{name}-{seed}.png")
                Image.fromarray(to_uint8(after)).save(row["image"])
            if fit:
                row["content_error_after"] = landmark_error(to_uint8(after), drag, scenario.landmarks,
                                                            drag.params_before)
                row["content_error_before"] = landmark_error(to_uint8(before), drag, scenario.landmarks,
                                                             drag.params_before)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| scenario | drags | success | final distance px | content error px (before -> after) | "
             "MSE x100 no edit -> drag | SSIM no edit -> drag |", "|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault(r["scenario"], []).append(r)
    groups["all"] = rows
    for name, rs in groups.items():
        mean = lambda key: statistics.mean(r[key] for r in rs)  # noqa: E731
        content = (f"{mean('content_error_before'):.1f} -> {mean('content_error_after'):.1f}"
                   if "content_error_after" in rs[0] else "-")
        lines.append(f"| {name} | {len(rs)} | {sum(r['reached'] for r in rs) / len(rs):.0%} | "
                     f"{mean('final_distance'):.2f} | {content} | {100 * mean('mse_none'):.2f} -> "
                     f"{100 * mean('mse_edit'):.2f} | {mean('ssim_none'):.3f} -> {mean('ssim_edit'):.3f} |")
    return "\n".join(lines)


def compare_runs(path_a: str, path_b: str) -> str:
    """Both runs' tables, then how far run b's drags ended from run a's: tracked handles (px) and, where
    both saved images, the 8-bit result images (mean and max absolute difference, share of pixels > 8)."""
    runs = []
    for path in (path_a, path_b):
        with open(path) as f:
            runs.append(json.load(f))
    a = {(r["scenario"], r["seed"]): r for r in runs[0]}
    pairs = [(a[(r["scenario"], r["seed"])], r) for r in runs[1] if (r["scenario"], r["seed"]) in a]
    handle_px = [float(np.abs(np.subtract(x["handles"], y["handles"])).max()) for x, y in pairs]
    lines = [f"## {path_a}", table(runs[0]), f"## {path_b}", table(runs[1]), "",
             f"{len(pairs)} drags in both; largest handle difference per drag: median {np.median(handle_px):.1f} px, "
             f"max {max(handle_px):.1f} px, {sum(h <= 1 for h in handle_px)}/{len(pairs)} within 1 px"]
    diffs = [np.abs(np.asarray(Image.open(x["image"]), np.int16) - np.asarray(Image.open(y["image"]), np.int16))
             for x, y in pairs if "image" in x and "image" in y]
    if diffs:
        lines.append(f"result images (8-bit): mean |diff| {np.mean([d.mean() for d in diffs]):.2f}, "
                     f"max {max(int(d.max()) for d in diffs)}, pixels > 8 apart "
                     f"{np.mean([(d.max(axis=2) > 8).mean() for d in diffs]):.1%}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=registry.DEMO_MODEL)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--no-fit", action="store_true", help="skip the (slower) world-parameter fit of results")
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="only these (default: all)")
    ap.add_argument("--lr", type=float, default=None, help="drag learning rate (default: the model's registry value)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS, help="the drag steps' synthesis type")
    ap.add_argument("--images", default=None, help="save each drag's result here as <scenario>-<seed>.png")
    ap.add_argument("--compare", nargs=2, metavar="JSON", help="only compare two earlier runs' --json (and images)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.compare:
        print(compare_runs(*args.compare))
        return 0
    if args.images:
        os.makedirs(args.images, exist_ok=True)
    path, info = registry.resolve(args.model)
    G = load_generator(path)
    lr = args.lr or registry.default_learning_rate(info)
    rows = run(G, lr, args.scenario or list(SCENARIOS), args.seeds, args.steps, fit=not args.no_fit,
               precision=args.precision, images=args.images)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
