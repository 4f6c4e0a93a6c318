"""load_generator: recognise a checkpoint file by its contents (never its name) and load it safely."""
from __future__ import annotations

import os
import pickle
import struct
import zipfile

import torch

from .formats import native, nvidia, rosinality, safe_pickle, tf_legacy
from .formats.common import CheckpointError
from .stylegan2 import Generator

__all__ = ["CheckpointError", "load_generator", "detect_format"]

# torch.save files written before torch 1.6 start with this pickled magic number.
_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def detect_format(path: str) -> str:
    """'safetensors', 'torch' (zip or legacy torch.save) or 'pickle', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head[2:14] == _TORCH_LEGACY_MAGIC:
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path}: unsupported checkpoint format (not a pickle, torch or safetensors file)")


def _load_pickle(path: str) -> tuple[Generator, str]:
    try:
        with open(path, "rb") as f:
            data = safe_pickle.load(f)
    except safe_pickle.UnsafePickleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: broken pickle: {e}") from None
    if isinstance(data, tuple):
        return tf_legacy.generator_from_data(data), "tensorflow-pickle"
    return nvidia.generator_from_data(data), "nvidia-pickle"


def _load_torch(path: str) -> tuple[Generator, str]:
    try:
        data = rosinality.load_file(path)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than tensors ({e})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: broken torch file: {e}") from None
    if rosinality.is_rosinality(data):
        return rosinality.generator_from_data(data), "rosinality"
    keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
    raise CheckpointError(f"{path}: torch file is not a known generator checkpoint (holds {keys})")


def load_generator(path: str | os.PathLike, device: str | torch.device | None = None) -> Generator:
    """Load the (EMA) generator from any supported checkpoint, in eval mode, on `device` (default CPU).

    Supported: NVIDIA network pickles (stylegan2-ada-pytorch and stylegan3 repositories, snapshots
    or generator-only; StyleGAN2 including non-square StyleGAN-Human, and StyleGAN3 T and R),
    TensorFlow StyleGAN2 pickles, rosinality .pt files and our safetensors format. The returned
    class follows the contents (stylegan2.Generator or stylegan3.Generator, same public API).
    Nothing in the file is ever executed. `G.checkpoint_format` records what was read.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = detect_format(path)
    if kind == "safetensors":
        G, fmt = native.read(path), "draggan-safetensors"
    elif kind == "torch":
        G, fmt = _load_torch(path)
    else:
        G, fmt = _load_pickle(path)
    G.checkpoint_format = fmt
    return G.to(device or "cpu")
