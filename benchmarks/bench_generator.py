"""Time to load an official-size StyleGAN2 checkpoint and to generate one image, per format and resolution.

The checkpoints are random generators with NVIDIA's official channel counts, written by the
project's own writers, so the numbers hold for the real files of the same size.

    python benchmarks/bench_generator.py [--device cpu] [--res 256 512]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from draggan_core import load_generator
from draggan_core.formats import native, nvidia, rosinality, tf_legacy
from draggan_core.stylegan2 import Generator, GeneratorConfig, ws_from_seed

WRITERS = {"nvidia-pickle": ("pkl", lambda G, p: nvidia.write(G, p, layout="flat")),
           "tensorflow-pickle": ("pkl", tf_legacy.write), "rosinality": ("pt", rosinality.write),
           "draggan-safetensors": ("safetensors", native.write)}


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print("| resolution | format | file MB | load s | generate s (one image) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.res:
            torch.manual_seed(0)
            G = Generator(GeneratorConfig(img_resolution=res))
            for fmt, (ext, write) in WRITERS.items():
                path = Path(tmp) / f"g{res}.{fmt}.{ext}"
                write(G, path)
                load_s = median_time(lambda: load_generator(path, device=args.device))
                H = load_generator(path, device=args.device)
                ws = ws_from_seed(H, 1)
                with torch.no_grad():
                    H.synthesis(ws)  # warm-up
                    gen_s = median_time(lambda: H.synthesis(ws, noise_mode="const"))
                print(f"| {res} | {fmt} | {path.stat().st_size / 1e6:.0f} | {load_s:.2f} | {gen_s:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
