"""Inversion: find a latent (and, optionally, a tuned copy of the generator) that reproduces an image.

Three stages, each optional, run by `Inverter.run()`:

1. 'w'   Projection into W, NVIDIA's projector schedule: start at w_avg (estimated from samples of
         the mapping network), one w broadcast to every layer, Adam (0.9, 0.999) with a linear
         learning-rate ramp-up over the first 5 % and a cosine ramp-down over the last 25 %, Gaussian
         noise on w (w_std * 0.05, decaying quadratically to 0 at 75 %), every noise buffer reset to
         randn and optimised with the noise regulariser (weight 1e5) and renormalised to zero mean,
         unit variance after each step.
2. 'w+'  The same schedule on all rows of W+ independently, started from the W result (smaller
         learning rate, no w noise by default), optionally pulled towards the W pivot.
3. 'pti' Pivotal tuning: a COPY of the generator's synthesis network is fine-tuned (Adam, lr 3e-4)
         at the fixed W+ latent until the reconstruction is close to exact, with the locality
         regulariser: w_r = w_p + alpha * (w_z - w_p) / |w_z - w_p| (per row), w_z = mapping(z, psi
         0.5), and an L2 penalty between the frozen and the tuned generator at w_r (noise 'none').

The loss needs no downloaded network: pixel L1 / L2 plus (1 - multi-scale SSIM) (draggan_core.losses),
computed only on valid pixels (a [H, W] weight, 0 on a region's padding or transparent pixels).
Pixel terms are weighted means over valid pixels; SSIM runs on the valid pixels' bounding box with
the invalid pixels of the render replaced by the target's, so they contribute nothing.

Optional feature losses plug in through the `FeatureLoss` protocol (a callable (render, target) ->
scalar with an `identity` string for session keys). `TorchScriptFeatureLoss` is one: a local
TorchScript file (e.g. a VGG/LPIPS network the user has) that is loaded with torch.jit.load only
after its sha256 matches the configured one; nothing is ever downloaded. A discriminator-feature
loss (sum over D's block outputs of mean squared differences) would be another FeatureLoss; the
checkpoint loaders do not keep D yet.

Projection works on a private copy of the generator that shares its parameters and owns its
buffers (so optimising the noise buffers never touches G). As in NVIDIA's projector and PTI, the
optimised noise is discarded afterwards by default: stage qualities are measured, and PTI tunes,
with the generator's own constant noise, the noise that DragSession renders with.
config.keep_noise=True keeps it instead; the generator to drag on is then the PTI-tuned copy
(which carries it) or a parameter-sharing copy of G with it. One deviation from the projector:
the noise starts from the generator's own constant noise (config.noise_init='model'), not fresh
randn ('random'); both are unit Gaussian noise, and the former reproduces G's own images.
The original G is never modified and nothing is written to disk unless `save_tuned` is called.

Every stage yields an `InversionStep` per step, can be stopped between steps (break out of the
loop, or a should_stop callable) and keeps its best step (lowest reconstruction loss, on the
latent, noise and weights that were actually rendered); `Inverter.result()` returns the best so far
at any time.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import weakref
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import losses
from .stylegan2 import Generator

STAGES = ("w", "w+", "pti")


# ---------------------------------------------------------------------- configuration

@dataclasses.dataclass
class InversionConfig:
    """Inversion settings. None means "chosen from the model size" (see `resolved`)."""

    stages: tuple[str, ...] = ("w", "w+", "pti")
    seed: int = 0  # noise initialisation, w noise and locality samples: same inputs, same result
    # W projection (NVIDIA projector defaults)
    w_steps: int | None = None  # None: 1000 for >= 256 px, 500 for >= 64 px, else 300
    w_lr: float = 0.1
    w_noise_factor: float = 0.05  # w noise = w_std * factor * max(0, 1 - t / w_noise_ramp) ** 2
    w_noise_ramp: float = 0.75
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_avg_samples: int = 10000
    optimize_noise: bool = True
    noise_init: str = "model"  # 'model': start from G's constant noise; 'random': fresh randn (the projector)
    noise_reg_weight: float = 1e5
    keep_noise: bool = False  # False: discard the optimised noise (NVIDIA projector, PTI); True: keep it in the result
    # W+ projection
    wplus_steps: int | None = None  # None: 300 for >= 256 px, 200 for >= 64 px, else 150
    wplus_lr: float = 0.01
    wplus_noise_factor: float = 0.0
    wplus_pivot_weight: float = 0.0  # L2 pull of every W+ row towards the W result
    # loss (projection and PTI)
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    ssim_weight: float = 1.0  # times (1 - multi-scale SSIM)
    ssim_scales: int = 3
    feature_weight: float = 1.0  # weight of the optional FeatureLoss
    # PTI
    pti_steps: int | None = None  # None: 350 for >= 256 px, 250 for >= 64 px, else 200
    pti_lr: float = 3e-4
    pti_l1_weight: float = 0.0  # PTI's own loss weights (PTI uses MSE + a perceptual term)
    pti_l2_weight: float = 1.0
    pti_ssim_weight: float = 0.2
    pti_stop_psnr: float | None = 45.0  # stop tuning once the reconstruction reaches this PSNR (dB)
    locality_weight: float = 0.1  # 0 turns the locality regulariser off
    locality_alpha: float | None = None  # None: 30 * sqrt(w_dim / 512) (PTI's 30 at w_dim 512)
    locality_psi: float = 0.5
    locality_every: int = 1

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be distinct names from {STAGES}, got {self.stages}")
        if list(self.stages) != sorted(self.stages, key=STAGES.index):
            raise ValueError(f"stages run in the order {STAGES}, got {self.stages}")
        for name in ("w_steps", "wplus_steps", "pti_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1")
        if min(self.w_lr, self.wplus_lr, self.pti_lr) <= 0:
            raise ValueError("learning rates must be > 0")
        if self.noise_init not in ("model", "random"):
            raise ValueError("noise_init must be 'model' or 'random'")
        if self.locality_every < 1:
            raise ValueError("locality_every must be >= 1")

    def resolved(self, G: Generator) -> "InversionConfig":
        """A copy with every None replaced by its model-size default."""
        H = G.img_resolution
        big, mid = H >= 256, H >= 64

        def pick(v, a, b, c):
            return v if v is not None else (a if big else b if mid else c)
        return dataclasses.replace(
            self, w_steps=pick(self.w_steps, 1000, 500, 300), wplus_steps=pick(self.wplus_steps, 300, 200, 150),
            pti_steps=pick(self.pti_steps, 350, 250, 200),
            locality_alpha=self.locality_alpha if self.locality_alpha is not None else 30 * math.sqrt(G.w_dim / 512))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stages"] = list(self.stages)
        return d


def lr_schedule(t: float, peak: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The projector's learning rate at progress t in [0, 1]: linear ramp-up, cosine ramp-down."""
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown)) if rampdown > 0 else 1.0
    return peak * up * down


# ---------------------------------------------------------------------- feature losses

class FeatureLoss(Protocol):
    """An extra loss term on images in [-1, 1] ([1, 3, H, W]; invalid pixels already equal the target).

    `identity` names it for session keys (e.g. "torchscript:<sha256>"). A discriminator-feature
    loss fits here too: identity "D:<model fingerprint>", call = sum over D's blocks of mean
    squared feature differences.
    """

    identity: str

    def __call__(self, render: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


class FeatureNetHashError(ValueError):
    """The TorchScript file's sha256 is not the configured one; it was not loaded."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TorchScriptFeatureLoss:
    """A perceptual loss from a local TorchScript network, verified by sha256 before loading.

    The module is called as module(x, **call_kwargs) with x = images scaled to `input_range`
    ((-1, 1) or (0, 255)), area-downsampled first when taller than `max_size`; it returns a tensor
    or a list / tuple of tensors, and the loss is the sum over them of the mean squared difference
    between render and target. (A local copy of NVIDIA's vgg16.pt fits with input_range=(0, 255),
    max_size=256, call_kwargs={"resize_images": False, "return_lpips": True}.) Nothing is
    downloaded, and the file is read once: the bytes that were hashed are the bytes that get loaded.
    """

    def __init__(self, path: str | os.PathLike, sha256: str, input_range: tuple[float, float] = (-1.0, 1.0),
                 device: str | torch.device = "cpu", max_size: int | None = None,
                 call_kwargs: dict | None = None):
        expected = str(sha256).strip().lower()
        if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
            raise FeatureNetHashError(f"sha256 must be 64 hex digits, got {sha256!r}")
        with open(path, "rb") as f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise FeatureNetHashError(f"{os.fspath(path)}: sha256 {actual} does not match the configured {expected}; "
                                      "refusing to load it")
        self.module = torch.jit.load(io.BytesIO(data), map_location=device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.sha256 = actual
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.max_size = max_size
        self.call_kwargs = dict(call_kwargs or {})
        self.identity = (f"torchscript:{actual}:{self.input_range}:{max_size}:"
                         f"{json.dumps(self.call_kwargs, sort_keys=True, default=str)}")

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_size is not None and x.shape[2] > self.max_size:
            x = F.interpolate(x, size=(self.max_size, max(1, round(x.shape[3] * self.max_size / x.shape[2]))),
                              mode="area")
        lo, hi = self.input_range
        return (x + 1) * ((hi - lo) / 2) + lo

    def __call__(self, render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = self.module(self._prepare(render), **self.call_kwargs)
        with torch.no_grad():
            b = self.module(self._prepare(target), **self.call_kwargs)
        if torch.is_tensor(a):
            a, b = [a], [b]
        return sum((x - y).square().mean() for x, y in zip(a, b))


# ---------------------------------------------------------------------- helpers

_W_STATS: "weakref.WeakKeyDictionary[Generator, dict]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def w_stats(G: Generator, num_samples: int = 10000, seed: int = 123, batch: int = 1000) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std scalar) over mapping(z) for z from RandomState(seed), as NVIDIA's projector.

    Cached per generator object."""
    cache = _W_STATS.setdefault(G, {})
    key = (num_samples, seed)
    if key not in cache:
        device = next(G.parameters()).device
        rng = np.random.RandomState(seed)
        ws = []
        for start in range(0, num_samples, batch):
            n = min(batch, num_samples - start)
            z = torch.from_numpy(rng.randn(n, G.z_dim)).to(device=device, dtype=torch.float32)
            ws.append(G.mapping(z)[:, 0].to(torch.float64))
        w = torch.cat(ws)
        w_avg = w.mean(dim=0)
        w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
        cache[key] = (w_avg.to(torch.float32), w_std)
    w_avg, w_std = cache[key]
    return w_avg.clone(), w_std


def noise_buffers(G: Generator) -> dict[str, torch.Tensor]:
    """The synthesis network's constant noise maps, by buffer name."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith("noise_const")}


def noise_regularizer(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over noise maps and their 2x average-pooled pyramid (down to 8 px) of the squared
    one-pixel autocorrelations along x and y."""
    reg = 0.0
    for n in noises:
        x = n[None, None]
        while True:
            reg = reg + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if min(x.shape[2:]) <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def shared_copy(G: Generator) -> Generator:
    """A copy of G that shares its parameters (no extra memory) and owns copies of its buffers."""
    memo = {id(p): p for p in G.parameters()}
    return copy.deepcopy(G, memo)


def module_bytes(module: torch.nn.Module, buffers: bool = True) -> int:
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    if buffers:
        n += sum(b.numel() * b.element_size() for b in module.buffers())
    return n


def model_fingerprint(G: Generator) -> str:
    """sha256 over the generator's config and every parameter and buffer (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps(G.cfg.to_dict(), sort_keys=True).encode())
    for name, t in list(G.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def session_key(pixels, model: Generator | str, config: InversionConfig | None = None, valid=None,
                feature_loss: FeatureLoss | None = None) -> str:
    """A hex key naming an inversion: sha256 of (pixels, model identity, settings).

    pixels: the region's pixels as sent (numpy array, bytes or PIL image); valid: the valid-pixel
    mask if one was derived separately; model: a Generator (fingerprinted) or an identity string
    the caller already has (e.g. the checkpoint's sha256). Settings are the config's fields and
    the feature loss's identity. Equal inputs give equal keys.
    """
    h = hashlib.sha256(b"draggan-inversion-v1\0")

    def add_array(a) -> None:
        if a is None:
            h.update(b"none\0")
            return
        if isinstance(a, (bytes, bytearray, memoryview)):
            h.update(b"bytes\0" + bytes(a))
            return
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        if hasattr(a, "mode") and hasattr(a, "size"):  # PIL image
            h.update(f"pil:{a.mode}:{a.size}\0".encode())
            a = np.asarray(a)
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}:{a.shape}\0".encode())
        h.update(a.tobytes())

    add_array(pixels)
    add_array(valid)
    ident = model if isinstance(model, str) else model_fingerprint(model)
    h.update(b"model\0" + ident.encode() + b"\0")
    cfg = (config or InversionConfig()).to_dict()
    h.update(json.dumps(cfg, sort_keys=True).encode() + b"\0")
    h.update(b"feature\0" + (feature_loss.identity if feature_loss is not None else "none").encode())
    return h.hexdigest()


def _target_tensor(target, size: tuple[int, int], device) -> torch.Tensor:
    if torch.is_tensor(target):
        t = target.detach().to(device=device, dtype=torch.float32)
        if t.ndim == 3:
            t = t[None]
    else:
        a = np.asarray(target)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"target must be uint8 RGB [H, W, 3] or a tensor [1, 3, H, W], got {a.dtype} {a.shape}")
        t = torch.from_numpy(np.ascontiguousarray(a[..., :3])).to(device=device, dtype=torch.float32)
        t = (t.permute(2, 0, 1)[None] - 127.5) / 127.5
    if t.shape[0] != 1 or t.shape[1] != 3 or tuple(t.shape[2:]) != tuple(size):
        raise ValueError(f"target must be [1, 3, {size[0]}, {size[1]}] (the model's size), got {tuple(t.shape)}")
    return t


def _valid_tensor(valid, size: tuple[int, int], device) -> torch.Tensor:
    if valid is None:
        return torch.ones(1, 1, *size, device=device)
    v = torch.as_tensor(np.asarray(valid) if not torch.is_tensor(valid) else valid).to(device)
    if v.dtype == torch.uint8:
        v = v.float() / 255
    v = v.to(torch.float32).clamp(0, 1).reshape(*v.shape[-2:])
    if tuple(v.shape) != tuple(size):
        raise ValueError(f"valid mask must be {size} (the model's size), got {tuple(v.shape)}")
    if float(v.sum()) < 1:
        raise ValueError("the valid mask has no valid pixels")
    return v[None, None]


# ---------------------------------------------------------------------- results

@dataclasses.dataclass
class InversionStep:
    """Progress after one step of a stage; `preview` is a [1, 3, H, W] render every preview_every steps."""

    stage: str  # 'w', 'w+' or 'pti'
    step: int  # 1-based within the stage
    steps: int  # the stage's step budget
    loss: float  # total loss of the rendered state
    psnr: float  # PSNR (dB) on valid pixels of the rendered state
    elapsed: float  # seconds since run() started
    lr: float
    done: bool = False  # True on the last step of the whole run
    reason: str | None = None  # 'finished', 'stopped' or 'reached' (PTI PSNR target) when done or a stage ends
    preview: torch.Tensor | None = None


@dataclasses.dataclass
class StageQuality:
    stage: str  # 'start' (w_avg with the original noise), 'w', 'w+' or 'pti'
    psnr: float  # dB, valid pixels
    ssim: float  # valid pixels' bounding box, invalid pixels neutralised
    steps: int = 0
    seconds: float = 0.0
    stopped: bool = False


@dataclasses.dataclass
class Inversion:
    """The best result so far. Drag it with `DragSession(inv.generator, inv.ws)`."""

    ws: torch.Tensor  # W+ [1, num_ws, w_dim]
    tuned: Generator | None  # the PTI-tuned copy (None without PTI)
    noise: dict[str, torch.Tensor] | None  # optimised noise buffers (None: G's own are used)
    base: Generator  # the original generator (never modified)
    quality: dict[str, StageQuality]
    stopped: bool = False
    _noise_copy: Generator | None = dataclasses.field(default=None, repr=False)

    @property
    def generator(self) -> Generator:
        """The generator that reproduces the image at `ws`: the tuned copy, else a parameter-sharing
        copy of `base` carrying the optimised noise, else `base`."""
        if self.tuned is not None:
            return self.tuned
        if self.noise is None:
            return self.base
        if self._noise_copy is None:
            G = shared_copy(self.base)
            with torch.no_grad():
                for name, buf in noise_buffers(G).items():
                    buf.copy_(self.noise[name])
            self._noise_copy = G
        return self._noise_copy

    @property
    def extra_bytes(self) -> int:
        """Memory the result holds beyond `base`: the tuned copy (parameters and buffers) or the noise maps."""
        if self.tuned is not None:
            return module_bytes(self.tuned)
        if self.noise is not None:
            return sum(t.numel() * t.element_size() for t in self.noise.values())
        return 0

    @property
    def tuned_parameter_bytes(self) -> int:
        return module_bytes(self.tuned, buffers=False) if self.tuned is not None else 0

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The reconstruction [1, 3, H, W] in [-1, 1]."""
        return self.generator.synthesis(self.ws, noise_mode="const")

    def save_tuned(self, path: str, metadata: dict[str, str] | None = None) -> None:
        """Write the tuned generator (or the noise copy) in the project's safetensors format; only when asked."""
        from .formats import native
        native.write(self.generator, path, metadata)


# ---------------------------------------------------------------------- the inverter

class Inverter:
    """Inverts one image into a generator. Typical use::

        inv = Inverter(G, target_rgb, valid)          # model-size uint8 RGB and [H, W] weights
        for step in inv.run(preview_every=20):        # W -> W+ -> PTI; break to stop, keeping the best
            ...
        res = inv.result()
        session = DragSession(res.generator, res.ws)

    `ws` starts the W+ or PTI stage from a given latent instead of the W projection.
    """

    def __init__(self, G: Generator, target, valid=None, config: InversionConfig | None = None,
                 feature_loss: FeatureLoss | None = None, ws: torch.Tensor | None = None):
        self.G = G
        self.device = next(G.parameters()).device
        self.size = tuple(G.img_size)
        self.config = (config or InversionConfig()).resolved(G)
        self.feature_loss = feature_loss
        self.target = _target_tensor(target, self.size, self.device)
        self.valid = _valid_tensor(valid, self.size, self.device)
        self.valid_sum = float(self.valid.sum())
        rows = torch.nonzero(self.valid[0, 0].sum(dim=1) > 0)[:, 0]
        cols = torch.nonzero(self.valid[0, 0].sum(dim=0) > 0)[:, 0]
        self.crop = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        self.rng = torch.Generator(device="cpu").manual_seed(self.config.seed)
        # Owns its noise buffers; parameters are shared with G, and gradients are only ever taken
        # with respect to the latent and the noise (torch.autograd.grad), so G is never touched.
        self.work = shared_copy(G)
        self.w_avg, self.w_std = w_stats(G, self.config.w_avg_samples)
        self.w_avg = self.w_avg.to(self.device)
        if ws is not None:
            ws = torch.as_tensor(ws, dtype=torch.float32, device=self.device)
            if ws.ndim == 2:
                ws = ws[:, None].repeat(1, G.num_ws, 1)
            if tuple(ws.shape) != (1, G.num_ws, G.w_dim):
                raise ValueError(f"ws must be [1, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
            self.ws = ws.detach().clone()
        else:
            self.ws = self.w_avg[None, None].repeat(1, G.num_ws, 1)
        self.pivot_w: torch.Tensor | None = None
        self.noise: dict[str, torch.Tensor] | None = None
        self.tuned: Generator | None = None
        self.quality: dict[str, StageQuality] = {}
        self.stopped = False
        self._t0 = time.perf_counter()
        with torch.no_grad():
            self.quality["start"] = self._measure(G, self.ws, "start")

    # ------------------------------------------------------------------ losses and measures

    def _fill(self, img: torch.Tensor) -> torch.Tensor:
        """The render with its invalid pixels replaced by the target's (weighted by validity)."""
        return img * self.valid + self.target * (1 - self.valid)

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.crop
        return img[:, :, y0:y1, x0:x1]

    def _mse(self, img: torch.Tensor) -> torch.Tensor:
        return ((img - self.target).square() * self.valid).sum() / (self.valid_sum * 3)

    def recon_loss(self, img: torch.Tensor, pti: bool = False) -> torch.Tensor:
        """The reconstruction loss on valid pixels (projection weights, or PTI's with pti=True)."""
        c = self.config
        l1_w, l2_w, ssim_w = (c.pti_l1_weight, c.pti_l2_weight, c.pti_ssim_weight) if pti else \
            (c.l1_weight, c.l2_weight, c.ssim_weight)
        loss = img.new_zeros(())
        if l2_w:
            loss = loss + l2_w * self._mse(img)
        if l1_w:
            loss = loss + l1_w * ((img - self.target).abs() * self.valid).sum() / (self.valid_sum * 3)
        if ssim_w or (self.feature_loss is not None and c.feature_weight):
            filled = self._crop(self._fill(img))
            tgt = self._crop(self.target)
            if ssim_w:
                loss = loss + ssim_w * (1 - losses.multiscale_ssim(filled, tgt, scales=c.ssim_scales)).mean()
            if self.feature_loss is not None and c.feature_weight:
                loss = loss + c.feature_weight * self.feature_loss(filled, tgt)
        return loss

    def psnr(self, img: torch.Tensor) -> float:
        mse = float(self._mse(img.detach()))
        return 10 * math.log10(4.0 / max(mse, 1e-12))

    def ssim(self, img: torch.Tensor) -> float:
        return float(losses.ssim(self._crop(self._fill(img.detach())), self._crop(self.target))[0])

    @torch.no_grad()
    def _measure(self, G: Generator, ws: torch.Tensor, stage: str, steps: int = 0, seconds: float = 0.0,
                 stopped: bool = False) -> StageQuality:
        img = G.synthesis(ws, noise_mode="const")
        return StageQuality(stage, self.psnr(img), self.ssim(img), steps, seconds, stopped)

    # ------------------------------------------------------------------ running

    def run(self, should_stop: Callable[[], bool] | None = None, preview_every: int = 0) -> Iterator[InversionStep]:
        """Run the configured stages, yielding a step after every optimiser step.

        Breaking out of the loop or should_stop() returning True ends the run between steps; the
        result keeps the best state of the stage that was running.
        """
        self._t0 = time.perf_counter()
        stages = list(self.config.stages)
        completed = False
        try:
            for k, stage in enumerate(stages):
                gen = self.tune(should_stop, preview_every) if stage == "pti" else \
                    self._project(stage, should_stop, preview_every)
                try:
                    for step in gen:
                        if step.reason is not None and (self.stopped or k == len(stages) - 1):
                            step.done = True
                        yield step
                finally:
                    gen.close()  # a caller that breaks out leaves the stage's best result behind
                if self.stopped:
                    return
            completed = True
        finally:
            if not completed:
                self.stopped = True  # later stages did not run

    def _stage_noise(self) -> list[torch.Tensor]:
        return list(noise_buffers(self.work).values())

    def _project(self, stage: str, should_stop, preview_every: int) -> Iterator[InversionStep]:
        c = self.config
        G = self.work
        if stage == "w":
            steps, peak, noise_factor = c.w_steps, c.w_lr, c.w_noise_factor
            var = self.w_avg[None, None].clone()
        else:
            steps, peak, noise_factor = c.wplus_steps, c.wplus_lr, c.wplus_noise_factor
            var = self.ws.clone()
        var.requires_grad_(True)
        noises = self._stage_noise() if c.optimize_noise else []
        with torch.no_grad():
            if stage == "w" and noises and c.noise_init == "random":
                for n in noises:  # the projector starts from fresh unit Gaussian noise
                    n.copy_(torch.randn(n.shape, generator=self.rng).to(n.device))
        for n in noises:
            n.requires_grad_(True)
        opt = torch.optim.Adam([var] + noises, betas=(0.9, 0.999), lr=peak)
        pivot = self.pivot_w
        best_loss, best_ws, best_noise = float("inf"), None, None
        t_stage = time.perf_counter()
        stopped = finished = False
        step_i = 0
        try:
            for step_i in range(1, steps + 1):
                t = (step_i - 1) / steps
                lr = lr_schedule(t, peak, c.lr_rampup, c.lr_rampdown)
                for g in opt.param_groups:
                    g["lr"] = lr
                w_noise_scale = self.w_std * noise_factor * max(0.0, 1.0 - t / c.w_noise_ramp) ** 2
                w_in = var
                if w_noise_scale > 0:
                    w_in = var + torch.randn(var.shape, generator=self.rng).to(var.device) * w_noise_scale
                ws = w_in.repeat(1, G.num_ws, 1) if stage == "w" else w_in
                img = G.synthesis(ws, noise_mode="const")
                rec = self.recon_loss(img)
                loss = rec
                if noises and c.noise_reg_weight:
                    loss = loss + c.noise_reg_weight * noise_regularizer(noises)
                if stage == "w+" and c.wplus_pivot_weight and pivot is not None:
                    loss = loss + c.wplus_pivot_weight * (var - pivot).square().mean()
                rec_value = float(rec.detach())
                if rec_value < best_loss:
                    best_loss = rec_value
                    best_ws = ws.detach().clone()
                    best_noise = [n.detach().clone() for n in noises]
                grads = torch.autograd.grad(loss, [var] + noises)
                for p, gr in zip([var] + noises, grads):
                    p.grad = gr
                opt.step()
                with torch.no_grad():
                    for n in noises:
                        n -= n.mean()
                        n *= n.square().mean().rsqrt()
                psnr = self.psnr(img)
                reason = None
                if step_i == steps:
                    reason = "finished"
                elif should_stop is not None and should_stop():
                    reason, stopped = "stopped", True
                preview = img.detach() if preview_every and step_i % preview_every == 0 else None
                if reason is not None:
                    self._finish_projection(stage, var, noises, best_loss, best_ws, best_noise, step_i,
                                            t_stage, stopped)
                    finished = True
                    if preview_every:
                        preview = self.result().image()
                yield InversionStep(stage, step_i, steps, float(loss.detach()), psnr,
                                    time.perf_counter() - self._t0, lr,
                                    reason=reason, preview=preview)
                if reason is not None:
                    return
        finally:
            for n in noises:
                n.requires_grad_(False)
            if not finished and best_ws is not None:
                # Abandoned by the caller (loop broken, generator closed) mid-stage: keep the best so far.
                self._finish_projection(stage, var, noises, best_loss, best_ws, best_noise, step_i, t_stage, True)

    @torch.no_grad()
    def _finish_projection(self, stage, var, noises, best_loss, best_ws, best_noise, steps, t_stage, stopped):
        c = self.config
        G = self.work
        # The state after the last optimiser step was never rendered in the loop: consider it too.
        ws_final = var.detach().repeat(1, G.num_ws, 1) if stage == "w" else var.detach().clone()
        rec_final = float(self.recon_loss(G.synthesis(ws_final, noise_mode="const")))
        if best_ws is None or rec_final <= best_loss:
            best_ws, best_noise = ws_final, [n.detach().clone() for n in noises]
        for n, b in zip(noises, best_noise or []):
            n.copy_(b)
        self.ws = best_ws.clone()
        if stage == "w":
            self.pivot_w = best_ws[:, :1].clone()
        if c.optimize_noise and c.keep_noise:
            self.noise = {k: v.detach().clone() for k, v in noise_buffers(G).items()}
            eval_G = G
        else:
            self.noise = None
            eval_G = self.G
        self.quality[stage] = self._measure(eval_G, self.ws, stage, steps, time.perf_counter() - t_stage, stopped)
        self.stopped = self.stopped or stopped

    def tune(self, should_stop: Callable[[], bool] | None = None, preview_every: int = 0) -> Iterator[InversionStep]:
        """Pivotal tuning of a copy of the generator around the current latent (see the module docstring)."""
        c = self.config
        base = self.G if self.noise is None else self.work
        tuned = copy.deepcopy(base)  # full copy: parameters and buffers of its own
        for b in tuned.buffers():
            b.requires_grad_(False)
        tuned.train(False)
        tuned.requires_grad_(False)
        params = [p for p in tuned.synthesis.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=c.pti_lr, betas=(0.9, 0.999))
        ws = self.ws.detach()
        best_loss, best_state = float("inf"), None
        t_stage = time.perf_counter()
        stopped = finished = False
        step_i = 0
        alpha = c.locality_alpha
        try:
            for step_i in range(1, c.pti_steps + 1):
                img = tuned.synthesis(ws, noise_mode="const")
                rec = self.recon_loss(img, pti=True)
                loss = rec
                if c.locality_weight and step_i % c.locality_every == 0:
                    z = torch.randn(1, self.G.z_dim, generator=self.rng).to(self.device)
                    with torch.no_grad():
                        w_z = self.G.mapping(z, None, truncation_psi=c.locality_psi)
                        d = w_z - ws
                        w_r = ws + alpha * d / d.norm(dim=2, keepdim=True).clamp_min(1e-8)
                        frozen = self.G.synthesis(w_r, noise_mode="none")
                    loc = (tuned.synthesis(w_r, noise_mode="none") - frozen).square().mean()
                    loss = loss + c.locality_weight * loc
                rec_value = float(rec.detach())
                psnr = self.psnr(img)
                if rec_value < best_loss:
                    best_loss = rec_value
                    best_state = [p.detach().clone() for p in params]
                reason = None
                if c.pti_stop_psnr is not None and psnr >= c.pti_stop_psnr:
                    reason = "reached"
                else:
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if step_i == c.pti_steps:
                        reason = "finished"
                    elif should_stop is not None and should_stop():
                        reason, stopped = "stopped", True
                preview = img.detach() if preview_every and step_i % preview_every == 0 else None
                if reason is not None:
                    self._finish_tuning(tuned, params, best_loss, best_state, reason == "finished", step_i,
                                        t_stage, stopped)
                    finished = True
                    if preview_every:
                        preview = self.result().image()
                yield InversionStep("pti", step_i, c.pti_steps, float(loss.detach()), psnr,
                                    time.perf_counter() - self._t0,
                                    c.pti_lr, reason=reason, preview=preview)
                if reason is not None:
                    return
        finally:
            if not finished and best_state is not None:
                self._finish_tuning(tuned, params, best_loss, best_state, False, step_i, t_stage, True)

    @torch.no_grad()
    def _finish_tuning(self, tuned, params, best_loss, best_state, check_final, steps, t_stage, stopped):
        if check_final:
            final = float(self.recon_loss(tuned.synthesis(self.ws, noise_mode="const"), pti=True))
            if final <= best_loss:
                best_state = None
        if best_state is not None:
            for p, b in zip(params, best_state):
                p.copy_(b)
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        tuned.eval()
        self.tuned = tuned
        self.quality["pti"] = self._measure(tuned, self.ws, "pti", steps, time.perf_counter() - t_stage, stopped)
        self.stopped = self.stopped or stopped

    # ------------------------------------------------------------------ result

    def result(self) -> Inversion:
        """The best result so far (also after a stop)."""
        return Inversion(ws=self.ws.clone(), tuned=self.tuned, noise=dict(self.noise) if self.noise else None,
                         base=self.G, quality=dict(self.quality), stopped=self.stopped)


def invert(G: Generator, target, valid=None, config: InversionConfig | None = None,
           should_stop: Callable[[], bool] | None = None, feature_loss: FeatureLoss | None = None,
           on_step: Callable[[InversionStep], None] | None = None) -> Inversion:
    """Run W -> W+ -> PTI (as configured) to the end or until should_stop(); returns the best result."""
    inv = Inverter(G, target, valid, config, feature_loss)
    for step in inv.run(should_stop=should_stop):
        if on_step is not None:
            on_step(step)
    return inv.result()


def project(G: Generator, target, valid=None, config: InversionConfig | None = None,
            should_stop: Callable[[], bool] | None = None, feature_loss: FeatureLoss | None = None
            ) -> Iterator[InversionStep]:
    """Projection only (the W and W+ stages of `config`); the generator's return value is the Inversion."""
    cfg = dataclasses.replace(config or InversionConfig(), stages=tuple(s for s in (config or InversionConfig()).stages
                                                                         if s != "pti") or ("w",))
    inv = Inverter(G, target, valid, cfg, feature_loss)
    yield from inv.run(should_stop=should_stop)
    return inv.result()


def tune(G: Generator, ws: torch.Tensor, target, valid=None, config: InversionConfig | None = None,
         should_stop: Callable[[], bool] | None = None, feature_loss: FeatureLoss | None = None,
         noise: dict[str, torch.Tensor] | None = None) -> Iterator[InversionStep]:
    """PTI only, around a given W+ latent (with optional noise buffers); the return value is the Inversion."""
    cfg = dataclasses.replace(config or InversionConfig(), stages=("pti",))
    inv = Inverter(G, target, valid, cfg, feature_loss, ws=ws)
    if noise is not None:
        with torch.no_grad():
            for name, buf in noise_buffers(inv.work).items():
                buf.copy_(noise[name])
        inv.noise = {k: v.detach().clone() for k, v in noise.items()}
    yield from inv.run(should_stop=should_stop)
    return inv.result()


__all__ = ["InversionConfig", "Inverter", "Inversion", "InversionStep", "StageQuality", "FeatureLoss",
           "TorchScriptFeatureLoss", "FeatureNetHashError", "invert", "project", "tune", "session_key",
           "model_fingerprint", "w_stats", "noise_regularizer", "lr_schedule", "shared_copy", "sha256_file"]
