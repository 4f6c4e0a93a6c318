"""What every checkpoint reader shares: the error type and turning official-layout weights into a Generator."""
from __future__ import annotations

import math
import re
from typing import Mapping

import torch

from .. import stylegan3
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
    return _fill(G, sd, "StyleGAN2")


def _fill(G, sd: Mapping[str, torch.Tensor], kind: str):
    """Load sd into G after checking that names and shapes match exactly."""
    own = G.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint layout does not match a {kind} generator: "
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


# ----------------------------------------------------------------------------------- StyleGAN3

SG3_LAYER = re.compile(r"synthesis\.L(\d+)_(\d+)_(\d+)\.weight")


def is_stylegan3_state(sd: Mapping[str, torch.Tensor]) -> bool:
    """StyleGAN3 is recognised by its Fourier-feature input layer (never by a file name)."""
    return "synthesis.input.freqs" in sd


def stylegan3_layers(sd: Mapping[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """(index, size, channels) of every synthesis layer, from the tensor names."""
    layers = sorted((int(m.group(1)), int(m.group(2)), int(m.group(3)))
                    for m in (SG3_LAYER.fullmatch(k) for k in sd) if m)
    if not layers or [i for i, _, _ in layers] != list(range(len(layers))):
        raise CheckpointError("StyleGAN3 synthesis layers L0, L1, ... not found or not consecutive")
    return layers


def infer_stylegan3_config(sd: Mapping[str, torch.Tensor], **known) -> "stylegan3.StyleGAN3Config":
    """A StyleGAN3Config from tensor names and shapes, completed by what the file states (`known`).

    The tensors decide the flavour (3x3 kernels: T; 1x1 kernels: R, radial when a down filter is
    2-D), the number of layers, resolution and dims; `known` (resolved attributes or init kwargs)
    supplies the schedule settings shapes cannot reveal. The layer names must then come out
    exactly as stored, which pins down the geometry (sizes, channels) of every layer.
    """
    layers = stylegan3_layers(sd)
    n_layers = len(layers) - 1
    first = sd[f"synthesis.L0_{layers[0][1]}_{layers[0][2]}.weight"]
    last = sd[f"synthesis.L{n_layers}_{layers[-1][1]}_{layers[-1][2]}.weight"]
    from_tensors = dict(
        z_dim=int(sd["mapping.fc0.weight"].shape[1]),
        w_dim=int(sd["synthesis.input.affine.weight"].shape[1]),
        img_resolution=layers[-1][1],
        img_channels=int(last.shape[0]),
        mapping_layers=len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)]),
        num_layers=n_layers,
        conv_kernel=int(first.shape[-1]),
        use_radial_filters=any(k.endswith(".down_filter") and v.ndim == 2 for k, v in sd.items()),
    )
    if known.get("c_dim"):
        raise CheckpointError(f"conditional generators (c_dim={known['c_dim']}) are not supported")
    fields = {f for f in stylegan3.StyleGAN3Config.__dataclass_fields__}
    cfg = {k: v for k, v in known.items() if k in fields and k != "c_dim"}
    cfg.update(from_tensors)
    names = [f"L{i}_{size}_{ch}" for i, size, ch in layers]
    channels = [ch for _, _, ch in layers]

    def schedule_names(c: dict) -> list[str] | None:
        try:
            return [s.name for s in stylegan3.layer_schedule(stylegan3.StyleGAN3Config(**c))[1]]
        except (ValueError, ZeroDivisionError):
            return None

    if schedule_names(cfg) != names:
        # channel_base / channel_max not stated (or stated wrongly): fit them to the channel counts.
        cmax = max(channels[:-1])
        probe = stylegan3.layer_schedule(stylegan3.StyleGAN3Config(**{**cfg, "channel_max": cmax}))[1]
        uncapped = [s for s, ch in zip(probe[:-1], channels[:-1]) if ch < cmax] or probe[:-1]
        est = 2 * channels[uncapped[-1].index] * uncapped[-1].out_cutoff
        for base in (2 ** round(math.log2(est)), int(round(est))):
            if schedule_names({**cfg, "channel_base": base, "channel_max": cmax}) == names:
                cfg.update(channel_base=base, channel_max=cmax)
                break
        else:
            raise CheckpointError(
                f"StyleGAN3 layers {names} do not follow the StyleGAN3 layer schedule "
                f"(expected {schedule_names(cfg)})")
    try:
        return stylegan3.StyleGAN3Config(**cfg)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def build_stylegan3(cfg: "stylegan3.StyleGAN3Config", sd: Mapping[str, torch.Tensor]) -> "stylegan3.Generator":
    """Instantiate a StyleGAN3 generator and load sd (filters included) into it."""
    return _fill(stylegan3.Generator(cfg), sd, cfg.flavour)
