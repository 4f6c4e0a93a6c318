"""Drag-loop benchmark: the fast path (truncated synthesis, sparse feature sampling) against the
reference-style path (full forward every step, feature map resized to image size), side by side.

For each model and path it runs a fixed set of drags and reports per-step time, steps to
converge, final handle-to-target distance and peak memory, then the fast/reference ratios.
Each (model, path) runs in its own subprocess so peak memory (max RSS on CPU, max allocated on
CUDA) belongs to that run alone.

    python benchmarks/bench_drag.py                       # demo model + random 256 and 512 generators
    python benchmarks/bench_drag.py --model path.pkl --device cuda --steps 100
    python benchmarks/bench_drag.py --presets paper,studio --model demo --model random-512   # DragConfig presets, fast path
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time

import torch

# Drags as fractions of the image size: (handles, targets).
DRAGS = [
    ([(0.40, 0.40)], [(0.48, 0.34)]),
    ([(0.30, 0.55), (0.70, 0.55)], [(0.25, 0.50), (0.75, 0.50)]),
    ([(0.50, 0.70)], [(0.50, 0.80)]),
]


def random_model(resolution: int):
    from draggan_core.stylegan2 import Generator, GeneratorConfig
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=resolution, channel_base=16384, channel_max=256, z_dim=256, w_dim=256)
    return Generator(cfg).eval().requires_grad_(False)


def load(model: str, device: str):
    from draggan_core import load_generator, registry
    if model.startswith("random-"):
        return random_model(int(model.split("-")[1])).to(device)
    path, _ = registry.resolve(None if model == "demo" else model)
    return load_generator(path, device=device)


def config_for(variant: str):
    """'reference' / 'fast' are the two paths with the defaults; any other name is a DragConfig preset."""
    from draggan_core.drag import DragConfig
    if variant in ("reference", "fast"):
        return DragConfig(path=variant, stall_steps=0)
    return DragConfig.preset(variant, stall_steps=0)


def run_one(model: str, path: str, device: str, steps: int, queue) -> None:
    from draggan_core.drag import DragSession
    torch.set_num_threads(torch.get_num_threads())
    G = load(model, device)
    H, W = G.img_size
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    records = []
    for seed, (hs, ts) in enumerate(DRAGS):
        s = DragSession(G, seed, config=config_for(path))
        s.set_points([(x * (W - 1), y * (H - 1)) for x, y in hs], [(x * (W - 1), y * (H - 1)) for x, y in ts])
        t0 = time.perf_counter()
        last = None
        for last in s.run(max_steps=steps):
            pass
        s.image()  # the final render belongs to the edit's cost
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        records.append({"steps": last.step, "seconds": time.perf_counter() - t0, "distance": last.distance,
                        "reason": last.reason})
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024)
    queue.put({"model": model, "path": path, "records": records, "peak_mib": peak})


def measure(model: str, path: str, device: str, steps: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_one, args=(model, path, device, steps, q))
    p.start()
    result = q.get()
    p.join()
    return result


def summarise(r: dict) -> dict:
    total_steps = sum(x["steps"] for x in r["records"])
    total_time = sum(x["seconds"] for x in r["records"])
    return {"ms_per_step": 1000 * total_time / total_steps, "steps": [x["steps"] for x in r["records"]],
            "final_px": [round(x["distance"], 2) for x in r["records"]], "peak_mib": r["peak_mib"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="registry name, path, 'demo' or random-<res>")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--presets", default=None, metavar="A,B",
                    help="compare these two DragConfig presets (ratio A/B) instead of the reference and fast paths")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    models = args.model or ["demo", "random-256", "random-512"]
    variants = args.presets.split(",") if args.presets else ["reference", "fast"]
    if len(variants) != 2:
        ap.error("--presets takes two names")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print("| model | path | ms/step | steps to converge | final distance (px) | peak memory (MiB) |")
    print("|---|---|---|---|---|---|")
    results = []
    for model in models:
        row = {}
        for path in variants:
            s = summarise(measure(model, path, args.device, args.steps))
            row[path] = s
            print(f"| {model} | {path} | {s['ms_per_step']:.1f} | {s['steps']} | {s['final_px']} | {s['peak_mib']:.0f} |")
        a, b = variants
        speed = row[a]["ms_per_step"] / row[b]["ms_per_step"]
        mem = row[a]["peak_mib"] / max(row[b]["peak_mib"], 1e-9)
        print(f"| {model} | **ratio {a}/{b}** | **{speed:.2f}x** | | | **{mem:.2f}x** |")
        results.append({"model": model, **row, "speedup": speed, "memory_ratio": mem})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
