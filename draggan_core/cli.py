"""The `draggan` command line for the core: generate, drag and manage models.

Every failure a user can cause (missing file, refused pickle, bad arguments) ends as one line on
stderr and a non-zero exit, never a traceback. The daemon adds `serve` on top (backend.cli).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from . import registry
from .checkpoint import CheckpointError, load_generator
from .devices import DEVICE_CHOICES, pick_device
from .download import DownloadError, download, text_progress
from .drag import DragConfig, DragSession
from .images import to_pil
from .latents import load_latent, save_latent
from .overlay import draw_points, save_gif
from .precision import PRECISIONS
from .presets import DEFAULT as DEFAULT_PRESET, PRESETS
from .stylegan2 import ws_from_seed

EXPECTED_ERRORS = (CheckpointError, registry.UnknownModelError, DownloadError, OSError, ValueError)
CATALOGUE_HELP = "a studio's JSON list of its own checkpoints by URL, added to the built-in ones (docs/api.md)"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="registry name, file in the models folder, or path (default: demo)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)


def load_model(args: argparse.Namespace):
    path, info = registry.resolve(args.model)
    return load_generator(path, device=pick_device(args.device)), info


def cmd_generate(args: argparse.Namespace) -> int:
    G, _ = load_model(args)
    ws = ws_from_seed(G, args.seed, truncation_psi=args.psi)
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode="const")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    to_pil(img).save(args.out)
    print(f"wrote {args.out} ({img.shape[3]}x{img.shape[2]}, seed {args.seed}, psi {args.psi})")
    return 0


def parse_points(text: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """ "hx,hy:tx,ty;hx,hy:tx,ty" -> (handles, targets)."""
    handles, targets = [], []
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        try:
            h, t = pair.split(":")
            hx, hy = (float(v) for v in h.split(","))
            tx, ty = (float(v) for v in t.split(","))
        except ValueError:
            raise ValueError(f"bad point pair {pair!r}: expected hx,hy:tx,ty") from None
        handles.append((hx, hy))
        targets.append((tx, ty))
    if not handles:
        raise ValueError("--points needs at least one pair hx,hy:tx,ty")
    return handles, targets


def load_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    """Grayscale PNG, white = editable, at the generator's image size."""
    mask = np.asarray(Image.open(path).convert("L"))
    if mask.shape != size:
        raise ValueError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, the model draws {size[1]}x{size[0]}")
    return mask


def cmd_drag(args: argparse.Namespace) -> int:
    G, info = load_model(args)
    handles, targets = parse_points(args.points)
    cfg = DragConfig.preset(args.preset, learning_rate=args.lr or registry.default_learning_rate(info),
                            w_layers=args.w_layers, mask_lambda=args.mask_lambda, r1=args.r1, r2=args.r2,
                            path=args.path, precision=args.precision)
    start = load_latent(args.latent) if args.latent else args.seed
    session = DragSession(G, start, config=cfg, truncation_psi=args.psi)
    session.set_points(handles, targets)
    if args.mask:
        session.set_mask(load_mask(args.mask, session.size))
    frames = [draw_points(to_pil(session.image()), handles, targets, args.video_scale)] if args.video else []
    record = []
    preview_every = args.preview_every if args.video else 0
    for step in session.run(max_steps=args.steps, preview_every=preview_every):
        record.append({"step": step.step, "handles": step.handles, "loss": step.loss, "distance": step.distance,
                       "time": step.elapsed})
        if step.preview is not None and args.video:
            frames.append(draw_points(to_pil(step.preview), step.handles, targets, args.video_scale))
    print(f"{step.reason} after {step.step} steps ({step.elapsed:.1f} s); handles {step.handles}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    to_pil(session.image()).save(args.out)
    if args.trajectory:
        Path(args.trajectory).write_text(json.dumps({
            "model": args.model or registry.DEMO_MODEL, "seed": None if args.latent else args.seed,
            "handles": handles, "targets": targets, "reason": step.reason, "steps": record}, indent=1))
    if args.video:
        save_gif(frames, args.video)
    if args.latent_out:
        save_latent(args.latent_out, session.latent())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A meaningful drag on the embedded demo model, with before/after images and a GIF."""
    from .demo.showcase import run_scenario
    G, info = load_model(argparse.Namespace(model=registry.DEMO_MODEL, device=args.device))
    out = Path(args.out)
    drag, step = run_scenario(G, info, args.scenario, args.seed, out, steps=args.steps, preset=args.preset)
    print(f"{args.scenario} on seed {args.seed}: {step.reason} after {step.step} steps ({step.elapsed:.1f} s)")
    print(f"handles {[tuple(round(v, 1) for v in h) for h in step.handles]} "
          f"targets {[tuple(round(v, 1) for v in t) for t in drag.targets]}")
    print(f"wrote {out / 'before.png'}, {out / 'after.png'}, {out / 'after_points.png'}, {out / 'drag.gif'}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    zoo = registry.load_catalogue(args.catalogue)
    directory = Path(args.dir) if args.dir else registry.models_dir()
    print(f"models folder: {directory}")
    print(f"{'name':34} {'WxH':>9}  {'local':5}  {'framing':7}  domain / licence")
    for info in zoo.values():
        here = "yes" if registry.local_path(info, directory).is_file() else "no"
        print(f"{info.name:34} {info.size_text:>9}  {here:5}  {info.framing:7}  {info.domain}; {info.licence}")
        if args.verbose and info.url:
            print(f"{'':55}{info.url}  size={info.size or '?'} sha256={info.sha256 or '?'}")
        elif args.verbose and info.note:
            print(f"{'':55}{info.note}")
    known = {registry.local_path(i, directory).name for i in zoo.values()}
    for path in registry.local_models(directory):
        if path.name not in known:
            print(f"{path.name:34} {'?':>9}  {'yes':5}  {'centre':7}  your own checkpoint")
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    info = registry.load_catalogue(args.catalogue).get(args.name)
    if info is None:
        raise registry.UnknownModelError(f"no downloadable registry model named {args.name!r} (see: draggan models "
                                         f"list{' --catalogue ' + args.catalogue if args.catalogue else ''})")
    if info.url is None and not args.url:
        raise registry.UnknownModelError(f"{info.name} has no direct download URL: {info.note or 'see its README'}")
    directory = Path(args.dir) if args.dir else registry.models_dir()
    dest = registry.local_path(info, directory)
    if dest.is_file():
        print(f"{info.name} is already downloaded: {dest}")
        return 0
    print(f"downloading {info.name} from {args.url or info.url}")
    print(f"licence: {info.licence}")
    download(args.url or info.url, dest, size=info.size, sha256=info.sha256, progress=text_progress())
    print(f"saved {dest}")
    return 0


def build_parser(*extensions: Callable[[Any], None]) -> argparse.ArgumentParser:
    """The core's parser; each extension adds subcommands to it (the daemon adds `serve`)."""
    parser = argparse.ArgumentParser(prog="draggan", description="Drag-based image editing with StyleGAN generators")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="render the image of a seed")
    add_model_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("drag", help="drag handle points to targets on a generated image")
    add_model_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent", default=None, help="start from a saved W+ latent (.npy) instead of the seed")
    p.add_argument("--psi", type=float, default=0.7)
    p.add_argument("--points", required=True, help='"hx,hy:tx,ty;..." in image pixels (x right, y down)')
    p.add_argument("--mask", default=None, help="grayscale PNG, white = editable (default: all editable)")
    p.add_argument("--steps", type=int, default=300, help="maximum optimisation steps")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's registry value)")
    p.add_argument("--mask-lambda", type=float, default=20.0)
    p.add_argument("--w-layers", type=int, default=6, help="number of W+ rows optimised")
    p.add_argument("--r1", type=float, default=None)
    p.add_argument("--r2", type=int, default=None)
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help="named settings: paper (DragGAN as published), quick or studio (land more drags on the demo "
                        "benchmark), move (carries the whole part under the points); the options above override it")
    p.add_argument("--path", choices=("fast", "reference"), default="fast")
    p.add_argument("--precision", choices=PRECISIONS, default=DragConfig.precision,
                   help="number type of the drag steps' synthesis (auto: bf16 on CPUs with AVX-512 BF16 or AMX, "
                        "else fp32; fp16: CUDA only; benchmarks/README.md)")
    p.add_argument("--out", required=True, help="result PNG")
    p.add_argument("--trajectory", default=None, help="JSON record of every step")
    p.add_argument("--video", default=None, help="animated GIF of the edit with the points drawn")
    p.add_argument("--video-scale", type=int, default=2)
    p.add_argument("--preview-every", type=int, default=2, help="GIF frame interval in steps")
    p.add_argument("--latent-out", default=None, help="save the final W+ latent (.npy)")
    p.set_defaults(func=cmd_drag)

    p = sub.add_parser("demo", help="drag on the embedded demo model (move the head, raise an ear, ...); "
                                    "writes images and a GIF")
    p.add_argument("--scenario", default="right_ear_up",
                   choices=["move_head", "turn_head", "left_ear_up", "right_ear_up", "open_mouth"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET, help="named drag settings (see drag)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", default="out/demo")
    p.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="list or download checkpoints").add_subparsers(dest="models_command",
                                                                                            required=True)
    p = models.add_parser("list", help="known and local checkpoints")
    p.add_argument("--dir", default=None, help="models folder (default: $DRAGGAN_MODELS or ~/.local/share/draggan/models)")
    p.add_argument("-v", "--verbose", action="store_true", help="show URLs, sizes and hashes")
    p.add_argument("--catalogue", default=None, metavar="FILE", help=CATALOGUE_HELP)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("download", help="download a registry checkpoint (resumable)")
    p.add_argument("name")
    p.add_argument("--dir", default=None)
    p.add_argument("--catalogue", default=None, metavar="FILE", help=CATALOGUE_HELP)
    p.add_argument("--url", default=None, help="alternative URL (a mirror) for the same file")
    p.set_defaults(func=cmd_models_download)
    for extend in extensions:
        extend(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None,
        expected: tuple[type[BaseException], ...] = EXPECTED_ERRORS) -> int:
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except expected as e:
        print(f"draggan: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("draggan: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
