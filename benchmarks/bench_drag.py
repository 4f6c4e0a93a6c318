"""Drag-loop benchmark: milliseconds per step and peak memory of the drag loop's variants ("levers").

Each (model, threads, lever) runs in its own subprocess, so its peak memory (max RSS above the
loaded model on CPU, max allocated on CUDA) is its own. The runs alternate lever by lever for
--rounds rounds and the table gives medians, so load from other programs falls on every lever
alike; read the ratio to the first lever. CPU ms/step is the process's CPU time per step: on a
busy machine with one torch thread it is the steadier measure (with more threads it also counts
spin-waits). Each run makes the same fixed drags; a drag's first
step (templates, warm-up, compilation) is timed apart from the rest.

Levers, combined with '+' (e.g. bf16+compile, paper+bf16):
  paper, quick, studio a DragConfig preset (draggan_core/presets.py); a lever without one is the defaults ('paper')
  auto, fp32, bf16, fp16  DragConfig.precision ('auto': the default, bf16 on CPUs with native bf16; fp16: CUDA
                       only); a lever without one is fp32, the baseline
  reference            DragConfig(path='reference'): full render, map resized to the image (the published loop)
  all-grads            the synthesis without grad_rows (every block's weight gradients, as before issue 19)
  fused                the fused modulated convolution (per-step modulated weights, as before issue 19)
  autocast             torch.autocast(bf16) around the synthesis instead of a bf16 activation type
  channels-last        every convolution's input in channels-last memory order
  nonfused             ops.modulated_conv2d's non-fused form (the drag loop's own choice since issue 19)
  compile              torch.compile of the synthesis (first step: compile time; inductor caches on disk)
  cuda-graphs          the truncated synthesis' forward and backward replayed as CUDA graphs (CUDA only)
  whole-map            every step computes the whole feature block (as before the step window, DragSession.step_window)
  no-kept-constants    layers derive their weight constants on every call (as before stylegan2.derived)
  all-rows             every W+ row optimised from the first step (what DragConfig.stall_rows opens after a stall)
  no-ties              the published tracker's plain best match (DragConfig.track_ties 0: studio before its tie rule)
  no-shared            no shared W offset (DragConfig.shared_w 0: studio before it; rows past w_layers then need
                       no gradient)

Models: 'demo'; 'random-<res>' (channel base 16384, at most 256 channels, z/w 256); 'random-<res>-c<max>'
(channel base 32768, at most <max> channels); 'official-<res>' (NVIDIA's config f: base 32768, at most 512
channels, z/w 512, conv clamp 256; 30 M parameters at 512 px); a registry name or a path.

    python benchmarks/bench_drag.py                                   # demo, random-256, random-512: reference vs fp32
    python benchmarks/bench_drag.py --official-config --lever all-grads+fused --lever fp32 --lever bf16 --threads 1
    python benchmarks/bench_drag.py --model official-512 --device cuda --lever fp32 --lever fp16 --steps 50
    python benchmarks/bench_drag.py --model demo --model random-512 --lever paper --lever studio --threads 1
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time

import torch

# Drags as fractions of the image size: (handles, targets).
DRAGS = [
    ([(0.40, 0.40)], [(0.48, 0.34)]),
    ([(0.30, 0.55), (0.70, 0.55)], [(0.25, 0.50), (0.75, 0.50)]),
    ([(0.50, 0.70)], [(0.50, 0.80)]),
]
OFFICIAL_MODELS = ["official-512", "random-256-c128", "demo"]
MODIFIERS = ("reference", "all-grads", "fused", "autocast", "channels-last", "nonfused", "compile", "cuda-graphs",
             "whole-map", "no-kept-constants", "all-rows", "no-ties", "no-shared")


def random_model(name: str):
    """A random-initialised generator named as in the module docstring."""
    from draggan_core.stylegan2 import Generator, GeneratorConfig
    kind, res, *rest = name.split("-")
    torch.manual_seed(0)
    if kind == "official":
        cfg = GeneratorConfig(img_resolution=int(res), channel_base=32768, channel_max=512, conv_clamp=256)
    elif rest:
        cfg = GeneratorConfig(img_resolution=int(res), channel_base=32768, channel_max=int(rest[0].lstrip("c")),
                              z_dim=256, w_dim=256)
    else:
        cfg = GeneratorConfig(img_resolution=int(res), channel_base=16384, channel_max=256, z_dim=256, w_dim=256)
    return Generator(cfg).eval().requires_grad_(False)


def load(model: str, device: str):
    from draggan_core import load_generator, registry
    if model.split("-")[0] in ("random", "official"):
        return random_model(model).to(device)
    path, _ = registry.resolve(None if model == "demo" else model)
    return load_generator(path, device=device).requires_grad_(False)


def parse_lever(lever: str) -> tuple[str, str, set[str]]:
    """'paper+bf16+compile' -> ('paper', 'bf16', {'compile'}); raises ValueError for an unknown part."""
    from draggan_core.precision import PRECISIONS
    from draggan_core.presets import PRESETS
    parts = lever.split("+")
    presets = [p for p in parts if p in PRESETS]
    precisions = [p for p in parts if p in PRECISIONS]
    mods = {p for p in parts if p not in PRECISIONS and p not in PRESETS}
    if len(presets) > 1 or len(precisions) > 1 or mods - set(MODIFIERS):
        raise ValueError(f"bad lever {lever!r}: at most one of {sorted(PRESETS)}, at most one of {PRECISIONS}, "
                         f"plus any of {MODIFIERS}")
    return (presets[0] if presets else "paper"), (precisions[0] if precisions else "fp32"), mods


def apply_modifiers(G, mods: set[str], device: str) -> None:
    """Wrap G.synthesis.forward (and ops' convolution, the session's window, the layers' kept constants) for
    the benchmark-only levers, in this process only."""
    from draggan_core import ops, stylegan2
    from draggan_core.drag import DragSession
    if "whole-map" in mods:
        DragSession.step_window = lambda self: None
    if "no-kept-constants" in mods:
        stylegan2.derived = lambda module, key, make: make()
    forward = G.synthesis.forward
    if "all-grads" in mods:
        forward = functools.partial(lambda f, *a, grad_rows=None, **k: f(*a, **k), forward)
    if mods & {"fused", "nonfused"}:
        fused = "fused" in mods
        forward = functools.partial(lambda f, *a, **k: f(*a, **{**k, "fused_modconv": fused}), forward)
    if "autocast" in mods:
        forward = torch.autocast(torch.device(device).type, dtype=torch.bfloat16)(forward)
    if "channels-last" in mods:
        conv = ops._conv
        ops._conv = lambda x, *a, **k: conv(x.contiguous(memory_format=torch.channels_last), *a, **k)
    if "compile" in mods:
        forward = torch.compile(forward, dynamic=False)
    if "cuda-graphs" in mods:
        if not device.startswith("cuda"):
            raise ValueError("the cuda-graphs lever needs a CUDA device")
        forward = graphed(forward)
    G.synthesis.forward = forward


def graphed(forward):
    """forward, but each truncated call with gradients (the drag steps) replays CUDA graphs captured on
    the first such call for its keyword arguments; other calls (templates, images) run as they are."""
    graphs = {}

    def call(ws, **kwargs):
        k = kwargs.get("stop_at_block")
        if k is None or not torch.is_grad_enabled() or not ws.requires_grad:
            return forward(ws, **kwargs)
        key = tuple(sorted(kwargs.items(), key=str))
        if key not in graphs:
            sample = ws.detach().clone().requires_grad_(True)
            graphs[key] = torch.cuda.make_graphed_callables(lambda w: forward(w, **kwargs)[1][k], (sample,))
        return None, [None] * k + [graphs[key](ws)]
    return call


def run_one(model: str, lever: str, device: str, steps: int, drags: int, threads: int, queue) -> None:
    from draggan_core.drag import DragConfig, DragSession
    torch.set_num_threads(threads)
    G = load(model, device)
    preset, precision, mods = parse_lever(lever)
    apply_modifiers(G, mods, device)
    H, W = G.img_size
    cuda = device.startswith("cuda")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    overrides = {"w_layers": G.num_ws} if "all-rows" in mods else {}
    if "no-ties" in mods:
        overrides["track_ties"] = 0.0
    if "no-shared" in mods:
        overrides["shared_w"] = 0.0
    config = DragConfig.preset(preset, path="reference" if "reference" in mods else "fast", precision=precision,
                               stall_steps=0, **overrides)
    step_s, cpu_s, first_s, handles = [], [], [], []
    for seed, (hs, ts) in enumerate(DRAGS[:drags]):
        s = DragSession(G, seed, config=config)
        s.set_points([(x * (W - 1), y * (H - 1)) for x, y in hs], [(x * (W - 1), y * (H - 1)) for x, y in ts])
        t, c = time.perf_counter(), time.process_time()
        for k, step in enumerate(s.run(max_steps=steps)):
            if cuda:
                torch.cuda.synchronize()
            now, cpu = time.perf_counter(), time.process_time()
            (first_s if k == 0 else step_s).append(now - t)
            if k:
                cpu_s.append(cpu - c)
            t, c = now, cpu
        handles.append(step.handles)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if cuda
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024)
    queue.put({"step_s": step_s, "cpu_s": cpu_s, "first_s": first_s, "handles": handles, "peak_mib": peak})


def measure(model: str, lever: str, device: str, steps: int, drags: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_one, args=(model, lever, device, steps, drags, threads, q))
    p.start()
    result = q.get()
    p.join()
    return result


def handle_gap(a: list, b: list) -> float:
    """Largest coordinate difference between two runs' final handles (px)."""
    return max(abs(u - v) for pa, pb in zip(a, b) for ha, hb in zip(pa, pb) for u, v in zip(ha, hb))


def bench(models: list[str], levers: list[str], threads: list[int], args) -> list[dict]:
    """Rounds alternate over the levers; one row per (model, threads, lever) with medians."""
    rows = []
    for model in models:
        for n in threads:
            runs: dict[str, list[dict]] = {lever: [] for lever in levers}
            for _ in range(args.rounds):
                for lever in levers:
                    runs[lever].append(measure(model, lever, args.device, args.steps, args.drags, n))
            base = None
            for lever in levers:
                rs = runs[lever]
                ms = 1000 * statistics.median(s for r in rs for s in r["step_s"])
                cpu_ms = 1000 * statistics.median(s for r in rs for s in r["cpu_s"])
                row = {"model": model, "threads": n, "lever": lever, "ms_per_step": ms, "cpu_ms_per_step": cpu_ms,
                       "first_step_s": [round(max(r["first_s"]), 2) for r in rs],
                       "peak_mib": max(r["peak_mib"] for r in rs), "handles": rs[0]["handles"]}
                base = base or row
                row["speedup"] = base["ms_per_step"] / ms
                row["cpu_speedup"] = base["cpu_ms_per_step"] / cpu_ms
                row["handle_gap_px"] = handle_gap(base["handles"], row["handles"])
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    return (f"| {r['model']} | {r['threads']} | {r['lever']} | {r['ms_per_step']:.1f} | {r['speedup']:.2f}x | "
            f"{r['cpu_ms_per_step']:.1f} | {r['cpu_speedup']:.2f}x | "
            f"{r['first_step_s']} | {r['peak_mib']:.0f} | {r['handle_gap_px']:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="see above (repeatable)")
    ap.add_argument("--official-config", action="store_true", help=f"the models {', '.join(OFFICIAL_MODELS)}")
    ap.add_argument("--lever", action="append", help="see above (repeatable; the first is the baseline)")
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10, help="steps per drag")
    ap.add_argument("--drags", type=int, default=len(DRAGS), help=f"how many of the {len(DRAGS)} drags")
    ap.add_argument("--rounds", type=int, default=1, help="runs per lever, alternating")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    models = (OFFICIAL_MODELS if args.official_config else []) + (args.model or [])
    models = models or ["demo", "random-256", "random-512"]
    levers = args.lever or ["reference", "fp32"]
    for lever in levers:
        parse_lever(lever)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", {args.drags} drags x {args.steps} steps, {args.rounds} round(s)")
    print("| model | threads | lever | ms/step (median) | speed-up | CPU ms/step | CPU speed-up | "
          "first step s (per round) | peak MiB | handles vs first lever (px) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = bench(models, levers, args.threads, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
