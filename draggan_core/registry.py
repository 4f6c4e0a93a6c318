"""Known checkpoints (the DragGAN model zoo, NVIDIA's StyleGAN2/StyleGAN3 releases, StyleGAN-Human) and local files.

A model is named either by a registry name or by a path. Registry entries carry what a user needs
to decide and what the drag loop needs as defaults (learning rate). Files are found in the models
folder: $DRAGGAN_MODELS, else $XDG_DATA_HOME/draggan/models (~/.local/share/draggan/models).
A studio adds its own checkpoints with a catalogue file (read_catalogue, format in docs/api.md).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEMO_MODEL = "demo"
DEMO_FILE = Path(__file__).parent / "demo" / "demo_model.safetensors"
CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")

_NGC2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_NGC3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
_SELF_DISTILLED = "https://storage.googleapis.com/self-distilled-stylegan/"
_TF2 = "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/"
_NVIDIA_NC = "NVIDIA Source Code License-NC: non-commercial research use only"
_SELF_DISTILLED_TERMS = "self-distilled StyleGAN release terms (research use); check before any other use"
_HUMAN_TERMS = "StyleGAN-Human release terms (stylegan-human/StyleGAN-Human; research use); check before any other use"
_HUMAN_NOTE = ("StyleGAN2 (SG2-ADA fork), 2:1 full-body images; no stable direct URL: download {file} from the "
               "Google Drive link in the XingangPan/DragGAN README or the stylegan-human/StyleGAN-Human README, "
               "and put it in the models folder")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    resolution: int
    domain: str
    licence: str
    url: str | None = None
    filename: str | None = None
    size: int | None = None  # bytes, where known
    sha256: str | None = None  # where known
    learning_rate: float = 1e-3  # drag optimiser default (the paper: 2e-3 for FFHQ, AFHQ cat, LSUN car)
    note: str = ""
    width: int | None = None  # image width where it differs from `resolution` (the height), e.g. StyleGAN-Human
    architecture: str = "stylegan2"  # informative only: loading detects it from the file's contents
    # How the training images were framed (draggan_core.alignment.FRAMINGS): 'ffhq' (an oriented square
    # from eyes and mouth corners), 'demo' (the demo world's own) or 'centre' (centred crops: aligned
    # with a box the user draws). A real layer aligned this way inverts and drags as the model learnt.
    framing: str = "centre"

    @property
    def size_text(self) -> str:
        """'WxH' of the model's images."""
        return f"{self.width or self.resolution}x{self.resolution}"


def _framing(name: str) -> str:
    """FFHQ, CelebA-HQ and MetFaces were aligned with the eye-and-mouth recipe; their "-u" variants
    (unaligned) and every other dataset of the zoo are centred crops."""
    aligned = any(k in name for k in ("-ffhq-", "-celebahq-", "-metfaces-"))
    return "ffhq" if aligned else "centre"


def _ngc(name: str, res: int, domain: str, lr: float = 1e-3) -> ModelInfo:
    return ModelInfo(name, res, domain, _NVIDIA_NC, _NGC2 + f"{name}.pkl", f"{name}.pkl", learning_rate=lr,
                     framing=_framing(name))


def _ngc3(name: str, res: int, domain: str, lr: float = 1e-3) -> ModelInfo:
    config = "R (rotation equivariant)" if name.startswith("stylegan3-r") else "T (translation equivariant)"
    return ModelInfo(name, res, domain, _NVIDIA_NC, _NGC3 + f"{name}.pkl", f"{name}.pkl", learning_rate=lr,
                     architecture=f"stylegan3-{name[10]}", note=f"StyleGAN3-{config}", framing=_framing(name))


def _human(name: str, height: int) -> ModelInfo:
    return ModelInfo(name, height, "full-body humans (StyleGAN-Human)", _HUMAN_TERMS, None, f"{name}.pkl",
                     width=height // 2, note=_HUMAN_NOTE.format(file=f"{name}.pkl"))


ZOO: dict[str, ModelInfo] = {m.name: m for m in [
    ModelInfo(DEMO_MODEL, 128, "cartoon animal heads (procedural)", "Apache-2.0 (this project)",
              filename=DEMO_FILE.name, learning_rate=2e-3, note="ships with draggan-studio; trained offline",
              framing="demo"),
    ModelInfo("stylegan2_lions_512_pytorch", 512, "lions", _SELF_DISTILLED_TERMS,
              _SELF_DISTILLED + "lions_512_pytorch.pkl", "stylegan2_lions_512_pytorch.pkl"),
    ModelInfo("stylegan2_dogs_1024_pytorch", 1024, "dogs", _SELF_DISTILLED_TERMS,
              _SELF_DISTILLED + "dogs_1024_pytorch.pkl", "stylegan2_dogs_1024_pytorch.pkl"),
    ModelInfo("stylegan2_horses_256_pytorch", 256, "horses", _SELF_DISTILLED_TERMS,
              _SELF_DISTILLED + "horses_256_pytorch.pkl", "stylegan2_horses_256_pytorch.pkl"),
    ModelInfo("stylegan2_elephants_512_pytorch", 512, "elephants", _SELF_DISTILLED_TERMS,
              _SELF_DISTILLED + "elephants_512_pytorch.pkl", "stylegan2_elephants_512_pytorch.pkl"),
    ModelInfo("stylegan2-car-config-f", 512, "cars (LSUN, 512x384 letterboxed)", _NVIDIA_NC,
              _TF2 + "stylegan2-car-config-f.pkl", "stylegan2-car-config-f.pkl", learning_rate=2e-3,
              note="TensorFlow pickle, converted on load"),
    ModelInfo("stylegan2-cat-config-f", 256, "cats (LSUN)", _NVIDIA_NC,
              _TF2 + "stylegan2-cat-config-f.pkl", "stylegan2-cat-config-f.pkl", learning_rate=2e-3,
              note="TensorFlow pickle, converted on load"),
    _ngc("stylegan2-ffhq-256x256", 256, "faces (FFHQ)", 2e-3),
    _ngc("stylegan2-ffhq-512x512", 512, "faces (FFHQ)", 2e-3),
    _ngc("stylegan2-ffhq-1024x1024", 1024, "faces (FFHQ)", 2e-3),
    _ngc("stylegan2-ffhqu-256x256", 256, "faces (FFHQ, unaligned)", 2e-3),
    _ngc("stylegan2-ffhqu-1024x1024", 1024, "faces (FFHQ, unaligned)", 2e-3),
    _ngc("stylegan2-celebahq-256x256", 256, "faces (CelebA-HQ)"),
    _ngc("stylegan2-afhqcat-512x512", 512, "cats (AFHQ)", 2e-3),
    _ngc("stylegan2-afhqdog-512x512", 512, "dogs (AFHQ)"),
    _ngc("stylegan2-afhqwild-512x512", 512, "wild animals (AFHQ)"),
    _ngc("stylegan2-afhqv2-512x512", 512, "animals (AFHQ v2)"),
    _ngc("stylegan2-brecahad-512x512", 512, "histopathology (BreCaHAD)"),
    _ngc("stylegan2-lsundog-256x256", 256, "dogs (LSUN)"),
    _ngc("stylegan2-metfaces-1024x1024", 1024, "painted faces (MetFaces)"),
    _ngc("stylegan2-metfacesu-1024x1024", 1024, "painted faces (MetFaces, unaligned)"),
    *[_ngc3(f"stylegan3-{c}-{name}", res, domain, lr) for c in ("t", "r") for name, res, domain, lr in (
        ("ffhq-1024x1024", 1024, "faces (FFHQ)", 2e-3),
        ("ffhqu-1024x1024", 1024, "faces (FFHQ, unaligned)", 2e-3),
        ("ffhqu-256x256", 256, "faces (FFHQ, unaligned)", 2e-3),
        ("metfaces-1024x1024", 1024, "painted faces (MetFaces)", 1e-3),
        ("metfacesu-1024x1024", 1024, "painted faces (MetFaces, unaligned)", 1e-3),
        ("afhqv2-512x512", 512, "animals (AFHQ v2)", 1e-3),
    )],
    _human("stylegan_human_v2_512", 512),
    _human("stylegan_human_v2_1024", 1024),
]}


def models_dir() -> Path:
    env = os.environ.get("DRAGGAN_MODELS")
    if env:
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "draggan" / "models"


def local_path(info: ModelInfo, directory: Path | None = None) -> Path:
    if info.name == DEMO_MODEL:
        return DEMO_FILE
    return (directory or models_dir()) / (info.filename or info.name)


def local_models(directory: Path | None = None) -> list[Path]:
    """Checkpoint files in the models folder (registry downloads and the user's own files)."""
    d = directory or models_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)


class UnknownModelError(LookupError):
    pass


def resolve(model: str | None, directory: Path | None = None) -> tuple[Path, ModelInfo | None]:
    """A model argument (registry name, file name in the models folder, or path) -> (file, registry info).

    None means the demo model. A registry model that is not downloaded yet raises with the command
    that downloads it.
    """
    name = model or DEMO_MODEL
    d = directory or models_dir()
    if name in ZOO:
        info = ZOO[name]
        path = local_path(info, d)
        if not path.is_file():
            if name == DEMO_MODEL:
                hint = "it ships with the package; reinstall it"
            elif info.url is None:
                hint = info.note or "download it by hand into the models folder"
            else:
                hint = f"run: draggan models download {name}"
            raise UnknownModelError(f"model {name!r} is not available locally ({hint})")
        return path, info
    in_dir = d / name
    if in_dir.is_file():
        return in_dir, None
    if os.path.isfile(name):
        return Path(name), None
    raise UnknownModelError(f"unknown model {name!r}: not a registry name, a file in {d}, or an existing path")


def default_learning_rate(info: ModelInfo | None) -> float:
    return info.learning_rate if info is not None else 1e-3


# ---------------------------------------------------------------- catalogue files (a studio's own checkpoints)

class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message names the file, the entry and the field."""


MAX_CATALOGUE_BYTES = 1024 * 1024  # a catalogue lists models, not data: a thousand entries take ~300 KB
MAX_CATALOGUE_ENTRIES = 1000  # entries in one file
MAX_CATALOGUE_TEXT = 1000  # characters of a domain, licence or note (they are shown in model menus)
MAX_URL_LENGTH = 2048  # what browsers and servers commonly accept
MAX_RESOLUTION = 8192  # pixels per side; no StyleGAN release comes near it
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # names and file names: no separators, no spaces
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_REQUIRED = ("name", "url", "resolution", "domain", "licence")
_OPTIONAL = ("sha256", "size", "filename", "learning_rate", "note", "width", "framing")
CATALOGUE_FRAMINGS = ("ffhq", "centre")  # 'demo' belongs to the built-in demo model alone


def load_catalogue(path: str | os.PathLike | None) -> dict[str, ModelInfo]:
    """The built-in registry plus a catalogue file's entries (None: the built-in registry alone).

    The file is a JSON list of objects (docs/api.md, "Catalogue file"). It is checked whole and strictly,
    because its names become file names in the models folder and its URLs are fetched: any doubt is an error
    that names the entry and the field. An entry with a built-in name replaces that entry (a studio's mirror of
    a public model); the built-in demo model cannot be replaced.
    """
    if path is None:
        return dict(ZOO)
    try:
        return _merge(_read_entries(Path(path)))
    except CatalogueError as e:
        raise CatalogueError(f"catalogue {path}: {e}") from None


def _read_entries(path: Path) -> list[ModelInfo]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CATALOGUE_BYTES + 1)
    except OSError as e:
        raise CatalogueError(f"cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_CATALOGUE_BYTES:
        raise CatalogueError(f"larger than {MAX_CATALOGUE_BYTES} bytes; a catalogue lists models, not data")
    try:
        entries = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise CatalogueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CatalogueError(f"not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    except ValueError as e:  # from _no_duplicate_keys
        raise CatalogueError(f"not valid: {e}") from None
    except RecursionError:
        raise CatalogueError("not valid JSON: nested too deeply") from None
    if not isinstance(entries, list):
        raise CatalogueError("the file must hold a JSON list of model objects")
    if len(entries) > MAX_CATALOGUE_ENTRIES:
        raise CatalogueError(f"{len(entries)} entries, more than the limit of {MAX_CATALOGUE_ENTRIES}")
    infos: list[ModelInfo] = []
    names: dict[str, int] = {}
    files: dict[str, int] = {}
    for number, entry in enumerate(entries, 1):
        info = _entry(entry, number)
        label = f"entry {number} ({info.name!r})"
        if info.name in names:
            raise CatalogueError(f"{label}: the name is already used by entry {names[info.name]}")
        if info.filename.lower() in files:  # some file systems do not tell case apart
            raise CatalogueError(f"{label}: the file name {info.filename!r} is already used by entry "
                                 f"{files[info.filename.lower()]}")
        names[info.name], files[info.filename.lower()] = number, number
        infos.append(info)
    return infos


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"the key {repeated[0]!r} appears twice in one object")
    return dict(pairs)


def _entry(entry: object, number: int) -> ModelInfo:
    """One catalogue object as a ModelInfo, or CatalogueError naming the entry and the field."""
    label = f"entry {number}"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{label} must be an object with the fields {', '.join(_REQUIRED)}")
    if isinstance(entry.get("name"), str) and _SAFE_NAME.fullmatch(entry["name"]):
        label = f"entry {number} ({entry['name']!r})"
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CatalogueError(f"{label}: unknown field {unknown[0]!r}; the fields are {', '.join(_REQUIRED)} and "
                             f"optionally {', '.join(_OPTIONAL)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise CatalogueError(f"{label}: missing field {missing[0]!r}")

    def fail(field: str, rule: str) -> CatalogueError:
        return CatalogueError(f"{label}: {field!r} {rule}, got {_shown(entry[field])}")

    name = entry["name"]
    if not isinstance(name, str) or not _safe_name(name):
        raise fail("name", "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                           "without '..'")
    url = entry["url"]
    if not isinstance(url, str) or not _http_url(url):
        raise fail("url", f"must be an http or https URL with a host, at most {MAX_URL_LENGTH} characters, "
                          f"without spaces")
    resolution = entry["resolution"]
    if not _int_in(resolution, 4, MAX_RESOLUTION):
        raise fail("resolution", f"must be the image height in pixels, an integer from 4 to {MAX_RESOLUTION}")
    width = entry.get("width")
    if width is not None and not _int_in(width, 2, MAX_RESOLUTION):
        raise fail("width", f"must be the image width in pixels, an integer from 2 to {MAX_RESOLUTION}")
    texts = {}
    for field in ("domain", "licence", "note"):
        value = entry.get(field, "")
        if not isinstance(value, str) or len(value) > MAX_CATALOGUE_TEXT or not value.isprintable() or (
                field != "note" and not value.strip()):
            raise fail(field, f"must be {'' if field == 'note' else 'non-empty '}text of at most "
                              f"{MAX_CATALOGUE_TEXT} printable characters")
        texts[field] = value
    sha256 = entry.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise fail("sha256", "must be 64 hexadecimal digits")
    size = entry.get("size")
    if size is not None and not _int_in(size, 1, 2 ** 53):
        raise fail("size", "must be the file's size in bytes, a positive integer")
    learning_rate = entry.get("learning_rate", 1e-3)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            math.isfinite(learning_rate) and 0 < learning_rate <= 1):
        raise fail("learning_rate", "must be a number above 0 and at most 1")
    # A mirror of a built-in model keeps its framing unless the entry says otherwise.
    framing = entry.get("framing", ZOO[name].framing if name in ZOO else "centre")
    if framing not in CATALOGUE_FRAMINGS and not (name in ZOO and "framing" not in entry):
        raise fail("framing", f"must be one of {', '.join(map(repr, CATALOGUE_FRAMINGS))}")
    filename = entry.get("filename")
    if filename is None:
        filename = _filename_from_url(name, url)
        if filename is None:
            raise CatalogueError(f"{label}: the URL's path does not end in a checkpoint suffix "
                                 f"({', '.join(CHECKPOINT_SUFFIXES)}); give a 'filename'")
    elif not isinstance(filename, str) or not _safe_filename(filename):
        raise fail("filename", f"must be a plain file name (letters, digits, '.', '_', '-'; no folders, no '..') "
                               f"ending in {', '.join(CHECKPOINT_SUFFIXES)}")
    return ModelInfo(name, resolution, texts["domain"], texts["licence"], url, filename, size,
                     sha256.lower() if sha256 else None, float(learning_rate), texts["note"], width,
                     framing=framing)


def _merge(entries: list[ModelInfo]) -> dict[str, ModelInfo]:
    """ZOO with the catalogue's entries: one with a built-in name replaces that entry, others follow."""
    merged = dict(ZOO)
    for info in entries:
        if info.name == DEMO_MODEL:
            raise CatalogueError(f"entry {info.name!r}: the demo model is built in and cannot be replaced")
        merged[info.name] = info
    builtin_files = {(i.filename or i.name).lower(): i.name for i in merged.values() if ZOO.get(i.name) is i}
    for info in entries:  # their own file names differ already (_read_entries)
        owner = builtin_files.get(info.filename.lower())
        if owner is not None:
            raise CatalogueError(f"entry {info.name!r}: the file name {info.filename!r} is already the file of "
                                 f"built-in model {owner!r}; choose another 'filename'")
    return merged


def _safe_name(text: str) -> bool:
    return bool(_SAFE_NAME.fullmatch(text)) and ".." not in text


def _safe_filename(text: str) -> bool:
    stem, suffix = os.path.splitext(text)
    return (_safe_name(text) and suffix.lower() in CHECKPOINT_SUFFIXES and bool(stem)
            and stem.split(".")[0].upper() not in _WINDOWS_DEVICES)


def _filename_from_url(name: str, url: str) -> str | None:
    """The model's name with the suffix of the URL's file ('faces' + '.../snapshot.pkl' -> 'faces.pkl')."""
    suffix = os.path.splitext(unquote(urlsplit(url).path).rsplit("/", 1)[-1])[1].lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        return None
    filename = name if name.lower().endswith(suffix) else name + suffix
    return filename if _safe_filename(filename) else None


def _http_url(url: str) -> bool:
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _shown(value: object) -> str:
    """A refused value for a message, cut so that a huge one cannot flood the terminal."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
