"""Known checkpoints (the DragGAN model zoo, NVIDIA's StyleGAN2/StyleGAN3 releases, StyleGAN-Human) and local files.

A model is named either by a registry name or by a path. Registry entries carry what a user needs
to decide and what the drag loop needs as defaults (learning rate). Files are found in the models
folder: $DRAGGAN_MODELS, else $XDG_DATA_HOME/draggan/models (~/.local/share/draggan/models).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

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

    @property
    def size_text(self) -> str:
        """'WxH' of the model's images."""
        return f"{self.width or self.resolution}x{self.resolution}"


def _ngc(name: str, res: int, domain: str, lr: float = 1e-3) -> ModelInfo:
    return ModelInfo(name, res, domain, _NVIDIA_NC, _NGC2 + f"{name}.pkl", f"{name}.pkl", learning_rate=lr)


def _ngc3(name: str, res: int, domain: str, lr: float = 1e-3) -> ModelInfo:
    config = "R (rotation equivariant)" if name.startswith("stylegan3-r") else "T (translation equivariant)"
    return ModelInfo(name, res, domain, _NVIDIA_NC, _NGC3 + f"{name}.pkl", f"{name}.pkl", learning_rate=lr,
                     architecture=f"stylegan3-{name[10]}", note=f"StyleGAN3-{config}")


def _human(name: str, height: int) -> ModelInfo:
    return ModelInfo(name, height, "full-body humans (StyleGAN-Human)", _HUMAN_TERMS, None, f"{name}.pkl",
                     width=height // 2, note=_HUMAN_NOTE.format(file=f"{name}.pkl"))


ZOO: dict[str, ModelInfo] = {m.name: m for m in [
    ModelInfo(DEMO_MODEL, 128, "cartoon animal heads (procedural)", "Apache-2.0 (this project)",
              filename=DEMO_FILE.name, learning_rate=2e-3, note="ships with draggan-studio; trained offline"),
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
