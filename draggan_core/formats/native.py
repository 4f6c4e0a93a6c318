"""The project's own checkpoint format: safetensors (tensors only) plus the generator config as JSON.

safetensors holds raw tensors and a string-to-string header, so a file can never carry code, and
it loads without unpickling anything. The config lives under the header key "config": the
generator's config fields plus `flavour` ('stylegan2', 'stylegan3-t' or 'stylegan3-r'; files
without it, written before StyleGAN3 support, are StyleGAN2).
"""
from __future__ import annotations

import json

import safetensors
import safetensors.torch

from .. import stylegan3
from ..stylegan2 import Generator, GeneratorConfig
from .common import CheckpointError, build_generator, build_stylegan3, is_stylegan3_state

FORMAT_TAG = "draggan-studio/stylegan2"
FORMAT_VERSION = "1"


def write(G: Generator, path: str, metadata: dict[str, str] | None = None) -> None:
    """Save G's state dict and config; `metadata` adds free-form string fields (e.g. a model name)."""
    flavour = G.cfg.flavour if isinstance(G, stylegan3.Generator) else "stylegan2"
    config = {"flavour": flavour, **G.cfg.to_dict()}
    header = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "config": json.dumps(config),
              **(metadata or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in G.state_dict().items()}
    safetensors.torch.save_file(state, path, metadata=header)


def read_metadata(path: str) -> dict[str, str]:
    with safetensors.safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def read(path: str) -> Generator:
    try:
        meta = read_metadata(path)
        if meta.get("format") != FORMAT_TAG:
            raise CheckpointError(f"safetensors file is not a draggan-studio generator (format={meta.get('format')!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"unsupported draggan-studio format version {meta.get('format_version')!r}")
        config = json.loads(meta["config"])
        flavour = config.pop("flavour", "stylegan2")
        if flavour in stylegan3.FLAVOURS:
            cfg = stylegan3.StyleGAN3Config.from_dict(config)
            if cfg.flavour != flavour:
                raise CheckpointError(f"config says {flavour!r} but its settings describe {cfg.flavour!r}")
        elif flavour == "stylegan2":
            cfg = GeneratorConfig.from_dict(config)
        else:
            raise CheckpointError(f"unsupported generator flavour {flavour!r}")
        state = safetensors.torch.load_file(path)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"broken draggan-studio checkpoint: {e}") from None
    if is_stylegan3_state(state) != isinstance(cfg, stylegan3.StyleGAN3Config):
        raise CheckpointError(f"config says {flavour!r} but the tensors are "
                              f"{'StyleGAN3' if is_stylegan3_state(state) else 'StyleGAN2'}'s")
    if isinstance(cfg, stylegan3.StyleGAN3Config):
        return build_stylegan3(cfg, state)
    return build_generator(cfg, state)
