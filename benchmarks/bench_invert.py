"""Inversion benchmark: PSNR, SSIM and time per stage (W, W+, PTI) on images the generator made.

For each model it renders a few seeds (truncation 0.7, 8-bit, as a client would send them),
inverts each with draggan_core.invert (default settings for the model's size unless the step
counts are given) and prints one row per stage, averaged over the images: PSNR and SSIM of the
reconstruction on valid pixels, seconds, and the tuned copy's extra memory.

Models: 'random-<res>' is a small random-initialised checkpoint (written to our safetensors format
and loaded back); 'demo' is draggan_core/demo/demo_model.safetensors, skipped when it is not there
(it is produced by draggan_core.demo.train); 'official-<res>' is NVIDIA's config f with random weights
(benchmarks/bench_drag.py); anything else is a checkpoint path or registry name.

    python benchmarks/bench_invert.py                              # random-64 and demo (if present)
    python benchmarks/bench_invert.py --model random-128 --images 3 --w-steps 200 --pti-steps 100
    python benchmarks/bench_invert.py --model demo --images 1 --curve     # + time-to-PSNR per image

--curve adds, per image, the best PSNR reached by each elapsed time and the time to reach each
PSNR level, in wall seconds and in this process's CPU seconds (the steadier measure on a busy
machine with one thread); the clock starts before the Inverter is built (its w_avg estimate counts).
A W or W+ step's PSNR is of the render with the noise maps being optimised, which the result
discards (InversionConfig.keep_noise): the result's PSNR is the stage rows' and each PTI step's.
So the curve also gives when each stage began.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def random_checkpoint(resolution: int):
    from draggan_core import load_generator
    from draggan_core.formats import native
    from draggan_core.stylegan2 import Generator, GeneratorConfig
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=resolution, z_dim=128, w_dim=128, channel_base=4096, channel_max=128,
                          mapping_layers=4)
    G = Generator(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"random-{resolution}.safetensors")
        native.write(G, path)
        return load_generator(path)


def load(model: str, device: str):
    from draggan_core import load_generator
    from draggan_core.registry import DEMO_FILE
    if model.startswith("random-"):
        return random_checkpoint(int(model.split("-")[1])).to(device)
    if model.startswith("official-"):
        from bench_drag import random_model  # NVIDIA's config f, random weights
        return random_model(model).to(device)
    if model == "demo":
        if not DEMO_FILE.is_file():
            return None
        return load_generator(DEMO_FILE, device=device)
    from draggan_core import registry
    path, _ = registry.resolve(model)
    return load_generator(path, device=device)


def bench_model(name: str, G, args) -> list[dict]:
    from draggan_core.images import to_uint8
    from draggan_core.invert import InversionConfig, Inverter
    from draggan_core.stylegan2 import ws_from_seed
    G.requires_grad_(False)
    cfg = InversionConfig(w_steps=args.w_steps, wplus_steps=args.wplus_steps, pti_steps=args.pti_steps,
                          pti_stop_psnr=None if args.no_early_stop else InversionConfig.pti_stop_psnr)
    per_stage: dict[str, list] = {}
    extra = 0
    resolved = cfg.resolved(G)
    for seed in range(args.images):
        with torch.no_grad():
            target = to_uint8(G.synthesis(ws_from_seed(G, 100 + seed, 0.7), noise_mode="const"))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        inv = Inverter(G, target, None, cfg)
        curve = [(step.stage, time.perf_counter() - wall0, time.process_time() - cpu0, step.psnr)
                 for step in inv.run()]
        if args.curve:
            print(curve_table(f"{name} seed {100 + seed}", curve))
        res = inv.result()
        extra = res.extra_bytes
        for stage, q in res.quality.items():
            per_stage.setdefault(stage, []).append(q)
    rows = []
    steps = {"start": 0, "w": resolved.w_steps, "w+": resolved.wplus_steps, "pti": resolved.pti_steps}
    for stage, qs in per_stage.items():
        n = len(qs)
        rows.append(dict(model=name, size="x".join(map(str, G.img_size)), stage=stage,
                         steps=f"{sum(q.steps for q in qs) / n:.0f}/{steps[stage]}",
                         psnr=sum(q.psnr for q in qs) / n, ssim=sum(q.ssim for q in qs) / n,
                         seconds=sum(q.seconds for q in qs) / n,
                         per_step_ms=1000 * sum(q.seconds for q in qs) / max(1, sum(q.steps for q in qs)),
                         extra_mb=extra / 2 ** 20 if stage == "pti" else 0.0))
    return rows


CURVE_SECONDS = (1, 2, 5, 10, 20, 40, 80)
CURVE_PSNR = (25, 30, 35, 40, 45)


def curve_table(title: str, curve: list[tuple[str, float, float, float]]) -> str:
    """Best PSNR so far at fixed wall times, and the wall / CPU seconds (stage) when each level was first reached."""
    lines = [f"# {title}: best PSNR (dB) by wall time: " + ", ".join(
        f"{t} s: {max((p for _, w, _, p in curve if w <= t), default=float('nan')):.1f}" for t in CURVE_SECONDS)]
    reached = []
    for level in CURVE_PSNR:
        first = next(((stage, w, c) for stage, w, c, p in curve if p >= level), None)
        reached.append(f"{level} dB: " + (f"{first[1]:.1f} s wall / {first[2]:.1f} s CPU ({first[0]})" if first
                                          else "not reached"))
    lines.append(f"# {title}: time to PSNR: " + "; ".join(reached))
    starts = {}
    for stage, w, c, _ in curve:
        starts.setdefault(stage, (w, c))
    lines.append(f"# {title}: first step of each stage at: " + "; ".join(
        f"{stage} {w:.1f} s wall / {c:.1f} s CPU" for stage, (w, c) in starts.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="random-<res>, demo, a path or registry name (repeatable)")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--w-steps", type=int, default=None)
    p.add_argument("--wplus-steps", type=int, default=None)
    p.add_argument("--pti-steps", type=int, default=None)
    p.add_argument("--no-early-stop", action="store_true", help="run every PTI step (no PSNR target)")
    p.add_argument("--curve", action="store_true", help="print each image's time-to-PSNR curve")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.model or ["random-64", "demo"]
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, device {args.device}, "
          f"{torch.get_num_threads()} threads, {args.images} images per model")
    rows = []
    for name in models:
        t0 = time.perf_counter()
        G = load(name, args.device)
        if G is None:
            print(f"# {name}: not available (draggan_core/demo/demo_model.safetensors missing), skipped")
            continue
        rows += bench_model(name, G, args)
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    print("| model | size | stage | steps (run/budget) | PSNR dB | SSIM | s / image | ms / step | tuned copy MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['stage']} | {r['steps']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
              f"{r['seconds']:.1f} | {r['per_step_ms']:.0f} | {r['extra_mb']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
