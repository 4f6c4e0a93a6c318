"""The project's own checkpoint format: safetensors (tensors only) plus the generator config as JSON.

safetensors holds raw tensors and a string-to-string header, so a file can never carry code, and
it loads without unpickling anything. The config lives under the header key "config".
"""
from __future__ import annotations

import json

import safetensors
import safetensors.torch

from ..stylegan2 import Generator, GeneratorConfig
from .common import CheckpointError, build_generator

FORMAT_TAG = "draggan-studio/stylegan2"
FORMAT_VERSION = "1"


def write(G: Generator, path: str, metadata: dict[str, str] | None = None) -> None:
    """Save G's state dict and config; `metadata` adds free-form string fields (e.g. a model name)."""
    header = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "config": json.dumps(G.cfg.to_dict()),
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
        cfg = GeneratorConfig.from_dict(json.loads(meta["config"]))
        state = safetensors.torch.load_file(path)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"broken draggan-studio checkpoint: {e}") from None
    return build_generator(cfg, state)
