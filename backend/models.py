"""The model catalogue: which generators this daemon offers, and a small cache of loaded ones.

Clients name models only by the names listed here: registry models present on disk and
checkpoint files in the models folder. A request's text is only ever used as a key into that
list, never joined to a path, so no request can make the daemon open a file of its choosing.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from pathlib import Path

import torch

from draggan_core import registry
from draggan_core.checkpoint import load_generator
from draggan_core.stylegan2 import Generator

from .errors import ApiError, short


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    info: registry.ModelInfo | None  # None for the user's own checkpoint files

    @property
    def learning_rate(self) -> float:
        return registry.default_learning_rate(self.info)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    entry: ModelEntry
    G: Generator

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model's images."""
        return tuple(self.G.img_size)


class ModelCatalogue:
    """Lists the models on disk (re-scanned on every call, so downloads show up) and loads them by name."""

    def __init__(self, directory: Path, device: torch.device, max_loaded: int):
        self.directory = directory
        self.device = device
        self.max_loaded = max(1, max_loaded)
        self._loaded: collections.OrderedDict[str, LoadedModel] = collections.OrderedDict()
        self._lock = threading.Lock()

    def entries(self) -> dict[str, ModelEntry]:
        found: dict[str, ModelEntry] = {}
        registry_files = set()
        for info in registry.ZOO.values():
            path = registry.local_path(info, self.directory)
            registry_files.add(path.name)
            if path.is_file():
                found[info.name] = ModelEntry(info.name, path, info)
        for path in registry.local_models(self.directory):
            if path.name not in registry_files:
                name = path.stem if path.stem not in found else path.name
                found[name] = ModelEntry(name, path, None)
        return found

    def entry(self, name: str | None) -> ModelEntry:
        """The entry for an exact listed name; None means the demo model."""
        entries = self.entries()
        wanted = registry.DEMO_MODEL if name is None else name
        if wanted in entries:
            return entries[wanted]
        available = ", ".join(sorted(entries)) or "none (put checkpoints in the daemon's models folder)"
        if name is None:
            raise ApiError(400, "unknown_model", f"no model given and the demo model is not installed; "
                                                 f"name one of: {available}")
        raise ApiError(400, "unknown_model", f"model {short(name)} is not available on this daemon; "
                                             f"available: {available}")

    def load(self, name: str | None) -> LoadedModel:
        """The generator for a listed name, loaded on first use; call from the worker thread."""
        entry = self.entry(name)
        with self._lock:
            cached = self._loaded.get(entry.name)
            if cached is not None and cached.entry.path == entry.path:
                self._loaded.move_to_end(entry.name)
                return cached
        model = LoadedModel(entry, load_generator(entry.path, device=self.device))
        with self._lock:
            self._loaded[entry.name] = model
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)  # sessions still using it keep it alive
        return model

    def loaded_names(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def describe(self) -> list[dict]:
        """What a client shows in its model menu; a file's image size is known once it was loaded."""
        with self._lock:
            loaded = dict(self._loaded)
        out = []
        for name, entry in sorted(self.entries().items()):
            info = entry.info
            if name in loaded:
                height, width = loaded[name].G.img_size
            else:
                height = info.resolution if info else None
                width = (info.width or info.resolution) if info else None
            out.append({
                "name": name,
                "resolution": height,
                "width": width,
                "height": height,
                "domain": info.domain if info else "your own checkpoint",
                "licence": info.licence if info else None,
                "learning_rate": entry.learning_rate,
                "loaded": name in loaded,
            })
        return out
