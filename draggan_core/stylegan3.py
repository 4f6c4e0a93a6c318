"""A StyleGAN3 (alias-free) generator, configs T and R, written from the paper and the fact sheet.

Karras et al. 2021, "Alias-Free Generative Adversarial Networks". The synthesis network starts
from Fourier features (SynthesisInput) and runs num_layers + 1 layers L0 ... L{num_layers} (the
last one is ToRGB). Every layer: modulated convolution, then a filtered nonlinearity (bias,
upsample with a lowpass filter, leaky ReLU, clamp, lowpass filter and decimate). Layers are named
`L{i}_{size}_{channels}` as in NVIDIA's checkpoints; their sizes include a margin of
`margin_size` samples per side around the image (except the last two layers).

The public API equals draggan_core.stylegan2.Generator: z_dim, w_dim, c_dim, num_ws,
img_resolution, img_channels, img_size, cfg, mapping(z, c, truncation_psi, truncation_cutoff)
and synthesis(ws, noise_mode, return_features, stop_at_block). The features are the per-layer
outputs L0 ... L{num_layers} (the last before the output scale). `feature_geometry(k)` says how
layer k's map lies over the image (its margin), see draggan_core.features.

Filters are buffers, so a loaded checkpoint brings its own; the design below (Kaiser-windowed
sinc lowpass, and a windowed jinc for the radial filters of config R) is only used to build new
networks. Everything runs in fp32 with plain PyTorch operations; there is no noise input.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .features import FeatureGeometry
from .stylegan2 import FullyConnectedLayer, MappedGenerator

FLAVOURS = ("stylegan3-t", "stylegan3-r")


@dataclasses.dataclass
class StyleGAN3Config:
    """Everything needed to rebuild a StyleGAN3 generator (defaults: the stylegan3 repository's)."""

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    conv_kernel: int = 3  # 3: config T, 1: config R
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.c_dim != 0:
            raise ValueError("conditional generators (c_dim > 0) are not supported")
        if self.conv_kernel not in (1, 3):
            raise ValueError(f"conv_kernel must be 1 (config R) or 3 (config T), got {self.conv_kernel}")
        if self.num_layers < self.num_critical + 1 or self.num_critical < 1:
            raise ValueError("need num_layers > num_critical >= 1")
        if self.img_resolution < 8 or 2 ** int(math.log2(self.img_resolution)) != self.img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {self.img_resolution}")

    @property
    def flavour(self) -> str:
        return "stylegan3-r" if self.conv_kernel == 1 else "stylegan3-t"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleGAN3Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StyleGAN3 config keys: {sorted(unknown)}")
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Geometry of one synthesis layer (all sizes square)."""

    index: int
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: float
    out_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (left, right, top, bottom) of the upsampled signal

    @property
    def name(self) -> str:
        return f"L{self.index}_{self.out_size}_{self.out_channels}"

    @property
    def margin(self) -> int:
        """Samples outside the image on each side of this layer's output."""
        return (self.out_size - int(round(self.out_sampling_rate))) // 2


def layer_schedule(cfg: StyleGAN3Config) -> tuple[dict[str, float], list[LayerSpec]]:
    """The input layer's (channels, size, rate, bandwidth) and every layer's geometry.

    Cutoffs grow geometrically from first_cutoff to res/2, reached at layer num_layers -
    num_critical; stopbands from first_stopband to res/2 * last_stopband_rel. Sampling rates are
    the next power of two of twice the stopband (at most res); sizes add the margin on both
    sides except for the last two layers, which are exactly the image. Channels fall off as
    (channel_base / 2) / cutoff, capped at channel_max; ToRGB has img_channels.
    """
    res = cfg.img_resolution
    n = cfg.num_layers
    idx = np.arange(n + 1)
    exponents = np.minimum(idx / (n - cfg.num_critical), 1)
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    sizes, channels = sizes.astype(int), channels.astype(int)

    specs = []
    for i in idx:
        p = max(i - 1, 0)
        is_torgb = bool(i == n)
        critical = bool(i >= n - cfg.num_critical)
        kernel = 1 if is_torgb else cfg.conv_kernel
        tmp_rate = max(rates[p], rates[i]) * (1 if is_torgb else cfg.lrelu_upsampling)
        up = int(np.rint(tmp_rate / rates[p]))
        down = int(np.rint(tmp_rate / rates[i]))
        up_taps = cfg.filter_size * up if up > 1 and not is_torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not is_torgb else 1
        pad_total = (sizes[i] - 1) * down + 1 - (sizes[p] + kernel - 1) * up + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        specs.append(LayerSpec(
            index=int(i), in_channels=int(channels[p]), out_channels=int(channels[i]), in_size=int(sizes[p]),
            out_size=int(sizes[i]), in_sampling_rate=float(rates[p]), out_sampling_rate=float(rates[i]),
            in_cutoff=float(cutoffs[p]), out_cutoff=float(cutoffs[i]), in_half_width=float(half_widths[p]),
            out_half_width=float(half_widths[i]), is_torgb=is_torgb, is_critically_sampled=critical,
            use_fp16=bool(rates[i] * 2 ** cfg.num_fp16_res > res), conv_kernel=kernel, up_factor=up,
            down_factor=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=bool(cfg.use_radial_filters and not critical),
            padding=(int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi))))
    first = dict(channels=int(channels[0]), size=int(sizes[0]), sampling_rate=float(rates[0]),
                 bandwidth=float(cutoffs[0]))
    return first, specs


def choose_feature_layer(specs: list[LayerSpec], img_resolution: int) -> int:
    """The drag loop's feature layer, the analogue of DragGAN's 128-px StyleGAN2 block.

    Target: 128 samples across the image for models of >= 256 px, the full resolution for
    smaller ones (the same rule as for StyleGAN2 blocks). Among the layers before ToRGB take those
    whose sampling rate is closest to the target (in log2), and of them the last, i.e. the most
    processed map at that rate (DragGAN's b128 is likewise the last conv at 128 px). Official
    configs: L6 at 1024 px, L7 at 512 px, L9 at 256 px (all 148 samples: 128 + 2 x 10 margin).
    """
    target = 128 if img_resolution >= 256 else img_resolution
    candidates = [s for s in specs if not s.is_torgb]
    dist = [abs(math.log2(s.out_sampling_rate / target)) for s in candidates]
    best = min(dist)
    return max(s.index for s, d in zip(candidates, dist) if d == best)


# ----------------------------------------------------------------------------------- filter design


def _kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window shape for a transition band `width` (Kaiser's empirical attenuation formulas)."""
    atten = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def bessel_j1(z: np.ndarray) -> np.ndarray:
    """J1(z) from its integral form (1/pi) * int_0^pi cos(t - z sin t) dt; the trapezoid rule on this
    periodic integrand converges exponentially, so 512 nodes give double precision for |z| < 100."""
    t = np.linspace(0, np.pi, 513)
    vals = np.cos(t[None, :] - np.asarray(z, np.float64).reshape(-1, 1) * np.sin(t[None, :]))
    integral = (vals[:, 1:-1].sum(axis=1) + 0.5 * (vals[:, 0] + vals[:, -1])) * (np.pi / 512)
    return (integral / np.pi).reshape(np.shape(z))


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed ideal lowpass with `numtaps` taps at sampling rate fs, normalised to sum 1.

    Separable filters are a windowed sinc [numtaps]; radial ones a windowed jinc (the impulse
    response of a disc in the frequency plane) [numtaps, numtaps]. One tap means no filter (None).
    """
    if numtaps == 1:
        return None
    beta = _kaiser_beta(numtaps, width, fs)
    window = np.kaiser(numtaps, beta)
    if not radial:
        c = cutoff / (fs / 2)
        m = np.arange(numtaps) - (numtaps - 1) / 2
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(x[None, :], x[:, None])
    z = 2 * np.pi * cutoff * r
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(r > 0, 2 * bessel_j1(z) / np.where(z > 0, z, 1), 1.0) * cutoff
    h = h * np.outer(window, window)
    return torch.as_tensor(h / h.sum(), dtype=torch.float32)


# ----------------------------------------------------------------------------------- layers


class SynthesisInput(nn.Module):
    """Fourier features on a grid of `size` samples at `sampling_rate` samples per image width.

    affine(w) gives a rotation (r_c, r_s) and translation (t_x, t_y); together with the stored
    `transform` (identity unless a user sets it) they rotate the frequencies and shift the phases.
    Grid coordinates are in image widths with the image centre at 0 and the image spanning
    [-0.5, 0.5]; frequencies above the bandwidth fade out before the Nyquist limit.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = np.array([size, size])
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=0.0)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0, 0, 0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)  # [N, 4]: r_c, r_s, t_x, t_y
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device, dtype=t.dtype).unsqueeze(0).repeat(n, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        tra = torch.eye(3, device=w.device, dtype=t.dtype).unsqueeze(0).repeat(n, 1, 1)
        tra[:, 0, 2], tra[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rot @ tra @ self.transform.to(t.dtype).unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ transforms[:, :2, :2]  # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        h, w_ = int(self.size[1]), int(self.size[0])
        ys = (torch.arange(h, device=w.device, dtype=torch.float32) + 0.5 - h / 2) / self.sampling_rate
        xs = (torch.arange(w_, device=w.device, dtype=torch.float32) + 0.5 - w_ / 2) / self.sampling_rate
        # x[n, y, x, c] = sin(2 pi (fx * gx + fy * gy + phase)) * amplitude
        arg = (xs[None, None, :, None] * freqs[:, None, None, :, 0]
               + ys[None, :, None, None] * freqs[:, None, None, :, 1] + phases[:, None, None, :])
        x = torch.sin(arg * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2).contiguous()


class SynthesisLayer(nn.Module):
    """Modulated convolution and filtered leaky ReLU from in_size to out_size samples."""

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: float | None):
        super().__init__()
        self.spec = spec
        self.w_dim = w_dim
        self.is_torgb = spec.is_torgb
        self.conv_kernel = spec.conv_kernel
        self.conv_clamp = conv_clamp
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.up_factor, self.down_factor = spec.up_factor, spec.down_factor
        self.padding = list(spec.padding)
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, spec.conv_kernel,
                                                spec.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        tmp_rate = spec.in_sampling_rate * spec.up_factor  # = max(in, out rate) * lrelu_upsampling (1 for ToRGB)
        self.register_buffer("up_filter", design_lowpass_filter(spec.up_taps, spec.in_cutoff,
                                                                spec.in_half_width * 2, tmp_rate))
        self.register_buffer("down_filter", design_lowpass_filter(spec.down_taps, spec.out_cutoff,
                                                                  spec.out_half_width * 2, tmp_rate,
                                                                  radial=spec.down_radial))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        styles = self.affine(w)  # [N, I]
        weight = self.weight
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        else:  # keep magnitudes near 1 before modulating (done in every precision)
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        wmod = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
        if not self.is_torgb:
            wmod = wmod * (wmod.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        wmod = wmod * self.magnitude_ema.rsqrt()
        k = self.conv_kernel
        x = F.conv2d(x.reshape(1, -1, *x.shape[2:]), wmod.reshape(-1, self.in_channels, k, k),
                     padding=k - 1, groups=n)
        x = x.reshape(n, self.out_channels, *x.shape[2:])
        return filtered_lrelu(x, self.bias, self.up_filter, self.down_filter, self.up_factor, self.down_factor,
                              tuple(self.padding), linear=self.is_torgb, clamp=self.conv_clamp)


def filtered_lrelu(x: torch.Tensor, bias: torch.Tensor, up_filter: torch.Tensor | None,
                   down_filter: torch.Tensor | None, up: int, down: int, padding: tuple[int, int, int, int],
                   linear: bool = False, clamp: float | None = None) -> torch.Tensor:
    """Bias, upsample (filter, gain up^2), leaky ReLU * sqrt(2) (or linear), clamp, filter and decimate.

    Each resampling step equals ops.upfirdn2d (zero insertion, padding, true convolution,
    decimation) but runs as a strided (transposed) convolution, which skips the products with the
    inserted zeros and the samples that decimation drops.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = _upsample(x, up_filter, up, padding)
    if not linear:
        x = F.leaky_relu(x, ops.LRELU_SLOPE) * ops.LRELU_GAIN
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return _downsample(x, down_filter, down)


def _upsample(x: torch.Tensor, f: torch.Tensor | None, up: int, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """ops.upfirdn2d(x, f, up=up, padding=padding, gain=up**2) for a 1-D (separable) filter."""
    if f is None or f.ndim != 1 or up == 1:
        one = torch.ones([1], device=x.device, dtype=x.dtype)
        return ops.upfirdn2d(x, f if f is not None else one, up=up, padding=padding, gain=up ** 2)
    c, n = x.shape[1], f.shape[0]
    k = (f * up).to(x.dtype)  # the gain up^2 spread over the two passes
    px0, px1, py0, py1 = padding
    # Transposed convolution = zero insertion followed by a full true convolution; then shift and
    # crop (or zero-extend) the result to what padding (lo, hi) before a valid correlation gives.
    y = F.conv_transpose2d(x, k.reshape(1, 1, 1, n).repeat(c, 1, 1, 1), stride=(1, up), groups=c)
    y = _shift_crop(y, x.shape[3] * up + px0 + px1 - n + 1, n - 1 - px0, dim=3)
    y = F.conv_transpose2d(y, k.reshape(1, 1, n, 1).repeat(c, 1, 1, 1), stride=(up, 1), groups=c)
    return _shift_crop(y, x.shape[2] * up + py0 + py1 - n + 1, n - 1 - py0, dim=2)


def _shift_crop(y: torch.Tensor, length: int, start: int, dim: int) -> torch.Tensor:
    """y[start : start + length] along dim, with zeros where that range leaves y."""
    pad = [-start, start + length - y.shape[dim]]
    return F.pad(y, pad if dim == 3 else [0, 0] + pad)


def _downsample(x: torch.Tensor, f: torch.Tensor | None, down: int) -> torch.Tensor:
    """ops.upfirdn2d(x, f, down=down): true convolution with f (1-D separable or 2-D), keep every down-th."""
    if f is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    c = x.shape[1]
    k = f.to(x.dtype).flip(list(range(f.ndim)))  # a true convolution is a correlation with the flipped filter
    if f.ndim == 2:
        return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), stride=down, groups=c)
    n = f.shape[0]
    x = F.conv2d(x, k.reshape(1, 1, 1, n).repeat(c, 1, 1, 1), stride=(1, down), groups=c)
    return F.conv2d(x, k.reshape(1, 1, n, 1).repeat(c, 1, 1, 1), stride=(down, 1), groups=c)


class SynthesisNetwork(nn.Module):
    """The input layer and layers L0 ... L{num_layers} (the last is ToRGB)."""

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        self.num_layers, self.num_critical = cfg.num_layers, cfg.num_critical
        self.margin_size, self.output_scale = cfg.margin_size, cfg.output_scale
        self.num_fp16_res = cfg.num_fp16_res
        self.num_ws = cfg.num_layers + 2
        first, self.specs = layer_schedule(cfg)
        self.input = SynthesisInput(cfg.w_dim, first["channels"], first["size"], first["sampling_rate"],
                                    first["bandwidth"])
        self.layer_names = []
        for spec in self.specs:
            setattr(self, spec.name, SynthesisLayer(cfg.w_dim, spec, cfg.conv_clamp))
            self.layer_names.append(spec.name)

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = True,
                return_features: bool = False, stop_at_block: int | None = None, **_ignored):
        """Render images from ws [N, num_ws, w_dim]; there is no noise, so noise_mode is ignored.

        return_features=True also returns the per-layer outputs (L0 ... ToRGB, the last before the
        output scale). stop_at_block=k stops after layer k and returns (None, features[:k+1]).
        """
        if noise_mode not in ("none", "const", "random"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have {self.num_ws} rows, got {ws.shape[1]}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        features = []
        for k, (layer, w) in enumerate(zip(self.layers(), ws[1:])):
            x = layer(x, w)
            features.append(x)
            if stop_at_block is not None and k == stop_at_block:
                return None, features
        img = x * self.output_scale
        if return_features:
            return img, features
        return img


class Generator(MappedGenerator):
    """StyleGAN3 generator with the same public interface as the StyleGAN2 one."""

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__(cfg, SynthesisNetwork(cfg))

    flavour = property(lambda self: self.cfg.flavour)

    @property
    def img_size(self) -> tuple[int, int]:
        return self.img_resolution, self.img_resolution

    @property
    def num_feature_layers(self) -> int:
        return len(self.synthesis.specs)

    def feature_geometry(self, k: int) -> FeatureGeometry:
        """Layer k's margin: crop it and the map covers the image (sample rate = cropped size)."""
        m = self.synthesis.specs[k].margin
        return FeatureGeometry((m, m, m, m))

    def feature_rate(self, k: int) -> int:
        """Samples across the image in layer k's output (after cropping the margin)."""
        return int(round(self.synthesis.specs[k].out_sampling_rate))

    def default_feature_layer(self) -> int:
        """The drag loop's feature layer (see choose_feature_layer)."""
        return choose_feature_layer(self.synthesis.specs, self.img_resolution)
