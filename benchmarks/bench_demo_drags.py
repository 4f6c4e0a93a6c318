"""Drag success by content, and paired reconstruction, on the embedded demo model.

For every seed and scenario (raise an ear, open the mouth, turn or move the head) it drags the
landmarks of the seed's image to where the procedural world puts them after the edit, once per
DragConfig preset, and reports per preset and scenario:

* landed: the tracked handles reached their targets (the loop's stop distance) AND the content is
  there: the world parameters fitted to the result (world.fit_params) put *each* dragged landmark
  within 2 px of its target;
* reached: the tracked handles reached (the loop's own verdict, which can be wrong);
* <=1 px: each fitted landmark within 1 px of its target;
* steps, final distance (mean tracked handle to target), content error (mean fitted landmark to
  target, before -> after), ms per step;
* paired reconstruction (the paper's Table 2 protocol): MSE and SSIM between the drag result and
  the generator's image of the edited parameters, inside the region around the dragged points
  (the bounding box of handles and targets grown by 12 px), with "no edit" as the baseline.

Each row also keeps what benchmarks/diagnose_drags.py needs to sort failures into causes: the
per-step trajectory, the fits of the start and of the generator's image of the target, the
anchors' content error and the trackers' nearest-neighbour margins at the start and the end.

    python benchmarks/bench_demo_drags.py --seeds 10 [--first-seed 0] [--preset paper --preset studio] [--steps 200]
        [--scenario open_mouth ...] [--lr 0.002] [--no-fit] [--workers 2] [--json out.json] [--images DIR]
    python benchmarks/bench_demo_drags.py --compare a.json b.json     # how far b's drags ended from a's

A preset takes overrides, e.g. --preset studio+precision=bf16 (a run of the bf16 synthesis).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
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
from draggan_core.tracking import match_margins

LANDED_PX = 2.0  # content criterion: each fitted landmark within this many pixels of its target
CLOSE_PX = 1.0  # the stricter column


def region(drag, size: int, margin: int = 12) -> tuple[slice, slice]:
    pts = np.array(drag.handles + drag.targets)
    x0, y0 = np.floor(pts.min(axis=0) - margin).astype(int).clip(0, size)
    x1, y1 = np.ceil(pts.max(axis=0) + margin + 1).astype(int).clip(0, size)
    return slice(y0, y1), slice(x0, x1)


def compare(a: torch.Tensor, b: torch.Tensor, box: tuple[slice, slice]) -> tuple[float, float]:
    """MSE (images in [-1, 1]) and SSIM inside the box."""
    a, b = a[:, :, box[0], box[1]], b[:, :, box[0], box[1]]
    return float((a - b).square().mean()), float(ssim(a, b).mean())


def fitted_marks(image: torch.Tensor, init: np.ndarray) -> dict[str, tuple[float, float]]:
    """The landmarks of the world's parameters fitted to `image` (where the content really is)."""
    pixels = to_uint8(image)
    return world.landmarks(world.fit_params(pixels, init=init), pixels.shape[0])


def distances(marks: dict, names: tuple[str, ...], points: list) -> list[float]:
    return [float(np.hypot(*np.subtract(marks[n], p))) for n, p in zip(names, points)]


def drag_once(G, drag, config: DragConfig, steps: int, fit: bool, target_img: torch.Tensor, w1: torch.Tensor,
              image_path: str | None = None) -> dict:
    """One drag with one config: the benchmark's row, with its trajectory for the diagnosis; the
    result image goes to image_path when given (for --compare)."""
    scenario = SCENARIOS[drag.scenario]
    n = len(scenario.landmarks)
    s = DragSession(G, w1, config=config)
    s.set_points(drag.handles, drag.targets)
    before = s.image()
    margin_start = match_margins(s.field(), s.handles, s.templates, s.r2).tolist()
    trajectory, per_step = [], []
    t0 = time.perf_counter()
    for step in s.run(max_steps=steps):
        trajectory.append([[round(v, 2) for v in h] for h in step.handles])
        per_step.append(round(step.distance, 3))
    seconds = time.perf_counter() - t0
    after = s.image()
    box = region(drag, G.img_resolution)
    mse_edit, ssim_edit = compare(after, target_img, box)
    mse_none, ssim_none = compare(before, target_img, box)
    # against the session's targets: snapping moves a target with its handle (the drag vector stays)
    shift = np.array(s.target_list()[:n]) - np.array(drag.targets[:n])
    final = np.hypot(*(np.array(step.handles[:n]) - np.array(s.target_list()[:n])).T)
    row = {"scenario": drag.scenario, "seed": drag.seed, "reached": step.reason == "reached", "reason": step.reason,
           "steps": step.step, "seconds": seconds, "ms_per_step": 1000 * seconds / step.step,
           "final_distance": float(final.mean()),
           "snap_px": float(np.hypot(*shift.T).max()),  # how far snapping moved a target
           "mse_edit": mse_edit, "ssim_edit": ssim_edit,
           "mse_none": mse_none, "ssim_none": ssim_none, "trajectory": trajectory, "distances": per_step,
           "margin_start": margin_start, "margin_end": match_margins(s.field(), s.handles, s.templates, s.r2).tolist()}
    if image_path:
        Image.fromarray(to_uint8(after)).save(image_path)
        row["image"] = image_path
    if fit:
        marks = fitted_marks(after, drag.params_before)
        errors = distances(marks, scenario.landmarks, drag.targets)
        row["content_errors"] = errors
        row["anchor_errors"] = distances(marks, scenario.anchors, drag.targets[n:])
        row["content_error_after"] = float(np.mean(errors))
        # where the tracker put each handle against where the world's fit puts its landmark in the result
        row["tracked_vs_fit"] = distances(marks, scenario.landmarks, list(np.array(step.handles[:n]) - shift))
        row["landed"] = row["reached"] and max(errors) <= LANDED_PX
        row["close"] = row["reached"] and max(errors) <= CLOSE_PX
    return row


def config_of(spec: str, lr: float) -> DragConfig:
    """A preset with optional overrides, for ablations: 'studio', 'studio+auto_region=0+snap=0' or
    'paper+precision=bf16' (a value that is not JSON is taken as a string)."""
    name, *sets = spec.split("+")
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in sets)}
    return DragConfig.preset(name, learning_rate=lr, **overrides)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def drag_rows(task: tuple) -> list[dict]:
    """All presets on one (scenario, seed): the fits of the start and of the target are shared."""
    model, name, seed, presets, lr, steps, fit, images = task
    torch.set_num_threads(1)  # workers split the cores between them
    G = load_generator(registry.resolve(model)[0])
    try:
        drag = make_drag(name, seed, G.z_dim, G.img_resolution)
    except ValueError as e:  # the edit hardly moves this seed's points, or cannot be reached
        print(f"skipped: {e}", flush=True)
        return []
    scenario = SCENARIOS[name]
    with torch.no_grad():
        w1 = G.mapping(drag.z_before, None)
        target_img = G.synthesis(G.mapping(drag.z_after, None))
        before_img = G.synthesis(w1)
    shared = {}
    if fit:
        start = fitted_marks(before_img, drag.params_before)
        shared = {"start_errors": distances(start, scenario.landmarks, drag.handles),
                  "content_error_before": float(np.mean(distances(start, scenario.landmarks, drag.targets))),
                  # the best a drag can do: the generator's own image of the edited parameters, fitted
                  "target_fit_errors": distances(fitted_marks(target_img, drag.params_after), scenario.landmarks,
                                                 drag.targets)}
    rows = []
    for preset in presets:
        image = os.path.join(images, f"{preset}-{name}-{seed}.png") if images else None
        row = {"preset": preset, **drag_once(G, drag, config_of(preset, lr), steps, fit, target_img, w1, image),
               **shared}
        rows.append(row)
        brief = {k: v for k, v in row.items() if k not in ("trajectory", "distances")}
        print(json.dumps(brief), flush=True)
    return rows


def run(model: str, presets: list[str], lr: float, scenarios: list[str], seeds: range, steps: int, fit: bool,
        workers: int = 1, out: str | None = None, images: str | None = None) -> list[dict]:
    """Every drag with every preset; rows are appended to `out` (JSON lines) as they finish.

    Seeds go in the outer loop, so a run cut short still covers every scenario.
    """
    tasks = [(model, name, seed, presets, lr, steps, fit, images) for seed in seeds for name in scenarios]
    rows = []
    with open(out or "/dev/null", "w") as sink:
        if workers <= 1:
            results = map(drag_rows, tasks)
        else:
            pool = mp.get_context("spawn").Pool(workers)
            results = pool.imap(drag_rows, tasks)
        for task_rows in results:
            rows += task_rows
            for row in task_rows:
                sink.write(json.dumps(row) + "\n")
            sink.flush()
        if workers > 1:
            pool.close()
    return rows


def read_rows(path: str) -> list[dict]:
    """The rows of a --json file (JSON lines)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(rows: list[dict]) -> str:
    fit = "content_error_after" in rows[0]
    lines = ["| preset | scenario | drags | landed | reached | <=1 px | steps | final distance px | "
             "content error px (before -> after) | MSE x100 no edit -> drag | SSIM no edit -> drag | ms/step |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    for preset in presets:
        groups: dict[str, list[dict]] = {}
        for r in rows:
            if r["preset"] == preset:
                groups.setdefault(r["scenario"], []).append(r)
        groups["all"] = [r for r in rows if r["preset"] == preset]
        for name, rs in groups.items():
            mean = lambda key: statistics.mean(r[key] for r in rs)  # noqa: E731
            share = lambda key: f"{sum(r[key] for r in rs) / len(rs):.0%}" if fit else "-"  # noqa: E731
            content = f"{mean('content_error_before'):.1f} -> {mean('content_error_after'):.1f}" if fit else "-"
            ms = 1000 * sum(r["seconds"] for r in rs) / sum(r["steps"] for r in rs)
            lines.append(f"| {preset} | {name} | {len(rs)} | {share('landed')} | "
                         f"{sum(r['reached'] for r in rs) / len(rs):.0%} | {share('close')} | {mean('steps'):.0f} | "
                         f"{mean('final_distance'):.2f} | {content} | {100 * mean('mse_none'):.2f} -> "
                         f"{100 * mean('mse_edit'):.2f} | {mean('ssim_none'):.3f} -> {mean('ssim_edit'):.3f} | "
                         f"{ms:.0f} |")
    return "\n".join(lines)


def compare_runs(path_a: str, path_b: str) -> str:
    """Both runs' tables (one preset each), then how far run b's drags ended from run a's (matched by scenario and seed):
    the final tracked handles (px) and, where both saved images, the 8-bit results (mean and max
    absolute difference, share of pixels more than 8 apart)."""
    runs = [read_rows(path_a), read_rows(path_b)]
    a = {(r["scenario"], r["seed"]): r for r in runs[0]}
    pairs = [(a[(r["scenario"], r["seed"])], r) for r in runs[1] if (r["scenario"], r["seed"]) in a]
    handle_px = [float(np.abs(np.subtract(x["trajectory"][-1], y["trajectory"][-1])).max()) for x, y in pairs]
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
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (to shard a run)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--preset", action="append",
                    help="DragConfig preset, repeatable, with overrides for ablations: studio+auto_region=0 (default: studio)")
    ap.add_argument("--no-fit", action="store_true", help="skip the (slower) world-parameter fit of results")
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="only these (default: all)")
    ap.add_argument("--lr", type=float, default=None, help="drag learning rate (default: the model's registry value)")
    ap.add_argument("--workers", type=int, default=1, help="drags in parallel, one torch thread each")
    ap.add_argument("--json", default=None, help="write every row here as it finishes (JSON lines)")
    ap.add_argument("--table", default=None, metavar="JSON", help="print the table of a --json file and exit")
    ap.add_argument("--images", default=None, help="save each drag's result here as <preset>-<scenario>-<seed>.png")
    ap.add_argument("--compare", nargs=2, metavar="JSON", help="only compare two earlier runs' --json (and images)")
    args = ap.parse_args()
    if args.table:
        print(table(read_rows(args.table)))
        return 0
    if args.compare:
        print(compare_runs(*args.compare))
        return 0
    if args.images:
        os.makedirs(args.images, exist_ok=True)
    _, info = registry.resolve(args.model)
    lr = args.lr or registry.default_learning_rate(info)
    rows = run(args.model, args.preset or ["studio"], lr, args.scenario or list(SCENARIOS),
               range(args.first_seed, args.first_seed + args.seeds), args.steps,
               fit=not args.no_fit, workers=args.workers, out=args.json, images=args.images)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
