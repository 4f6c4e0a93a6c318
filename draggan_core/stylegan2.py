"""A StyleGAN2 generator (mapping + synthesis) written from the paper and the documented layout.

Parameter and buffer names, shapes and registration order equal those of NVIDIA's PyTorch
`G_ema`, so a state dict moves between the two unchanged. Architectures: 'skip' (every released
StyleGAN2 generator) and 'resnet'. Non-square generators (StyleGAN-Human, 2:1) come from a
rectangular first layer: `init_res=(4, 2)` gives images twice as tall as wide. A truncated render
can compute only a window of its last block (Window, SynthesisNetwork.window_plan): the drag loop
reads features around its handles only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Hashable, TypeVar

import numpy as np
import torch
from torch import nn

from . import ops


@dataclasses.dataclass(frozen=True)
class Window:
    """Rows [top, bottom) and columns [left, right) of one block's output, in that block's samples."""

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def whole(cls, size: tuple[int, int]) -> "Window":
        return cls(0, size[0], 0, size[1])

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)

    def within(self, outer: "Window") -> tuple[slice, slice]:
        """Index of this window in a map that covers `outer` (rows, columns)."""
        return (slice(self.top - outer.top, self.bottom - outer.top),
                slice(self.left - outer.left, self.right - outer.left))


@dataclasses.dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored as JSON in our own checkpoint format."""

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 256  # image height
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "skip"
    use_noise: bool = True
    init_res: tuple[int, int] = (4, 4)  # (height, width) of the constant input

    def __post_init__(self) -> None:
        self.init_res = tuple(int(v) for v in self.init_res)  # type: ignore[assignment]
        if self.architecture not in ("skip", "resnet"):
            raise ValueError(f"unsupported StyleGAN2 architecture {self.architecture!r} (supported: skip, resnet)")
        if self.c_dim != 0:
            raise ValueError("conditional generators (c_dim > 0) are not supported")
        log2 = math.log2(self.img_resolution / self.init_res[0])
        if self.img_resolution < 8 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power-of-two multiple of {self.init_res[0]}, got {self.img_resolution}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["init_res"] = list(self.init_res)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


T = TypeVar("T")


def derived(module: nn.Module, key: Hashable, make: Callable[[], T]) -> T:
    """make()'s result, kept per key while the module's own parameters and buffers stay as they are.

    A layer derives tensors from its weights on every call: weights scaled and cast to the
    activation type, the demodulation's squared-weight sums, the scaled constant noise. With the
    weights frozen (a drag, a W or W+ projection) these are constants, and once a drag step computes
    only a window of the features (Window), deriving them is a large share of the step (issue 19).
    Nothing is kept while a parameter needs gradients (training, pivotal tuning: autograd must see
    the ops); an in-place change (an optimiser step, load_state_dict) or a move (.to()) changes the
    stamp, and the tensors are derived again.
    """
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    if torch.is_grad_enabled() and any(p.requires_grad for p in own):
        return make()
    stamp = tuple((p.data_ptr(), p._version) for p in own)
    cache = module.__dict__.setdefault("_derived", {})
    hit = cache.get(key)
    if hit is None or hit[0] != stamp:
        hit = cache[key] = (stamp, make())
    return hit[1]


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: weights stored unscaled, scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = derived(self, x.dtype, lambda: self._scaled(x.dtype))
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def _scaled(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.weight.to(dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(dtype) * self.bias_gain if self.bias_gain != 1 else b.to(dtype)
        return w, b


class MappingNetwork(nn.Module):
    """z -> w through normalisation and an MLP; broadcast to num_ws rows, with truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        x = ops.normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling), noise, bias, lrelu, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: tuple[int, int],
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True, conv_clamp: float | None = None,
                 gain: float = 1.0):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.padding = kernel_size // 2
        self.act_gain = ops.LRELU_GAIN * gain
        self.act_clamp = conv_clamp * gain if conv_clamp is not None else None
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("resample_filter", ops.setup_filter((1, 3, 3, 1)))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(list(resolution)))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const",
                fused_modconv: bool = True, window: Window | None = None) -> torch.Tensor:
        """window: the part of the output x computes (x is the input under it); None: all of it."""
        styles = self.affine(w)
        noise = None
        if noise_mode not in ("none", "const", "random"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        window = window or Window.whole(self.resolution)
        weight, weight_sq, noise, bias = derived(self, x.dtype, lambda: self._constants(x.dtype))
        if self.use_noise and noise_mode == "random":
            size = (window.bottom - window.top, window.right - window.left)
            noise = torch.randn([x.shape[0], 1, *size], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = noise[window.within(Window.whole(self.resolution))]
        else:
            noise = None
        x = ops.modulated_conv2d(x, weight, styles, noise=noise, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, fused=fused_modconv, weight_sq=weight_sq)
        return ops.bias_act(x, bias, act="lrelu", gain=self.act_gain, clamp=self.act_clamp)

    def _constants(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The weight in the activation type, its squared sums for demodulation, the constant noise, the bias."""
        # fp16 keeps the fp32 weight: ops.modulated_conv2d rescales it before the cast (against overflow).
        weight = self.weight if dtype == torch.float16 else self.weight.to(dtype)
        noise = (self.noise_const * self.noise_strength).to(dtype) if self.use_noise else None
        return weight, self.weight.square().sum(dim=[2, 3]).t(), noise, self.bias.to(dtype)


class ToRGBLayer(nn.Module):
    """1x1 modulated convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution level: (upsampling conv,) conv, and the RGB output added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: tuple[int, int],
                 img_channels: int, architecture: str = "skip", use_fp16: bool = False,
                 conv_clamp: float | None = None, use_noise: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", ops.setup_filter((1, 3, 3, 1)))
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        layer_gain = math.sqrt(0.5) if architecture == "resnet" else 1.0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, *resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, use_noise=use_noise,
                                        conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, use_noise=use_noise,
                                    conv_clamp=conv_clamp, gain=layer_gain)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        if in_channels != 0 and architecture == "resnet":
            self.skip = SkipLayer(in_channels, out_channels)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = "const",
                force_fp32: bool = False, need_rgb: bool = True, fused_modconv: bool = True,
                dtype: torch.dtype | None = None, window: Window | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws holds this block's rows: [conv0,] conv1, torgb. Returns (features x, image).

        dtype: the activations' type; None chooses as NVIDIA's code does (fp16 for the top
        num_fp16_res blocks on CUDA unless force_fp32, else fp32). window: the part of the output
        to compute, from x cut to half of it (SynthesisNetwork.window_plan); features only.
        """
        if window is not None and need_rgb:
            raise ValueError("a block computes a window of its features only, not of the image")
        if dtype is None:
            dtype = torch.float16 if self.use_fp16 and not force_fp32 and ws.device.type == "cuda" else torch.float32
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x)
            x = self.conv0(x, next(w_iter), noise_mode, fused_modconv, window)
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, window)
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode, fused_modconv, window)
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, window)
        if not need_rgb:
            return x, None
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SkipLayer(nn.Module):
    """Residual path of the 'resnet' architecture: upsample then 1x1 conv, no bias."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.register_buffer("resample_filter", ops.setup_filter((1, 3, 3, 1)))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 1x1 conv commutes with the FIR upsampling, so do the cheap one first.
        x = ops.upsample2d(x, self.resample_filter)
        w = (self.weight * self.weight_gain).to(x.dtype)
        return torch.nn.functional.conv2d(x, w) * math.sqrt(0.5)


class SynthesisNetwork(nn.Module):
    """The stack of synthesis blocks b4, b8, ... (named by output height)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        h0, w0 = cfg.init_res
        n_blocks = int(math.log2(cfg.img_resolution // h0)) + 1
        self.block_resolutions = [h0 * 2 ** i for i in range(n_blocks)]
        channels = {r: min(cfg.channel_base // r, cfg.channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (int(math.log2(cfg.img_resolution)) + 1 - cfg.num_fp16_res), 8)
        self.num_ws = 0
        for r in self.block_resolutions:
            in_ch = channels[r // 2] if r > h0 else 0
            block = SynthesisBlock(in_ch, channels[r], cfg.w_dim, (r, r * w0 // h0), cfg.img_channels,
                                   architecture=cfg.architecture, use_fp16=r >= fp16_resolution,
                                   conv_clamp=cfg.conv_clamp, use_noise=cfg.use_noise)
            self.num_ws += block.num_conv
            setattr(self, f"b{r}", block)
        self.num_ws += 1  # the last block's torgb

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    WINDOW_MARGIN = 2  # input samples a block's output window needs beyond half its extent (see window_plan)

    def window_plan(self, block: int, need: Window) -> list[Window | None]:
        """What each block up to `block` computes when only `need` of block `block`'s output is read.

        A block's output over a window depends on its input over half that window grown by 2 samples
        each side: output rows [T, B) read input rows T // 2 - 2 to B // 2 + 1 (the up-sampling
        convolution's 3 taps and FIR filter's 4, then the 3x3 convolution; the resnet skip reaches
        less). The block then computes twice that input window, whose samples near
        an inner edge are wrong (zero padding where the map goes on) but lie outside what is read. Once
        a block would need all of its input, it and every block below compute whole maps (None).
        """
        blocks = self.blocks()
        plan: list[Window | None] = [None] * (block + 1)
        m = self.WINDOW_MARGIN
        for j in range(block, 0, -1):
            h, w = blocks[j - 1].resolution
            source = Window(max(0, need.top // 2 - m), min(h, -(-need.bottom // 2) + m),
                            max(0, need.left // 2 - m), min(w, -(-need.right // 2) + m))
            if source == Window.whole((h, w)):
                break
            plan[j] = Window(2 * source.top, 2 * source.bottom, 2 * source.left, 2 * source.right)
            need = source
        return plan

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False,
                return_features: bool = False, stop_at_block: int | None = None, fused_modconv: bool = True,
                grad_rows: int | None = None, dtype: torch.dtype | None = None, window: Window | None = None):
        """Render images from ws [N, num_ws, w_dim].

        With return_features=True also returns the list of block outputs x (before toRGB), one per
        block. stop_at_block=k stops after block k and returns (None, features[:k+1]): the drag loop
        needs only the features, so it skips the image and the higher blocks. fused_modconv=False
        is the faster form for training batches (see ops.modulated_conv2d).

        grad_rows=n: only ws rows [0, n) may need gradients. A block whose rows all lie past them
        gets them detached, so backward skips its modulated weights' gradients, which nobody reads
        (the drag loop optimises the first rows only; they cost as much as the input gradients).
        dtype: every block's activation type (see SynthesisBlock.forward; draggan_core.precision).
        window (with stop_at_block=k): only this window of block k's output is read, so the blocks
        compute what it depends on (window_plan) and features[k] is that window; the lower blocks'
        features are what they computed (their window_plan windows, whole maps where None).
        """
        if window is not None and stop_at_block is None:
            raise ValueError("a window needs stop_at_block: the image is always rendered whole")
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have {self.num_ws} rows, got {ws.shape[1]}")
        ws = ws.to(torch.float32)
        x = img = None
        features = []
        w_idx = 0
        blocks = self.blocks()
        plan = self.window_plan(stop_at_block, window) if window is not None else None
        for k, block in enumerate(blocks):
            computes = plan[k] if plan is not None and k < len(plan) else None
            if computes is not None:  # the input under the window, from what the block below computed
                below = plan[k - 1] or Window.whole(blocks[k - 1].resolution)
                source = Window(computes.top // 2, computes.bottom // 2, computes.left // 2, computes.right // 2)
                x = x[(..., *source.within(below))]
            block_ws = ws[:, w_idx: w_idx + block.num_conv + block.num_torgb]
            if grad_rows is not None and w_idx >= grad_rows:
                block_ws = block_ws.detach()
            w_idx += block.num_conv
            last_needed = stop_at_block is not None and k == stop_at_block
            x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32,
                           need_rgb=stop_at_block is None, fused_modconv=fused_modconv, dtype=dtype, window=computes)
            features.append(x)
            if last_needed and window is not None:
                features[-1] = x[(..., *window.within(computes or Window.whole(block.resolution)))]
            if last_needed:
                return None, features
        if return_features:
            return img, features
        return img


class MappedGenerator(nn.Module):
    """What StyleGAN2 and StyleGAN3 generators share: a mapping network in front of a synthesis network.

    Public attributes z_dim, w_dim, c_dim, num_ws, img_resolution, img_channels. The synthesis
    network is registered before the mapping, as in NVIDIA's modules, so state dicts list their
    entries in the official order.
    """

    def __init__(self, cfg: Any, synthesis: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        self.synthesis = synthesis
        self.num_ws = synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, self.num_ws, num_layers=cfg.mapping_layers,
                                      lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


class Generator(MappedGenerator):
    """StyleGAN2 generator (skip or resnet synthesis, square or rectangular)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__(cfg, SynthesisNetwork(cfg))

    @property
    def img_size(self) -> tuple[int, int]:
        """(height, width) of the images: square except for rectangular generators."""
        h0, w0 = self.cfg.init_res
        return self.img_resolution, self.img_resolution * w0 // h0


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    """The latent of a seed, drawn exactly as NVIDIA's tools do, so a seed shows the same picture there."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).to(torch.float32)


def compute_w_avg(G: Generator, num_samples: int = 10000, seed: int = 123, batch: int = 1000) -> torch.Tensor:
    """Mean w over random z: the truncation centre for generators trained without tracking it."""
    rng = np.random.RandomState(seed)
    total = torch.zeros(G.w_dim)
    with torch.no_grad():
        for start in range(0, num_samples, batch):
            n = min(batch, num_samples - start)
            z = torch.from_numpy(rng.randn(n, G.z_dim)).to(torch.float32).to(G.mapping.w_avg.device)
            total += G.mapping(z)[:, 0].sum(dim=0).cpu()
    return total / num_samples


def ws_from_seed(G: Generator, seed: int, truncation_psi: float = 0.7,
                 truncation_cutoff: int | None = None) -> torch.Tensor:
    """W+ latent [1, num_ws, w_dim] for a seed, with truncation, on G's device."""
    device = next(G.parameters()).device
    with torch.no_grad():
        return G.mapping(seed_to_z(seed, G.z_dim).to(device), None, truncation_psi=truncation_psi,
                         truncation_cutoff=truncation_cutoff)
