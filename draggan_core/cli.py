"""The `draggan` command line for the core: generate, drag and manage models.

Every failure a user can cause (missing file, refused pickle, bad arguments) ends as one line on
stderr and a non-zero exit, never a traceback. The daemon adds `serve` on top (backend.cli).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

from . import registry
from .checkpoint import CheckpointError, load_generator
from .devices import DEVICE_CHOICES, pick_device
from .download import DownloadError, download, text_progress
from .images import to_pil
from .stylegan2 import ws_from_seed

EXPECTED_ERRORS = (CheckpointError, registry.UnknownModelError, DownloadError, OSError, ValueError)


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


def cmd_models_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else registry.models_dir()
    print(f"models folder: {directory}")
    print(f"{'name':34} {'res':>5}  {'local':5}  domain / licence")
    for info in registry.ZOO.values():
        here = "yes" if registry.local_path(info, directory).is_file() else "no"
        print(f"{info.name:34} {info.resolution:>5}  {here:5}  {info.domain}; {info.licence}")
        if args.verbose and info.url:
            print(f"{'':42}{info.url}  size={info.size or '?'} sha256={info.sha256 or '?'}")
    known = {registry.local_path(i, directory).name for i in registry.ZOO.values()}
    for path in registry.local_models(directory):
        if path.name not in known:
            print(f"{path.name:34} {'?':>5}  {'yes':5}  your own checkpoint")
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    info = registry.ZOO.get(args.name)
    if info is None or info.url is None:
        raise registry.UnknownModelError(f"no downloadable registry model named {args.name!r} (see: draggan models list)")
    directory = Path(args.dir) if args.dir else registry.models_dir()
    dest = registry.local_path(info, directory)
    if dest.is_file():
        print(f"{info.name} is already downloaded: {dest}")
        return 0
    print(f"downloading {info.name} from {info.url}")
    print(f"licence: {info.licence}")
    download(args.url or info.url, dest, size=info.size, sha256=info.sha256, progress=text_progress())
    print(f"saved {dest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="draggan", description="Drag-based image editing with StyleGAN generators")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="render the image of a seed")
    add_model_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list or download checkpoints").add_subparsers(dest="models_command",
                                                                                            required=True)
    p = models.add_parser("list", help="known and local checkpoints")
    p.add_argument("--dir", default=None, help="models folder (default: $DRAGGAN_MODELS or ~/.local/share/draggan/models)")
    p.add_argument("-v", "--verbose", action="store_true", help="show URLs, sizes and hashes")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("download", help="download a registry checkpoint (resumable)")
    p.add_argument("name")
    p.add_argument("--dir", default=None)
    p.add_argument("--url", default=None, help="alternative URL (a mirror) for the same file")
    p.set_defaults(func=cmd_models_download)
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
