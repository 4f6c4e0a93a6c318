"""Give a trained demo generator more channels or a higher resolution without changing what it draws.

Training on a CPU is slow, so capacity is added to a trained model rather than trained from scratch.
The grown generator draws the same images: new input channels of every convolution get zero
weights (demodulation sums squared weights, so zeros leave it unchanged), ToRGB's copied weights
are rescaled for its 1/sqrt(in_channels) gain, and a new top block's ToRGB starts at zero, so the
skip architecture passes the upsampled image through. New weights then learn from their gradients.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..stylegan2 import Generator, GeneratorConfig


def grown_config(cfg: GeneratorConfig, resolution: int | None = None, channel_base: int | None = None,
                 channel_max: int | None = None) -> GeneratorConfig:
    """`cfg` with the given fields replaced (None keeps them); refuses anything that would shrink a block."""
    new = dataclasses.replace(cfg, img_resolution=resolution or cfg.img_resolution,
                              channel_base=channel_base or cfg.channel_base,
                              channel_max=channel_max or cfg.channel_max)
    if new.img_resolution < cfg.img_resolution:
        raise ValueError(f"cannot lower the resolution from {cfg.img_resolution} to {new.img_resolution}")
    old, grown = channels(cfg), channels(new)
    narrower = [r for r in old if grown[r] < old[r]]
    if narrower:
        raise ValueError(f"the new channel counts would narrow the {narrower} px blocks: {old} -> {grown}")
    return new


def channels(cfg: GeneratorConfig) -> dict[int, int]:
    """Channels per block resolution, as the synthesis network computes them."""
    r, out = cfg.init_res[0], {}
    while r <= cfg.img_resolution:
        out[r] = min(cfg.channel_base // r, cfg.channel_max)
        r *= 2
    return out


def grow(src: Generator, cfg: GeneratorConfig) -> Generator:
    """A new generator with config `cfg` (from grown_config) that draws what `src` draws."""
    if src.cfg.architecture != "skip":
        raise ValueError("only the skip architecture can be grown")
    G = Generator(cfg)
    old = src.state_dict()
    new = G.state_dict()
    with torch.no_grad():
        for name, value in new.items():
            if name not in old:
                if name.endswith("torgb.weight") or name.endswith("torgb.bias"):
                    value.zero_()  # a new block adds nothing to the image until it learns to
                continue
            _embed(name, value, old[name])
    G.load_state_dict(new)
    return G


def _embed(name: str, dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy `src` into the leading corner of `dst`; zero the weights that read new input channels."""
    if dst.shape == src.shape:
        dst.copy_(src)
        return
    dst[tuple(slice(0, n) for n in src.shape)] = src
    if dst.dim() == 4:  # convolution [out, in, k, k]: new inputs must not change existing outputs
        dst[:, src.shape[1]:] = 0
        if name.endswith("torgb.weight"):  # ToRGB scales its styles by 1/sqrt(in_channels)
            dst[:, : src.shape[1]] *= math.sqrt(dst.shape[1] / src.shape[1])
