"""Low-level StyleGAN operations in plain PyTorch.

The official code ships CUDA extensions for these; we do not, so the generator runs on any device
PyTorch runs on (CPU, CUDA, MPS) with no build step. The arithmetic follows the published
StyleGAN2 definitions (FIR resampling, modulated convolution, fused bias + activation + clamp).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: list[float] | tuple[float, ...]) -> torch.Tensor:
    """Separable 2-D FIR filter from 1-D taps, normalised to sum 1 (the [1,3,3,1] blur)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with f, then decimate.

    `padding` is (left, right, top, bottom). `f` is a 2-D filter [fh, fw] or a 1-D filter [taps]
    applied separably; the gain is spread over the filter dimensions so the total gain is `gain`.
    The convolution is a true convolution (filter flipped), which matters only for asymmetric filters.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    f = f.to(device=x.device, dtype=x.dtype)
    f = f * (gain ** (f.ndim / 2))
    f = f.flip(list(range(f.ndim)))
    c = x.shape[1]
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with filter f, keeping the output exactly `up` times the input size."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + b over channels, then activation, gain and symmetric clamp (the fused StyleGAN epilogue)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        default_gain = LRELU_GAIN
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unsupported activation {act!r}")
    g = default_gain if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
    weight_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample modulated (and optionally demodulated) convolution.

    x [N, I, H, W], weight [O, I, k, k], styles [N, I]. With up=2 the result is 2H x 2W: a stride-2
    transposed convolution followed by the FIR blur. In fp16 the weight and styles are scaled down
    first so that the products cannot overflow; demodulation cancels the scale exactly.

    fused=True folds the styles into per-sample weights and runs one grouped convolution (the
    inference form). fused=False scales the activations instead and shares one weight across the
    batch, which is much faster for training batches on a CPU; the two agree to about 1e-5.
    weight_sq: weight.square().sum([2, 3]).t() [I, O], when the caller keeps it (frozen weights).
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        weight_sq = None  # of the weight as scaled here

    dcoefs = None
    if demodulate:  # sum over I, kh, kw of (weight * style)^2, without forming per-sample weights
        if weight_sq is None:
            weight_sq = weight.square().sum(dim=[2, 3]).t()
        dcoefs = (styles.square() @ weight_sq + 1e-8).rsqrt()  # [N, O]
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = _conv(x, weight.to(x.dtype), up, padding, resample_filter, groups=1)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = _conv(x.reshape(1, -1, *x.shape[2:]), w.to(x.dtype).reshape(-1, in_ch, kh, kw), up, padding,
              resample_filter, groups=n)
    x = x.reshape(n, out_ch, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _conv(x: torch.Tensor, w: torch.Tensor, up: int, padding: int, resample_filter: torch.Tensor | None,
          groups: int) -> torch.Tensor:
    """Plain (up=1) or up-sampling convolution; w is [groups * O, I, k, k]."""
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    # Transposed conv wants [in, out/groups, k, k]: swap the O/I axes within each group.
    go, i, kh, kw = w.shape
    w = w.reshape(groups, go // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, go // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=up, groups=groups)
    assert resample_filter is not None
    fw = resample_filter.shape[-1]
    p0 = padding + (fw + up - 1) // 2 - (kw - 1)
    p1 = padding + (fw - up) // 2 - (kw - up)
    return upfirdn2d(x, resample_filter, padding=(p0, p1, p0, p1), gain=up * up)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square, as StyleGAN does to z before mapping."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
