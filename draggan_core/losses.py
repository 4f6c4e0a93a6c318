"""Image similarity measures shared by training, inversion and benchmarks (no downloaded networks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity per image (Wang et al. 2004, Gaussian window), [N]. 1 = identical."""
    c = x.shape[1]
    size = min(window, x.shape[2], x.shape[3])
    win = _gaussian_window(size, sigma * size / window, c, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(t):
        return F.conv2d(t, win, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx ** 2
    syy = blur(y * y) - my ** 2
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)


def multiscale_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 3, data_range: float = 2.0) -> torch.Tensor:
    """Average SSIM over a 2x pyramid (as many scales as the image allows), [N]."""
    values = []
    for s in range(scales):
        values.append(ssim(x, y, data_range))
        if min(x.shape[2:]) < 22 or s == scales - 1:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.stack(values).mean(dim=0)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, [N]."""
    mse = (x - y).square().flatten(1).mean(dim=1).clamp_min(1e-12)
    return 10 * torch.log10(torch.full_like(mse, data_range ** 2) / mse)


def reconstruction_loss(x: torch.Tensor, y: torch.Tensor, ssim_weight: float = 0.5) -> torch.Tensor:
    """L1 plus (1 - multi-scale SSIM): sharp edges from SSIM, colour fidelity from L1."""
    l1 = (x - y).abs().mean()
    if ssim_weight == 0:
        return l1
    return l1 + ssim_weight * (1 - multiscale_ssim(x, y)).mean()


__all__ = ["ssim", "multiscale_ssim", "psnr", "reconstruction_loss"]
