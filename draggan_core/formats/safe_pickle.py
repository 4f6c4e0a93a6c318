"""A pickle reader that cannot run code from the file.

NVIDIA network pickles embed the Python source of their classes and the official loader executes
it. We never do: every global a pickle names must be on an exact allow-list, and the
persistence and TensorFlow classes are replaced by inert records holding only their data.
"""
from __future__ import annotations

import codecs
import collections
import io
import pickle
from typing import Any, BinaryIO

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a pickle asks for a global that is not on the allow-list."""


class PersistentObject:
    """What an NVIDIA persistent class instance becomes: its class name and state, never its code."""

    def __init__(self, meta: dict[str, Any]):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise pickle.UnpicklingError("persistent object record is malformed")
        if meta.get("version") != 6:
            raise pickle.UnpicklingError(f"unsupported persistence version {meta.get('version')!r} (expected 6)")
        self.class_name: str = str(meta.get("class_name"))
        self.state: dict[str, Any] = dict(meta.get("state") or {})
        self.module_src: str = str(meta.get("module_src", ""))

    def __repr__(self) -> str:
        return f"<PersistentObject {self.class_name}>"


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access) used in init kwargs."""


class TFNetwork(dict):
    """Stand-in for dnnlib.tflib.network.Network: keeps the pickled fields, builds nothing."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("TensorFlow network state is malformed")
        self.update(state)


def _load_storage_from_bytes(b: bytes) -> Any:
    # torch's own restricted loader rebuilds the storage blob; it refuses code as well.
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstructor
    scalar = np.float64(0).__reduce__()[0]
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = reconstruct
        table[(mod, "scalar")] = scalar
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    return table


def _persistent(meta: dict[str, Any]) -> PersistentObject:
    return PersistentObject(meta)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose find_class resolves only the exact (module, name) pairs above."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load: the pickle calls {module}.{name}, which is not allowed "
                "(checkpoints may only contain tensors, numbers and network layouts)"
            ) from None


def load(f: BinaryIO) -> Any:
    """Unpickle from a binary file object with the allow-list."""
    return RestrictedUnpickler(f).load()


def loads(data: bytes) -> Any:
    return load(io.BytesIO(data))
