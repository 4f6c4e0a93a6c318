"""Aligned framing on the demo world: inversion and drags on turned, scaled and moved cats, without vs with alignment.

Every layer is a seed's cat as the procedural world renders it (128 px, the seed's parameters at psi
1), placed into a 400 x 360 RGBA canvas by a random similarity (turned -30..30 degrees, scaled
0.6-1.6x, moved), over a random gradient, with a half-transparent band crossing it. The world's
landmarks go through the same similarity. Each layer is then edited twice on the demo model:

* without alignment: the axis-aligned bounding box of the placed render, fitted into the model's
  image as a selection would be (draggan_core.region, margin 0: the tightest box);
* with alignment: the demo framing from the moved eye and mouth-corner landmarks
  (draggan_core.alignment), i.e. the render turned upright and scaled back to the training framing.

Reported per mode, over the layers:

* inversion quality of the projection (W then W+) and after pivotal tuning: PSNR and SSIM of the
  reconstruction composited back into the layer, against the layer, on the cat's pixels that both
  modes cover (the placed render, 3 px inside its edge);
* drags: the layer's scenario (the demo scenarios in turn, a seed whose edit hardly moves its points is
  skipped) with handles and targets moved into layer pixels like the landmarks. Success: the drag
  stopped because its handles reached their targets; final distance: dragged handles to targets,
  in the render's pixels (layer pixels / placement scale); content error: the world's parameters
  fitted to the result, turned back upright (world.fit_params), put the dragged landmarks this far
  from the targets (render pixels), before -> after the drag;
* the composite checks: the drag's result composited with a mask (a disk around the points, feather
  8) is the layer's bytes outside the mask, alpha everywhere; without a mask, the layer's bytes
  outside the quad (or region) the model sees. Counted over every layer and mode.

    python benchmarks/bench_align.py [--layers 12] [--quick] [--no-fit] [--json out.json] [--table out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

from draggan_core import load_generator, registry
from draggan_core.alignment import DEMO, AlignedMapping
from draggan_core.demo import world
from draggan_core.demo.scenarios import SCENARIOS, make_drag
from draggan_core.drag import DragConfig, DragSession
from draggan_core.invert import InversionConfig, project, tune
from draggan_core.losses import ssim
from draggan_core.region import RegionMapping, composite, distance_to_outside, select_region

CANVAS = (360, 400)  # (height, width) of every layer
RENDER = 128  # the world's render, the demo model's size
FULL_STEPS = (200, 80, 100)  # W, W+, PTI: the daemon's CPU defaults for the 128 px demo model
QUICK_STEPS = (60, 20, 30)
MODES = ("region", "aligned")


# ------------------------------------------------------------------ layers

class Placement:
    """p_layer = scale * R(angle) (p_render - render centre) + centre, on centres-at-integers pixels."""

    def __init__(self, angle: float, scale: float, centre: tuple[float, float]):
        a = math.radians(angle)
        self.angle, self.scale, self.centre = angle, scale, np.asarray(centre, np.float64)
        self.rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self.mid = (RENDER - 1) / 2

    def to_layer(self, pts) -> np.ndarray:
        return (np.asarray(pts, np.float64) - self.mid) @ self.rot.T * self.scale + self.centre

    def to_render(self, pts) -> np.ndarray:
        return (np.asarray(pts, np.float64) - self.centre) @ self.rot / self.scale + self.mid

    def pil_affine(self) -> tuple[float, ...]:
        """PIL's AFFINE data (output -> input, pixel edges at integers) of to_render."""
        m = self.rot / self.scale  # row-vector form: q = (p - c) @ rot / s + mid
        a, b, d, e = m[0, 0], m[1, 0], m[0, 1], m[1, 1]
        # q_edge = M (p_edge - 0.5 - c) + mid + 0.5
        off = -np.array([[a, b], [d, e]]) @ (self.centre + 0.5) + self.mid + 0.5
        return a, b, off[0], d, e, off[1]


def random_placement(rng: np.random.Generator) -> Placement:
    angle, scale = rng.uniform(-30, 30), rng.uniform(0.6, 1.6)
    half = RENDER * scale * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))) / 2
    h, w = CANVAS
    centre = (rng.uniform(half + 2, w - half - 3), rng.uniform(half + 2, h - half - 3))
    return Placement(angle, scale, centre)


def make_layer(render: np.ndarray, place: Placement, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGBA layer, bool footprint of the render 3 px inside its edge). Placed with PIL's bicubic
    affine transform, not the code under test; colour and coverage go through the same transform,
    so the render's edge blends into the background without a dark fringe."""
    h, w = CANVAS
    data = place.pil_affine()
    rgb = np.asarray(Image.fromarray(render).transform((w, h), Image.AFFINE, data, Image.BICUBIC), np.float64)
    cover = np.asarray(Image.fromarray(np.full((RENDER, RENDER), 255, np.uint8)).transform(
        (w, h), Image.AFFINE, data, Image.BICUBIC), np.float64) / 255
    yy, xx = np.mgrid[:h, :w]
    c0, c1 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    t = ((xx / w + yy / h) / 2)[..., None]
    ripple = 12 * np.sin(xx / rng.uniform(9, 20) + yy / rng.uniform(11, 25))[..., None]
    background = np.clip(c0 * (1 - t) + c1 * t + ripple, 0, 255)
    layer = np.empty((h, w, 4), np.uint8)
    layer[..., :3] = np.clip(np.rint(rgb + background * (1 - cover[..., None])), 0, 255)
    layer[..., 3] = 255
    band = int(place.centre[0] + rng.uniform(-40, 40))
    layer[:, band:band + 30, 3] = 160  # half-transparent, across the cat
    inside = distance_to_outside(cover >= 1 - 1e-6, 3, (False,) * 4) > 3
    return layer, inside


# ------------------------------------------------------------------ measures

def quality(layer: np.ndarray, result: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """PSNR (dB, 8-bit RGB) and SSIM of result against layer on `where` (SSIM on its bounding box, the
    other pixels set equal in both)."""
    a, b = layer[..., :3].astype(np.float64), result[..., :3].astype(np.float64)
    mse = float(((a - b)[where] ** 2).mean())
    psnr = 10 * math.log10(255 ** 2 / max(mse, 1e-12))
    ys, xs = np.nonzero(where)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    b = np.where(where[..., None], b, a)
    ta, tb = (torch.from_numpy(x[box]).permute(2, 0, 1)[None].float() / 127.5 - 1 for x in (a, b))
    return psnr, float(ssim(ta, tb)[0])


def mapping_for(mode: str, layer: np.ndarray, place: Placement, marks: dict, model_size) -> object:
    if mode == "aligned":
        return AlignedMapping.from_landmarks(layer.shape[:2], model_size, DEMO, marks)
    corners = place.to_layer([(-0.5, -0.5), (RENDER - 0.5, -0.5), (RENDER - 0.5, RENDER - 0.5), (-0.5, RENDER - 0.5)])
    x0, y0 = np.floor(corners.min(0) + 0.5).astype(int)
    x1, y1 = np.ceil(corners.max(0) + 0.5).astype(int)
    rect = select_region(layer.shape[:2], (int(x0), int(y0), int(x1 - x0), int(y1 - y0)), margin=0.0, min_margin=0,
                         model_size=model_size)
    return RegionMapping.create(layer.shape[:2], model_size, rect)


def covered(mapping, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    cov = mapping.region_coverage()
    out[mapping.region.slices] = True if cov is None else cov
    return out


def upright(layer: np.ndarray, place: Placement) -> np.ndarray:
    """The layer turned back into the render's frame (RGB, 128 px), for the world's parameter fit."""
    m = np.linalg.inv(np.array([[*place.pil_affine()[:3]], [*place.pil_affine()[3:]], [0, 0, 1]]))
    img = Image.fromarray(layer[..., :3]).transform((RENDER, RENDER), Image.AFFINE, tuple(m[:2].ravel()),
                                                    Image.BICUBIC)
    return np.asarray(img)


def content_error(image: np.ndarray, names: tuple[str, ...], targets: np.ndarray, init: np.ndarray) -> float:
    fitted = world.fit_params(image, init=init)
    marks = world.landmarks(fitted, RENDER)
    return float(np.mean([np.hypot(*(np.subtract(marks[n], t))) for n, t in zip(names, targets)]))


# ------------------------------------------------------------------ one layer

def run_layer(G, lr: float, seed: int, scenario: str, rng: np.random.Generator, steps: tuple[int, int, int],
              drag_steps: int, fit: bool) -> list[dict]:
    drag = make_drag(scenario, seed, G.z_dim, RENDER)
    render = world.render(drag.params_before, RENDER)
    place = random_placement(rng)
    layer, inside = make_layer(render, place, rng)
    marks = {k: tuple(place.to_layer([(x - 0.5, y - 0.5)])[0]) for k, (x, y) in world.landmarks(
        drag.params_before, RENDER).items()}
    # Scenario points are world landmarks (pixel column j spans [j, j + 1)): to centres at integers, then placed.
    handles = place.to_layer(np.asarray(drag.handles) - 0.5)
    targets = place.to_layer(np.asarray(drag.targets) - 0.5)
    n = len(SCENARIOS[scenario].landmarks)
    maps = {mode: mapping_for(mode, layer, place, marks, tuple(G.img_size)) for mode in MODES}
    where = inside & covered(maps["region"], layer.shape[:2]) & covered(maps["aligned"], layer.shape[:2])
    rows = []
    for mode, mapping in maps.items():
        row = {"seed": seed, "scenario": scenario, "mode": mode, "angle": place.angle, "scale": place.scale}
        target, valid = mapping.crop_and_fit(layer)
        cfg = InversionConfig(w_steps=steps[0], wplus_steps=steps[1], pti_steps=steps[2])
        t0 = time.perf_counter()
        gen = project(G, target, valid, cfg)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                projected = stop.value
                break
        gen = tune(G, projected.ws, target, valid, cfg)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                tuned = stop.value
                break
        row["invert_seconds"] = time.perf_counter() - t0
        for stage, inv in (("proj", projected), ("pti", tuned)):
            back = composite(layer, mapping, inv.image(), feather=0).layer
            row[f"psnr_{stage}"], row[f"ssim_{stage}"] = quality(layer, back, where)
        reference = tuned.image()
        session = DragSession(tuned.generator, tuned.ws, config=DragConfig(learning_rate=lr))
        session.set_points(mapping.clamp_model(mapping.to_model(handles)),
                           mapping.clamp_model(mapping.to_model(targets)))
        t0 = time.perf_counter()
        for step in session.run(max_steps=drag_steps):
            pass
        row["drag_seconds"] = time.perf_counter() - t0
        row["reached"] = step.reason == "reached"
        row["drag_steps"] = step.step
        final = np.asarray(mapping.to_layer(np.asarray(step.handles[:n])))
        row["final_distance"] = float(np.hypot(*(final - targets[:n]).T).mean() / place.scale)
        edited = session.image()
        # Composite checks: with a mask (a disk around the points) and without one (the changed pixels).
        yy, xx = np.mgrid[:CANVAS[0], :CANVAS[1]]
        pts = np.concatenate([handles, targets])
        radius = 20 * place.scale
        mask = np.zeros(CANVAS, bool)
        for x, y in pts:
            mask |= (xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2
        masked = composite(layer, mapping, edited, mask=mask, feather=8).layer
        free = composite(layer, mapping, edited, reference=reference, feather=8).layer
        seen = covered(mapping, CANVAS)
        row["exact_outside_mask"] = bool((masked[~mask] == layer[~mask]).all())
        row["exact_outside_quad"] = bool((free[~seen] == layer[~seen]).all())
        row["alpha_kept"] = bool((masked[..., 3] == layer[..., 3]).all() and (free[..., 3] == layer[..., 3]).all())
        if fit:
            names = SCENARIOS[scenario].landmarks
            truth = np.asarray(drag.targets[:n])
            recon = composite(layer, mapping, reference, feather=0).layer
            row["content_before"] = content_error(upright(recon, place), names, truth, drag.params_before)
            row["content_after"] = content_error(upright(free, place), names, truth, drag.params_before)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ------------------------------------------------------------------ table

TILT_SPLIT = 15.0  # degrees: the table also shows the layers turned less and more than this


def table(rows: list[dict]) -> str:
    lines = ["| mode | layers | PSNR dB W+ / PTI | SSIM W+ / PTI | drags reached | final distance px | "
             "content error px (before -> after) | exact outside mask | exact outside quad | alpha kept |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups = [("", lambda r: True), (f", turned < {TILT_SPLIT:g} deg", lambda r: abs(r["angle"]) < TILT_SPLIT),
              (f", turned >= {TILT_SPLIT:g} deg", lambda r: abs(r["angle"]) >= TILT_SPLIT)]
    for (suffix, keep), mode in ((g, m) for g in groups for m in MODES):
        rs = [r for r in rows if r["mode"] == mode and keep(r)]
        if not rs:
            continue
        mean = lambda key: statistics.mean(r[key] for r in rs)  # noqa: E731
        content = (f"{mean('content_before'):.1f} -> {mean('content_after'):.1f}" if "content_after" in rs[0]
                   else "-")
        count = lambda key: f"{sum(r[key] for r in rs)}/{len(rs)}"  # noqa: E731
        label = ("aligned (demo framing)" if mode == "aligned" else "region (bounding box)") + suffix
        lines.append(f"| {label} | {len(rs)} | {mean('psnr_proj'):.2f} / {mean('psnr_pti'):.2f} | "
                     f"{mean('ssim_proj'):.3f} / {mean('ssim_pti'):.3f} | {count('reached')} | "
                     f"{mean('final_distance'):.2f} | {content} | {count('exact_outside_mask')} | "
                     f"{count('exact_outside_quad')} | {count('alpha_kept')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help=f"inversion steps {QUICK_STEPS} instead of {FULL_STEPS}, "
                                                         "100 drag steps instead of 200")
    ap.add_argument("--no-fit", action="store_true", help="skip the (slower) world-parameter fit of results")
    ap.add_argument("--seed", type=int, default=0, help="of the placements")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", metavar="JSON", default=None, help="only print the table of an earlier run's --json")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    torch.set_num_threads(args.threads)
    path, info = registry.resolve(registry.DEMO_MODEL)
    G = load_generator(path)
    lr = registry.default_learning_rate(info)
    rng = np.random.default_rng(args.seed)
    steps, drag_steps = (QUICK_STEPS, 100) if args.quick else (FULL_STEPS, 200)
    names = list(SCENARIOS)
    rows, seed, made = [], 0, 0
    while made < args.layers:
        scenario = names[made % len(names)]
        try:
            rows += run_layer(G, lr, seed, scenario, rng, steps, drag_steps, fit=not args.no_fit)
            made += 1
        except ValueError as e:  # the scenario hardly moves this seed's points
            print(f"skipped: {e}", flush=True)
        seed += 1
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
