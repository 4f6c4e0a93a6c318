"""The model catalogue: which generators this daemon offers, downloaded or not; and each device's cache of loaded ones.

Clients name models only by the names listed here: the registry's entries (built in, plus a studio's
catalogue file), whether their file is in the models folder yet or not, and the checkpoint files
found there. A request's text is only ever used as a key into that list, never joined to a path,
so no request can make the daemon open or write a file of its choosing.
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

    @property
    def framing(self) -> str:
        """How its training images were framed (registry.ModelInfo.framing); a user's own file: a centred
        crop, which a box aligns (nothing is known about its landmarks)."""
        return self.info.framing if self.info is not None else "centre"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    entry: ModelEntry
    G: Generator

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model's images."""
        return tuple(self.G.img_size)


class ModelCatalogue:
    """Lists the models (the models folder is re-scanned on every call, so downloads show up at once); each device's
    ModelCache loads them by name."""

    def __init__(self, directory: Path, zoo: dict[str, registry.ModelInfo] | None = None):
        self.directory = directory
        self.zoo = dict(registry.ZOO if zoo is None else zoo)  # registry.load_catalogue's: built-in + the studio's

    def entries(self) -> dict[str, ModelEntry]:
        """Every catalogue entry, downloaded or not, and the user's own files in the models folder."""
        found: dict[str, ModelEntry] = {}
        catalogue_files = set()
        for info in self.zoo.values():
            path = registry.local_path(info, self.directory)
            catalogue_files.add(path.name)
            found[info.name] = ModelEntry(info.name, path, info)
        for path in registry.local_models(self.directory):
            if path.name not in catalogue_files:
                name = path.stem if path.stem not in found else path.name
                found[name] = ModelEntry(name, path, None)
        return found

    def entry(self, name: str | None) -> ModelEntry:
        """The entry for an exact listed name whose file is here; None means the demo model."""
        entries = self.entries()
        wanted = registry.DEMO_MODEL if name is None else name
        found = entries.get(wanted)
        if found is not None and found.path.is_file():
            return found
        if found is not None and found.info is not None and wanted != registry.DEMO_MODEL:
            raise self._not_downloaded(found.info)
        here = [n for n, e in entries.items() if e.path.is_file()]
        available = ", ".join(sorted(here)) or "none (put checkpoints in the daemon's models folder)"
        if name is None:
            raise ApiError(400, "unknown_model", f"no model given and the demo model is not installed; "
                                                 f"name one of: {available}")
        raise ApiError(400, "unknown_model", f"model {short(name)} is not available on this daemon; "
                                             f"available: {available}")

    def _not_downloaded(self, info: registry.ModelInfo) -> ApiError:
        if info.url is None:
            how = info.note or "put its file in the daemon's models folder"
            return ApiError(409, "model_not_downloaded", f"model {info.name!r} is not downloaded, and the daemon "
                                                         f"cannot fetch it: {how}")
        catalogue = "" if registry.ZOO.get(info.name) is info else " --catalogue FILE"
        size = f", {info.size / 1e6:.0f} MB" if info.size else ""
        return ApiError(409, "model_not_downloaded", f"model {info.name!r} is not downloaded yet{size}; download "
                                                     f"it first (POST /api/v1/models/{info.name}/download, or "
                                                     f"`draggan models download {info.name}{catalogue}` where the "
                                                     f"daemon runs)")

    def download_target(self, name: str) -> tuple[registry.ModelInfo, Path]:
        """The catalogue entry a download names and the file it becomes, from the entry alone: the request gives
        only the name, which must be a catalogue key (404 otherwise), never a path, file name or URL."""
        info = self.zoo.get(name)
        if info is None:
            raise ApiError(404, "unknown_model", f"no model {short(name)} in this daemon's catalogue (GET "
                                                 f"/api/v1/models lists them)")
        dest = registry.local_path(info, self.directory)
        if dest.is_file():
            built_in = " (it is built in)" if info.name == registry.DEMO_MODEL else ""
            raise ApiError(409, "already_downloaded", f"model {info.name!r} is already downloaded{built_in}")
        if info.url is None:
            raise ApiError(409, "not_downloadable", f"model {info.name!r} has no download address: "
                                                    f"{info.note or 'put its file in the models folder by hand'}")
        if dest.parent != self.directory or dest.name in ("", ".", ".."):  # load_catalogue allows no such entry
            raise ApiError(409, "not_downloadable", f"model {info.name!r} has a file name outside the models folder")
        return info, dest

    def describe(self, loaded: dict[str, LoadedModel], downloading: frozenset[str] | set[str] = frozenset()
                 ) -> list[dict]:
        """What a client shows in its model menu and its download list; a file's image size is known once it
        was loaded. `loaded`: the models loaded on any device, by name; `downloading`: the names whose download
        is queued or running."""
        out = []
        for name, entry in sorted(self.entries().items()):
            info = entry.info
            if name in loaded:
                height, width = loaded[name].G.img_size
            else:
                height = info.resolution if info else None
                width = (info.width or info.resolution) if info else None
            try:
                on_disk: int | None = entry.path.stat().st_size if entry.path.is_file() else None
            except OSError:  # removed between the two calls
                on_disk = None
            out.append({
                "name": name,
                "resolution": height,
                "width": width,
                "height": height,
                "domain": info.domain if info else "your own checkpoint",
                "licence": info.licence if info else None,
                "learning_rate": entry.learning_rate,
                "framing": entry.framing,
                "loaded": name in loaded,
                "downloaded": on_disk is not None,
                "downloading": name in downloading,
                "downloadable": bool(info and info.url),
                "size": on_disk if on_disk is not None else (info.size if info else None),
                "note": info.note if info else "",
            })
        return out


class ModelCache:
    """The generators loaded on one device: at most max_loaded, the least recently used dropped first (sessions
    still using one keep it alive). Each device has its own, so a session's generator lives where its tensors do."""

    def __init__(self, catalogue: ModelCatalogue, device: torch.device, max_loaded: int):
        self.catalogue = catalogue
        self.device = device
        self.max_loaded = max(1, max_loaded)
        self._loaded: collections.OrderedDict[str, LoadedModel] = collections.OrderedDict()
        self._lock = threading.Lock()  # request threads read the list while the device's worker loads

    def load(self, name: str | None) -> LoadedModel:
        """The generator for a listed name, loaded on first use; call from the device's worker thread."""
        entry = self.catalogue.entry(name)
        with self._lock:
            cached = self._loaded.get(entry.name)
            if cached is not None and cached.entry.path == entry.path:
                self._loaded.move_to_end(entry.name)
                return cached
        model = LoadedModel(entry, load_generator(entry.path, device=self.device))
        with self._lock:
            self._loaded[entry.name] = model
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
        return model

    def loaded(self) -> dict[str, LoadedModel]:
        with self._lock:
            return dict(self._loaded)
