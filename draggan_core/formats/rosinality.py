"""rosinality/stylegan2-pytorch checkpoints (.pt with g_ema): read and write.

The arithmetic is the same as NVIDIA's; only names and a few shapes differ, so values copy one to
one. Loading goes through torch's weights-only unpickler, which refuses code.
"""
from __future__ import annotations

import argparse
import re
from typing import Any

import torch

from ..stylegan2 import Generator, compute_w_avg
from .common import CheckpointError, build_generator, infer_config, log2_int


def to_official(g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality g_ema state dict -> official names (resample filters excluded; they are constants)."""
    sd: dict[str, torch.Tensor] = {}
    for k, v in g.items():
        m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", k)
        if m:
            sd[f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}"] = v
    sd["synthesis.b4.const"] = g["input.input"][0]

    def conv(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = g[f"{src}.conv.weight"][0]
        sd[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        sd[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        sd[f"{dst}.noise_strength"] = g[f"{src}.noise.weight"].reshape([])
        sd[f"{dst}.bias"] = g[f"{src}.activate.bias"]

    def torgb(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = g[f"{src}.conv.weight"][0]
        sd[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        sd[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        sd[f"{dst}.bias"] = g[f"{src}.bias"].reshape(-1)

    conv("conv1", "synthesis.b4.conv1")
    torgb("to_rgb1", "synthesis.b4.torgb")
    sd["synthesis.b4.conv1.noise_const"] = g["noises.noise_0"][0, 0]
    k = 0
    while f"convs.{2 * k}.conv.weight" in g:
        r = 2 ** (k + 3)
        conv(f"convs.{2 * k}", f"synthesis.b{r}.conv0")
        conv(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1")
        torgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
        sd[f"synthesis.b{r}.conv0.noise_const"] = g[f"noises.noise_{2 * k + 1}"][0, 0]
        sd[f"synthesis.b{r}.conv1.noise_const"] = g[f"noises.noise_{2 * k + 2}"][0, 0]
        k += 1
    return sd


def from_official(G: Generator) -> dict[str, torch.Tensor]:
    """Our generator -> a rosinality g_ema state dict (including its constant blur kernels)."""
    sd = G.state_dict()
    g: dict[str, torch.Tensor] = {}
    for i in range(G.cfg.mapping_layers):
        g[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"].clone()
        g[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"].clone()
    g["input.input"] = sd["synthesis.b4.const"][None].clone()
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = torch.outer(blur, blur) / 64

    def conv(src: str, dst: str, up: bool) -> None:
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None].clone()
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        if up:
            g[f"{dst}.conv.blur.kernel"] = blur * 4
        g[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1).clone()
        g[f"{dst}.activate.bias"] = sd[f"{src}.bias"].clone()

    def torgb(src: str, dst: str, up: bool) -> None:
        if up:
            g[f"{dst}.upsample.kernel"] = blur * 4
        g[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None].clone()
        g[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        g[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        g[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1).clone()

    conv("synthesis.b4.conv1", "conv1", up=False)
    torgb("synthesis.b4.torgb", "to_rgb1", up=False)
    g["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None].clone()
    for k, r in enumerate(G.synthesis.block_resolutions[1:]):
        conv(f"synthesis.b{r}.conv0", f"convs.{2 * k}", up=True)
        conv(f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}", up=False)
        torgb(f"synthesis.b{r}.torgb", f"to_rgbs.{k}", up=True)
        g[f"noises.noise_{2 * k + 1}"] = sd[f"synthesis.b{r}.conv0.noise_const"][None, None].clone()
        g[f"noises.noise_{2 * k + 2}"] = sd[f"synthesis.b{r}.conv1.noise_const"][None, None].clone()
    return g


def is_rosinality(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("g_ema"), dict) and "input.input" in data["g_ema"]


def generator_from_data(data: dict[str, Any]) -> Generator:
    g = data["g_ema"]
    try:
        sd = to_official(g)
    except KeyError as e:
        raise CheckpointError(f"rosinality checkpoint is missing {e.args[0]}") from None
    res = 4 * 2 ** len([k for k in g if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    log2_int(res)
    has_avg = torch.is_tensor(data.get("latent_avg"))
    sd["mapping.w_avg"] = data["latent_avg"].reshape(-1) if has_avg else torch.zeros(sd["mapping.fc0.weight"].shape[0])
    cfg = infer_config(sd, w_avg_beta=0.995, num_fp16_res=0, conv_clamp=None)
    G = build_generator(cfg, sd)
    if not has_avg:
        G.mapping.w_avg.copy_(compute_w_avg(G))
    return G


def load_file(path: str) -> Any:
    """torch.load with weights_only (no code), allowing the argparse.Namespace that training saves."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def write(G: Generator, path: str, with_latent_avg: bool = True) -> None:
    """Write G as a rosinality checkpoint like convert_weight.py produces: {g_ema, latent_avg, args}."""
    data: dict[str, Any] = {"g_ema": from_official(G),
                            "args": argparse.Namespace(size=G.img_resolution, latent=G.w_dim,
                                                       n_mlp=G.cfg.mapping_layers)}
    if with_latent_avg:
        data["latent_avg"] = G.mapping.w_avg.detach().clone()
    torch.save(data, path)
