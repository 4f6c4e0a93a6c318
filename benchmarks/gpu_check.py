"""The GPU check of issue 19, prepared for the day a CUDA machine is lent: one call, one table.

1. numerics: the 16-bit drag path against fp32 on the config-f generator: the image and the
   feature map of one render (largest difference), and one drag step by step (tracked handles
   within 1 px of fp32's at every step; the result image's largest difference);
2. speed: drag ms/step at each size for fp32, the 16-bit type, and the 16-bit type with the
   synthesis replayed as CUDA graphs (benchmarks/bench_drag.py, one subprocess each);
3. inversion: seconds and ms/step of each stage (benchmarks/bench_invert.py, few steps);
4. out of memory: a real `draggan serve` process makes a drag; then this process takes nearly all
   free GPU memory, the daemon's next drag must fail as out_of_memory, and after the memory is
   given back its next drag must complete and /health answer: the daemon survived.

On a CPU (--device cpu) it runs the same logic at small sizes so that it is tested: bf16 stands in
for fp16, CUDA graphs and the memory hog are reported as skipped. Exit status 1 when a check fails.

    benchmarks/gpu_check.sh                                   # CUDA: 256/512/1024 px, under 8 minutes
    python benchmarks/gpu_check.py --device cpu                # its own logic at 32 px, a minute or so
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_drag  # noqa: E402
import bench_invert  # noqa: E402

TRAJECTORY_TOLERANCE_PX = 1.0  # the 16-bit drag must track every handle within this of fp32's, every step


@dataclasses.dataclass
class Row:
    section: str
    what: str
    value: str
    ok: bool | None = None  # None: a measurement without a pass/fail verdict

    def line(self) -> str:
        verdict = {None: "", True: "ok", False: "FAIL"}[self.ok]
        return f"| {self.section} | {self.what} | {self.value} | {verdict} |"


def half_precision(device: str) -> str:
    """The 16-bit type under test: fp16 on CUDA, bf16 elsewhere (fp16 has no CPU kernels worth timing)."""
    return "fp16" if device.startswith("cuda") else "bf16"


def numerics(model: str, device: str, steps: int) -> list[Row]:
    """16-bit against fp32: one render's image and features, then one drag's trajectory and result."""
    from draggan_core.drag import DragConfig, DragSession, default_feature_block
    from draggan_core.precision import synthesis_dtype
    from draggan_core.stylegan2 import ws_from_seed
    G = bench_drag.load(model, device)
    half = half_precision(device)
    ws = ws_from_seed(G, 0)
    block = default_feature_block(G)
    with torch.no_grad():
        ref_img, ref_feats = G.synthesis(ws, return_features=True)
        img, feats = G.synthesis(ws, return_features=True, dtype=synthesis_dtype(half, torch.device(device)))
    feat_scale = float(ref_feats[block].abs().max())
    rows = [Row("numerics", f"{model} image {half} vs fp32, max |diff| (range [-1, 1])",
                f"{float((img - ref_img).abs().max()):.4f}"),
            Row("numerics", f"{model} block-{block} features {half} vs fp32, max |diff| / max |feature|",
                f"{float((feats[block].float() - ref_feats[block]).abs().max()) / feat_scale:.4f}")]
    H, W = G.img_size
    trajectories, images = {}, {}
    for precision in ("fp32", half):
        s = DragSession(G, 0, config=DragConfig(precision=precision, stall_steps=0))
        s.set_points([(0.4 * W, 0.4 * H)], [(0.5 * W, 0.33 * H)])
        trajectories[precision] = [step.handles for step in s.run(max_steps=steps)]
        images[precision] = s.image()
    gaps = [max(abs(a - b) for pa, pb in zip(ha, hb) for a, b in zip(pa, pb))
            for ha, hb in zip(trajectories["fp32"], trajectories[half])]
    same_length = len(trajectories["fp32"]) == len(trajectories[half])
    worst = max(gaps) if gaps else 0.0
    rows.append(Row("numerics", f"{model} drag {half} vs fp32: largest handle gap over {len(gaps)} steps (px)",
                    f"{worst:.0f}", ok=same_length and worst <= TRAJECTORY_TOLERANCE_PX))
    rows.append(Row("numerics", f"{model} drag result image {half} vs fp32, max |diff|",
                    f"{float((images[half] - images['fp32']).abs().max()):.4f}"))
    return rows


def speed(sizes: list[int], device: str, steps: int, template: str) -> list[Row]:
    """Drag ms/step per size: fp32, 16-bit, 16-bit with CUDA graphs (skipped off CUDA)."""
    half = half_precision(device)
    rows = []
    for size in sizes:
        model = template.format(size=size)
        for lever in ("fp32", half, f"{half}+cuda-graphs"):
            if "cuda-graphs" in lever and not device.startswith("cuda"):
                rows.append(Row("speed", f"{model} {lever}", "skipped: CUDA graphs need CUDA"))
                continue
            try:
                r = bench_drag.measure(model, lever, device, steps, 1, torch.get_num_threads())
            except Exception as e:  # one failed lever (e.g. out of memory at 1024) must not hide the others
                rows.append(Row("speed", f"{model} {lever}", f"error: {type(e).__name__}: {e}"[:120], ok=False))
                continue
            ms = 1000 * sorted(r["step_s"])[len(r["step_s"]) // 2]
            rows.append(Row("speed", f"{model} {lever} ms/step (first step s; peak MiB)",
                            f"{ms:.1f} ({max(r['first_s']):.2f}; {r['peak_mib']:.0f})"))
    return rows


def inversion(model: str, device: str, steps: tuple[int, int, int]) -> list[Row]:
    """Seconds and ms/step per inversion stage on one image the generator made."""
    G = bench_drag.load(model, device)
    args = argparse.Namespace(w_steps=steps[0], wplus_steps=steps[1], pti_steps=steps[2], no_early_stop=True,
                              images=1, curve=False)
    return [Row("inversion", f"{model} {r['stage']} ({r['steps']} steps)",
                f"{r['seconds']:.2f} s, {r['per_step_ms']:.0f} ms/step, PSNR {r['psnr']:.1f} dB")
            for r in bench_invert.bench_model(model, G, args) if r["stage"] != "start"]


def out_of_memory(device: str, model: str, steps: int) -> list[Row]:
    """A real daemon: a drag, a drag while this process holds the GPU's free memory, a drag after."""
    from draggan_client.client import DaemonClient
    from draggan_core.formats import native
    from soak_daemon import daemon_process
    rows = []
    with tempfile.TemporaryDirectory() as d:
        models = Path(d)
        G = bench_drag.random_model(model)
        native.write(G, str(models / "check.safetensors"))
        resolution = G.img_resolution
        with daemon_process(models, torch.get_num_threads(), models / "daemon.log", device=device) as daemon:
            client = DaemonClient(daemon.url, timeout=120)

            def drag() -> dict:
                made = client.generate(seed=1, model="check")
                job = client.drag(made["session_id"], handles=[[resolution * 0.4, resolution * 0.4]],
                                  targets=[[resolution * 0.5, resolution * 0.35]], steps=steps)
                return client.wait(job["job_id"], poll_interval=0.1, timeout=300)

            rows.append(Row("out of memory", "daemon drag before", drag()["state"]))
            if device.startswith("cuda"):
                hog = hold_free_memory(torch.device(device))
                try:
                    during = drag()
                except Exception as e:  # generate itself may be the call that runs out
                    during = {"state": "refused", "error": {"code": getattr(e, "code", None)}}
                del hog
                torch.cuda.empty_cache()
                code = (during.get("error") or {}).get("code")
                rows.append(Row("out of memory", "daemon drag with the GPU full", f"{during['state']} ({code})",
                                ok=code == "out_of_memory"))
            else:
                rows.append(Row("out of memory", "daemon drag with the GPU full", "skipped: needs CUDA"))
            after = drag()["state"]
            alive = daemon.proc.poll() is None and client.health().get("api") == "v1"
            rows.append(Row("out of memory", "daemon drag after; process alive, /health ok", f"{after}; {alive}",
                            ok=after == "done" and alive))
    return rows


def hold_free_memory(device: torch.device, leave_mib: int = 64) -> list[torch.Tensor]:
    """Allocate all but leave_mib of the GPU's free memory, in chunks, so another process runs out."""
    chunks = []
    chunk = 1 << 30
    while chunk >= 1 << 20:
        free, _ = torch.cuda.mem_get_info(device)
        if free - chunk < leave_mib << 20:
            chunk >>= 1
            continue
        chunks.append(torch.empty(chunk, dtype=torch.uint8, device=device))
    return chunks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="speed sizes (CUDA: 256 512 1024; CPU: 32)")
    ap.add_argument("--model-template", default=None,
                    help="bench_drag model name with {size} (CUDA: official-{size}, config f; CPU: random-{size}-c32)")
    ap.add_argument("--numerics-size", type=int, default=None, help="config-f size for numerics (CUDA 512, CPU 32)")
    ap.add_argument("--steps", type=int, default=None, help="drag steps per check (CUDA 30, CPU 4)")
    ap.add_argument("--inversion-steps", type=int, nargs=3, default=None, metavar=("W", "W+", "PTI"))
    ap.add_argument("--skip", action="append", default=[], choices=("numerics", "speed", "inversion", "oom"))
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu to check the script's own logic", file=sys.stderr)
        return 2
    sizes = args.sizes or ([256, 512, 1024] if cuda else [32])
    size = args.numerics_size or (512 if cuda else 32)
    steps = args.steps or (30 if cuda else 4)
    inv_steps = tuple(args.inversion_steps or ((100, 40, 40) if cuda else (4, 2, 2)))
    template = args.model_template or ("official-{size}" if cuda else "random-{size}-c32")
    model = template.format(size=size)
    started = time.perf_counter()
    rows: list[Row] = []
    sections = [("numerics", lambda: numerics(model, args.device, steps)),
                ("speed", lambda: speed(sizes, args.device, steps, template)),
                ("inversion", lambda: inversion(model, args.device, inv_steps)),
                ("oom", lambda: out_of_memory(args.device, model, steps))]
    for name, run in sections:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        rows += run()
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    device_name = torch.cuda.get_device_name(args.device) if cuda else "cpu"
    print(f"# gpu_check on {device_name}, torch {torch.__version__}, {time.perf_counter() - started:.0f} s in all")
    print("| section | check | value | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        print(row.line())
    return 1 if any(row.ok is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
