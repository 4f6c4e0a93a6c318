"""Legacy TensorFlow StyleGAN2 pickles (a tuple G, D, Gs of dnnlib Network objects): read and write.

The pickle holds each network's variables as numpy arrays under TensorFlow names. We convert the
Gs (EMA) variables to the official PyTorch names: kernels go from [kh, kw, I, O] to [O, I, kh, kw]
(up-sampling kernels are also flipped), dense weights are transposed, style biases gain +1.
"""
from __future__ import annotations

import re
from typing import Any, BinaryIO

import numpy as np
import torch

from ..stylegan2 import Generator
from . import safe_pickle
from .common import CheckpointError, build_generator, infer_config, log2_int
from .nvidia import _TFNetworkClass, dumps_official

# TF static kwarg -> our config key; None means "accepted, has no bearing on inference".
KNOWN_STATIC_KWARGS: dict[str, str | None] = {
    "latent_size": "z_dim", "dlatent_size": "w_dim", "label_size": "c_dim", "resolution": "img_resolution",
    "num_channels": "img_channels", "mapping_layers": "mapping_layers", "mapping_lrmul": "mapping_lr_multiplier",
    "fmap_base": None, "fmap_max": None, "fmap_min": None, "fmap_decay": None, "architecture": "architecture",
    "num_fp16_res": "num_fp16_res", "conv_clamp": "conv_clamp", "w_avg_beta": "w_avg_beta", "use_noise": "use_noise",
    "resample_kernel": None, "nonlinearity": None, "mapping_nonlinearity": None, "mapping_fmaps": None,
    "label_fmaps": None, "truncation_psi": None, "truncation_cutoff": None, "truncation_psi_val": None,
    "truncation_cutoff_val": None, "dlatent_avg_beta": "w_avg_beta", "style_mixing_prob": None, "structure": None,
    "is_template_graph": None, "components": None, "randomize_noise": None, "dtype": None,
}


def _variables(net: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of a network and its components, named component/path."""
    if not isinstance(net, safe_pickle.TFNetwork):
        raise CheckpointError("TensorFlow pickle: expected a Network object")
    version = net.get("version", 0)
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(f"TensorFlow network version {version!r} is not supported (need >= 4)")
    out = {prefix + str(name): np.asarray(value) for name, value in net.get("variables", [])}
    for comp_name, comp in (net.get("components") or {}).items():
        out.update(_variables(comp, prefix + str(comp_name) + "/"))
    return out


def _static_kwargs(net: safe_pickle.TFNetwork) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for key, value in (net.get("static_kwargs") or {}).items():
        if key not in KNOWN_STATIC_KWARGS:
            raise CheckpointError(f"TensorFlow pickle has an unknown generator setting {key!r}")
        ours = KNOWN_STATIC_KWARGS[key]
        if ours is not None and value is not None:
            hints[ours] = value
    if hints.get("architecture") not in (None, "skip", "resnet"):
        raise CheckpointError(f"TensorFlow architecture {hints['architecture']!r} is not supported")
    return hints


def _conv(w: np.ndarray, flip: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    return t.flip([2, 3]) if flip else t


def _layer(tf: dict[str, np.ndarray], src: str, dst: str, flip: bool = False, noise: str | None = None):
    out = {
        f"{dst}.weight": _conv(tf[f"{src}/weight"], flip),
        f"{dst}.bias": torch.from_numpy(tf[f"{src}/bias"]),
        f"{dst}.affine.weight": torch.from_numpy(tf[f"{src}/mod_weight"].T.copy()),
        f"{dst}.affine.bias": torch.from_numpy(tf[f"{src}/mod_bias"] + 1),
    }
    if f"{src}/noise_strength" in tf:
        out[f"{dst}.noise_strength"] = torch.as_tensor(tf[f"{src}/noise_strength"]).reshape([])
        out[f"{dst}.noise_const"] = torch.from_numpy(tf[noise][0, 0])
    return out


def convert_variables(tf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TensorFlow variable dict -> official PyTorch state dict (without the constant FIR buffers)."""
    if any("ToRGB_lod" in k for k in tf):
        raise CheckpointError("progressive-growing TensorFlow generators (ToRGB_lod*) are not supported")
    sd: dict[str, torch.Tensor] = {"mapping.w_avg": torch.from_numpy(tf["dlatent_avg"])}
    for name, value in tf.items():
        m = re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", name)
        if m:
            v = value.T.copy() if m.group(2) == "weight" else value
            sd[f"mapping.fc{m.group(1)}.{m.group(2)}"] = torch.from_numpy(v)
    sd["synthesis.b4.const"] = torch.from_numpy(tf["synthesis/4x4/Const/const"][0])
    resolutions = sorted({int(m.group(1)) for k in tf if (m := re.match(r"synthesis/(\d+)x\1/", k))})
    for r in resolutions:
        s, d, lg = f"synthesis/{r}x{r}", f"synthesis.b{r}", log2_int(r)
        if r == 4:
            sd.update(_layer(tf, f"{s}/Conv", f"{d}.conv1", noise="synthesis/noise0"))
        else:
            sd.update(_layer(tf, f"{s}/Conv0_up", f"{d}.conv0", flip=True, noise=f"synthesis/noise{2 * lg - 5}"))
            sd.update(_layer(tf, f"{s}/Conv1", f"{d}.conv1", noise=f"synthesis/noise{2 * lg - 4}"))
            if f"{s}/Skip/weight" in tf:
                sd[f"{d}.skip.weight"] = _conv(tf[f"{s}/Skip/weight"], flip=True)
        sd.update(_layer(tf, f"{s}/ToRGB", f"{d}.torgb"))
    return sd


def generator_from_data(data: Any) -> Generator:
    if not (isinstance(data, tuple) and len(data) == 3):
        raise CheckpointError("TensorFlow pickle must hold the tuple (G, D, Gs)")
    Gs = data[2]
    hints = _static_kwargs(Gs)
    hints.setdefault("w_avg_beta", 0.995)
    try:
        sd = convert_variables(_variables(Gs))
    except KeyError as e:
        raise CheckpointError(f"TensorFlow pickle is missing variable {e.args[0]}") from None
    return build_generator(infer_config(sd, **hints), sd)


def read(f: BinaryIO) -> Generator:
    return generator_from_data(safe_pickle.load(f))


# ---------------------------------------------------------------------------------------------
# Writing


def tf_variables(G: Generator) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of convert_variables: per-component TensorFlow variable dicts."""
    sd = {k: v.detach().cpu().numpy() for k, v in G.state_dict().items()}
    mapping = {}
    for i in range(G.cfg.mapping_layers):
        mapping[f"Dense{i}/weight"] = sd[f"mapping.fc{i}.weight"].T.copy()
        mapping[f"Dense{i}/bias"] = sd[f"mapping.fc{i}.bias"]
    synthesis = {"4x4/Const/const": sd["synthesis.b4.const"][None]}

    def layer(src: str, dst: str, flip: bool = False, noise: str | None = None) -> None:
        w = sd[f"{dst}.weight"]
        if flip:
            w = w[:, :, ::-1, ::-1]
        synthesis[f"{src}/weight"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        synthesis[f"{src}/bias"] = sd[f"{dst}.bias"]
        synthesis[f"{src}/mod_weight"] = sd[f"{dst}.affine.weight"].T.copy()
        synthesis[f"{src}/mod_bias"] = sd[f"{dst}.affine.bias"] - 1
        if noise is not None:
            synthesis[f"{src}/noise_strength"] = sd[f"{dst}.noise_strength"]
            synthesis[noise] = sd[f"{dst}.noise_const"][None, None]

    for r in G.synthesis.block_resolutions:
        s, d, lg = f"{r}x{r}", f"synthesis.b{r}", log2_int(r)
        if r == 4:
            layer(f"{s}/Conv", f"{d}.conv1", noise="noise0")
        else:
            layer(f"{s}/Conv0_up", f"{d}.conv0", flip=True, noise=f"noise{2 * lg - 5}")
            layer(f"{s}/Conv1", f"{d}.conv1", noise=f"noise{2 * lg - 4}")
            if f"{d}.skip.weight" in sd:
                synthesis[f"{s}/Skip/weight"] = np.ascontiguousarray(
                    sd[f"{d}.skip.weight"][:, :, ::-1, ::-1].transpose(2, 3, 1, 0))
        layer(f"{s}/ToRGB", f"{d}.torgb")
    return {"G": {"dlatent_avg": sd["mapping.w_avg"]}, "mapping": mapping, "synthesis": synthesis}


def _network(name: str, variables: dict[str, np.ndarray], static_kwargs: dict[str, Any],
             components: dict[str, Any] | None = None) -> _TFNetworkClass:
    return _TFNetworkClass({
        "version": 4, "name": name, "static_kwargs": static_kwargs, "components": components or {},
        "build_module_src": "# written by draggan-studio; never executed by it\n",
        "build_func_name": f"{name}_main", "variables": list(variables.items()),
    })


def write(G: Generator, path: str) -> None:
    """Write G as a TensorFlow-era pickle (G, D, Gs) with config-f style static kwargs."""
    cfg = G.cfg
    if cfg.init_res != (4, 4):
        raise ValueError("TensorFlow pickles hold square generators only")
    v = tf_variables(G)
    static = {"num_channels": cfg.img_channels, "resolution": cfg.img_resolution, "label_size": 0,
              "latent_size": cfg.z_dim, "dlatent_size": cfg.w_dim, "mapping_layers": cfg.mapping_layers,
              "fmap_base": cfg.channel_base // 2, "fmap_max": cfg.channel_max, "architecture": cfg.architecture}
    components = {"mapping": _network("G_mapping", v["mapping"], {}),
                  "synthesis": _network("G_synthesis", v["synthesis"], {})}
    Gs = _network("G", v["G"], static, components)
    D = _network("D", {}, {"num_channels": cfg.img_channels, "resolution": cfg.img_resolution})
    with open(path, "wb") as fh:
        fh.write(dumps_official((Gs, D, Gs), protocol=4))
