"""Compare the demo trainer's levers (capacity, edge losses) on short runs of the same iteration budget.

    .venv/bin/python benchmarks/bench_demo_train_levers.py --iters 1500 --workdir /work/train_state/levers \
        [--only baseline gradient] [--init-from draggan_core/demo/demo_model.safetensors]

Every lever continues from the same model with the same seed, learning-rate schedule (decay over the
last half, so each run ends with little step noise) and one torch thread at nice 19; the table has the
model card's L1 and 3-scale SSIM on its 16 fixed seeds, and the wall time. A lever's run resumes if
its workdir exists, so an interrupted comparison continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

LEVERS: dict[str, list[str]] = {
    "baseline": [],
    "gradient": ["--gradient-weight", "1"],
    "laplacian": ["--laplacian-weight", "1"],
    "wide": ["--channel-base", "4096"],
    "wide+gradient": ["--channel-base", "4096", "--gradient-weight", "1"],
}


def train_command(lever: str, args: argparse.Namespace) -> list[str]:
    """The train.py command of one lever (printed in the table, so a row can be rerun by hand)."""
    return ["nice", "-n", "19", sys.executable, "-m", "draggan_core.demo.train", "--threads", "1",
            "--device", "cpu", "--workdir", str(Path(args.workdir) / lever), "--init-from", args.init_from,
            "--iters", str(args.iters), "--lr-decay-iters", str(args.iters // 2),
            "--save-every", str(args.save_every), *LEVERS[lever]]


def row(lever: str, args: argparse.Namespace, wall: float) -> dict:
    """The lever's last logged evaluation and its training time."""
    state = torch.load(Path(args.workdir) / lever / "state.pt", map_location="cpu", weights_only=True)
    last = state["log"][-1]
    return {"lever": lever, "iterations": state["iteration"], "train_minutes": state["seconds"] / 60,
            "wall_minutes": wall / 60, "l1": last["l1"], "ssim": last["ssim"],
            "command": " ".join(train_command(lever, args)[3:])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--workdir", default="out/levers")
    ap.add_argument("--init-from", default="draggan_core/demo/demo_model.safetensors")
    ap.add_argument("--only", nargs="*", choices=list(LEVERS), default=list(LEVERS))
    args = ap.parse_args(argv)
    rows = []
    for lever in args.only:
        t0 = time.time()
        subprocess.run(train_command(lever, args), check=True, stdout=subprocess.DEVNULL)
        rows.append(row(lever, args, time.time() - t0))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| lever | iterations | train min | L1 | 3-scale SSIM |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lever']} | {r['iterations']} | {r['train_minutes']:.1f} | {r['l1']:.4f} | {r['ssim']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
