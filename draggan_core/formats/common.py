"""What every checkpoint reader shares: the error type and turning official-layout weights into a Generator."""
from __future__ import annotations

import math
import re
from typing import Mapping

import torch

from ..stylegan2 import Generator, GeneratorConfig


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message says why, in words a user can act on."""


def block_channels(sd: Mapping[str, torch.Tensor]) -> dict[int, int]:
    """Output channels of each synthesis block b{r}, read from the conv1 weights."""
    channels = {}
    for name, t in sd.items():
        m = re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", name)
        if m:
            channels[int(m.group(1))] = int(t.shape[0])
    if not channels:
        raise CheckpointError("no StyleGAN2 synthesis blocks found (expected synthesis.b4.conv1.weight ...)")
    return dict(sorted(channels.items()))


def fit_channel_formula(channels: dict[int, int]) -> tuple[int, int]:
    """Find (channel_base, channel_max) with channels[r] == min(channel_base // r, channel_max) for every block."""
    channel_max = max(channels.values())
    below = [(r, c) for r, c in channels.items() if c < channel_max]
    res_max = max(channels)
    channel_base = below[-1][1] * below[-1][0] if below else channel_max * res_max
    if any(min(channel_base // r, channel_max) != c for r, c in channels.items()):
        raise CheckpointError(f"channel counts per block {channels} do not follow StyleGAN2's channel rule")
    return channel_base, channel_max


def infer_config(sd: Mapping[str, torch.Tensor], **known) -> GeneratorConfig:
    """Complete a GeneratorConfig from tensor shapes; `known` holds what the file states explicitly."""
    channels = block_channels(sd)
    channel_base, channel_max = fit_channel_formula(channels)
    const = sd.get("synthesis.b4.const")
    if const is None:
        raise CheckpointError("missing synthesis.b4.const: not a StyleGAN2 generator")
    mapping_layers = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    resolutions = sorted(channels)
    cfg = dict(
        z_dim=int(sd["mapping.fc0.weight"].shape[1]),
        w_dim=int(sd["mapping.w_avg"].shape[0]) if "mapping.w_avg" in sd else int(sd["mapping.fc0.weight"].shape[0]),
        img_resolution=resolutions[-1],
        img_channels=int(sd[f"synthesis.b{resolutions[-1]}.torgb.weight"].shape[0]),
        mapping_layers=mapping_layers,
        channel_base=channel_base,
        channel_max=channel_max,
        architecture="resnet" if any(k.endswith(".skip.weight") for k in sd) else "skip",
        use_noise="synthesis.b4.conv1.noise_const" in sd,
        init_res=(int(const.shape[1]), int(const.shape[2])),
    )
    cfg.update(known)
    if "c_dim" in cfg and cfg["c_dim"]:
        raise CheckpointError(f"conditional generators (c_dim={cfg['c_dim']}) are not supported")
    cfg.pop("c_dim", None)
    try:
        return GeneratorConfig(**cfg)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def num_fp16_res_from_flags(flags: Mapping[int, bool]) -> int:
    """The num_fp16_res setting that marks exactly these blocks fp16 (the highest resolutions)."""
    return sum(bool(v) for v in flags.values())


def build_generator(cfg: GeneratorConfig, sd: Mapping[str, torch.Tensor]) -> Generator:
    """Instantiate and fill a generator; the names and shapes must match exactly."""
    G = Generator(cfg)
    own = G.state_dict()
    # The [1,3,3,1] resample filters are constants; formats other than NVIDIA's do not store them.
    sd = {**{k: v for k, v in own.items() if k.endswith("resample_filter")}, **sd}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            "checkpoint layout does not match a StyleGAN2 generator: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"tensor {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
        if not torch.is_tensor(sd[k]) or not sd[k].is_floating_point():
            raise CheckpointError(f"tensor {k} is not a floating-point tensor")
    G.load_state_dict({k: sd[k].to(torch.float32) for k in own}, strict=True)
    return G.eval().requires_grad_(False)


def log2_int(r: int) -> int:
    v = int(math.log2(r))
    if 2 ** v != r:
        raise CheckpointError(f"resolution {r} is not a power of two")
    return v
