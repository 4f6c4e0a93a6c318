"""NVIDIA PyTorch network pickles (stylegan2-ada-pytorch and stylegan3 repositories): read and write.

A network is a tree of persistent objects, each holding an nn.Module's __dict__ (parameters,
buffers, child modules, resolved settings) and its init kwargs. Reading walks that tree into a
state dict in state_dict() order; writing builds the same tree from our Generator, so tests and
exports use files laid out exactly like the released ones.
"""
from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
from typing import Any, BinaryIO, Iterator

import numpy as np
import torch

from ..stylegan2 import (FullyConnectedLayer, Generator, MappingNetwork, SkipLayer, SynthesisBlock,
                         SynthesisLayer, SynthesisNetwork, ToRGBLayer)
from .. import stylegan3 as sg3
from . import safe_pickle
from .common import (CheckpointError, build_generator, build_stylegan3, infer_config, infer_stylegan3_config,
                     is_stylegan3_state, num_fp16_res_from_flags)
from .safe_pickle import EasyDict, PersistentObject

# ---------------------------------------------------------------------------------------------
# Reading


def state_dict_of(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a persistent module tree: own parameters, persistent buffers, then children."""
    state = obj.state
    out: dict[str, torch.Tensor] = {}
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p.detach() if torch.is_tensor(p) else p
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in skip:
            out[prefix + name] = b
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(f"module {prefix + name} is not a network layer ({type(child).__name__})")
        out.update(state_dict_of(child, prefix + name + "."))
    for name, t in out.items():
        if not torch.is_tensor(t):
            raise CheckpointError(f"entry {name} is not a tensor")
    return out


def pick_generator(data: Any) -> PersistentObject:
    """The EMA generator of a snapshot dict, or the object itself for generator-only pickles."""
    if isinstance(data, dict):
        for key in ("G_ema", "G"):
            if isinstance(data.get(key), PersistentObject):
                return data[key]
        raise CheckpointError(f"pickle holds no generator (keys: {sorted(map(str, data))})")
    if isinstance(data, PersistentObject):
        return data
    raise CheckpointError(f"pickle holds a {type(data).__name__}, not a network")


def _child(obj: PersistentObject, name: str) -> PersistentObject | None:
    child = (obj.state.get("_modules") or {}).get(name)
    return child if isinstance(child, PersistentObject) else None


def config_hints(G: PersistentObject) -> dict[str, Any]:
    """Settings that tensor shapes do not reveal, from resolved attributes first, init kwargs second."""
    st = G.state
    kwargs = st.get("_init_kwargs") or {}
    nested = "synthesis_kwargs" in kwargs
    syn_kwargs = kwargs.get("synthesis_kwargs", {}) if nested else kwargs
    map_kwargs = kwargs.get("mapping_kwargs", {}) or {}
    hints: dict[str, Any] = {}
    for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels"):
        if key in st:
            hints[key] = int(st[key])
    mapping = _child(G, "mapping")
    fc0 = _child(mapping, "fc0") if mapping else None
    if fc0 is not None and "bias_gain" in fc0.state:
        hints["mapping_lr_multiplier"] = float(fc0.state["bias_gain"])
    elif "lr_multiplier" in map_kwargs:
        hints["mapping_lr_multiplier"] = float(map_kwargs["lr_multiplier"])
    if mapping is not None and "w_avg_beta" in mapping.state:
        beta = mapping.state["w_avg_beta"]
        hints["w_avg_beta"] = None if beta is None else float(beta)

    synthesis = _child(G, "synthesis")
    blocks = [(name, b) for name, b in (synthesis.state.get("_modules") or {}).items()] if synthesis else []
    fp16 = {name: b.state["use_fp16"] for name, b in blocks if "use_fp16" in b.state}
    if fp16:
        hints["num_fp16_res"] = num_fp16_res_from_flags(fp16)
    else:
        hints["num_fp16_res"] = int(syn_kwargs.get("num_fp16_res", 0 if nested else 4))
    first_layer = _child(blocks[0][1], "conv1") if blocks else None
    if first_layer is not None and "conv_clamp" in first_layer.state:
        clamp = first_layer.state["conv_clamp"]
    else:
        clamp = syn_kwargs.get("conv_clamp", None if nested else 256)
    hints["conv_clamp"] = None if clamp is None else float(clamp)
    arch = blocks[-1][1].state.get("architecture", syn_kwargs.get("architecture", "skip")) if blocks else "skip"
    if arch == "orig":
        raise CheckpointError("the 'orig' StyleGAN2 architecture is not supported (only 'skip' and 'resnet')")
    return hints


def is_stylegan3(G: PersistentObject) -> bool:
    synthesis = _child(G, "synthesis")
    return synthesis is not None and "input" in (synthesis.state.get("_modules") or {})


_SG3_SYNTHESIS_KEYS = ("num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel",
                       "margin_size", "output_scale", "num_fp16_res", "conv_kernel", "filter_size",
                       "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta",
                       "channel_base", "channel_max")


def stylegan3_config_hints(G: PersistentObject) -> dict[str, Any]:
    """StyleGAN3 settings the file states: init kwargs (flat, as the stylegan3 repository writes
    them) overridden by resolved attributes of the generator, its synthesis network and mapping."""
    st = G.state
    kwargs = dict(st.get("_init_kwargs") or {})
    kwargs.update(kwargs.pop("synthesis_kwargs", None) or {})
    map_kwargs = kwargs.get("mapping_kwargs", {}) or {}
    hints: dict[str, Any] = {k: kwargs[k] for k in _SG3_SYNTHESIS_KEYS if k in kwargs}
    for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels"):
        if key in st:
            hints[key] = int(st[key])
    if "lr_multiplier" in map_kwargs:
        hints["mapping_lr_multiplier"] = float(map_kwargs["lr_multiplier"])
    if "w_avg_beta" in map_kwargs:
        hints["w_avg_beta"] = map_kwargs["w_avg_beta"]
    mapping = _child(G, "mapping")
    fc0 = _child(mapping, "fc0") if mapping else None
    if fc0 is not None and "bias_gain" in fc0.state:
        hints["mapping_lr_multiplier"] = float(fc0.state["bias_gain"])
    if mapping is not None and "w_avg_beta" in mapping.state:
        hints["w_avg_beta"] = mapping.state["w_avg_beta"]
    synthesis = _child(G, "synthesis")
    for key in ("num_layers", "num_critical", "margin_size", "output_scale", "num_fp16_res"):
        if synthesis is not None and key in synthesis.state:
            hints[key] = synthesis.state[key]
    layers = [c for n, c in (synthesis.state.get("_modules") or {}).items() if n != "input"] if synthesis else []
    if layers and "conv_clamp" in layers[0].state:
        hints["conv_clamp"] = layers[0].state["conv_clamp"]
    if layers and "magnitude_ema_beta" in layers[0].state:
        hints["magnitude_ema_beta"] = layers[0].state["magnitude_ema_beta"]
    for key in ("output_scale", "first_cutoff", "first_stopband", "last_stopband_rel", "magnitude_ema_beta",
                "mapping_lr_multiplier"):
        if key in hints:
            hints[key] = float(hints[key])
    if hints.get("w_avg_beta") is not None:
        hints["w_avg_beta"] = float(hints["w_avg_beta"])
    if hints.get("conv_clamp") is not None:
        hints["conv_clamp"] = float(hints["conv_clamp"])
    for key in ("num_layers", "num_critical", "margin_size", "num_fp16_res", "channel_base", "channel_max",
                "filter_size", "lrelu_upsampling", "conv_kernel"):
        if key in hints:
            hints[key] = int(hints[key])
    return hints


def _check_stylegan3_geometry(G: PersistentObject, model: "sg3.Generator") -> None:
    """Where the file records resolved layer geometry, it must equal the schedule we rebuilt."""
    synthesis = _child(G, "synthesis")
    for spec in model.synthesis.specs:
        layer = _child(synthesis, spec.name)
        if layer is None:
            continue
        st = layer.state
        for key, ours in (("in_size", spec.in_size), ("out_size", spec.out_size), ("up_factor", spec.up_factor),
                          ("down_factor", spec.down_factor), ("padding", list(spec.padding)),
                          ("conv_kernel", spec.conv_kernel)):
            if key not in st:
                continue
            theirs = np.asarray(st[key]).reshape(-1).tolist()
            expected = np.broadcast_to(np.asarray(ours), np.shape(theirs)).tolist() if np.ndim(ours) == 0 else ours
            if [int(v) for v in theirs] != [int(v) for v in np.asarray(expected).reshape(-1)]:
                raise CheckpointError(f"StyleGAN3 layer {spec.name}: stored {key} {theirs} differs from the "
                                      f"StyleGAN3 schedule ({ours})")


def stylegan3_from_generator(G: PersistentObject) -> "sg3.Generator":
    sd = state_dict_of(G)
    model = build_stylegan3(infer_stylegan3_config(sd, **stylegan3_config_hints(G)), sd)
    _check_stylegan3_geometry(G, model)
    return model


def generator_from_data(data: Any) -> Generator:
    """Build our Generator (StyleGAN2 or StyleGAN3) from an unpickled NVIDIA snapshot or generator-only pickle."""
    G = pick_generator(data)
    if G.class_name != "Generator":
        raise CheckpointError(f"expected a Generator, found a {G.class_name}")
    if is_stylegan3(G):
        if not is_stylegan3_state(state_dict_of(G)):
            raise CheckpointError("StyleGAN3-like generator (synthesis.input) without synthesis.input.freqs: "
                                  "not a StyleGAN3 checkpoint this program understands")
        return stylegan3_from_generator(G)
    hints = config_hints(G)
    sd = state_dict_of(G)
    return build_generator(infer_config(sd, **hints), sd)


def read(f: BinaryIO) -> Generator:
    return generator_from_data(safe_pickle.load(f))


# ---------------------------------------------------------------------------------------------
# Writing


class _Record:
    """A persistent-object record as NVIDIA's persistence module pickles it."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
    raise RuntimeError("placeholder; never called")


class _EasyDict(dict):
    def __reduce__(self):
        return (_EasyDictClass, (), None, None, iter(self.items()))


class _EasyDictClass(dict):
    pass


@contextlib.contextmanager
def official_names() -> Iterator[None]:
    """Register the writer's stand-ins under NVIDIA's module names while pickling, then remove them."""
    fakes = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
        "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
        "dnnlib.tflib.network": types.ModuleType("dnnlib.tflib.network"),
    }
    placements = [
        ("torch_utils.persistence", "_reconstruct_persistent_obj", _reconstruct_persistent_obj),
        ("dnnlib.util", "EasyDict", _EasyDictClass),
        ("dnnlib.tflib.network", "Network", _TFNetworkClass),
    ]
    saved = {name: sys.modules.get(name) for name in fakes}
    originals = [(obj, obj.__module__, obj.__qualname__) for _, _, obj in placements]
    try:
        sys.modules.update(fakes)
        for mod, name, obj in placements:
            setattr(fakes[mod], name, obj)
            obj.__module__, obj.__qualname__ = mod, name
        yield
    finally:
        for obj, mod, qual in originals:
            obj.__module__, obj.__qualname__ = mod, qual
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class _TFNetworkClass:
    """Pickles as dnnlib.tflib.network.Network: the class by name, then its state dict (see tf_legacy)."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def dumps_official(obj: Any, protocol: int = 4) -> bytes:
    with official_names():
        return pickle.dumps(obj, protocol=protocol)


DEFAULT_MODULE_SRC = (
    "# Network written by draggan-studio's checkpoint writer in NVIDIA's persistence layout.\n"
    "# draggan-studio rebuilds networks from the pickled state and never runs this text.\n"
)


def _module_state(module: torch.nn.Module, attrs: dict[str, Any], init_kwargs: dict[str, Any],
                  children: dict[str, Any]) -> dict[str, Any]:
    return {
        "training": False,
        "_parameters": collections.OrderedDict(
            (n, torch.nn.Parameter(p.detach().clone(), requires_grad=False)) for n, p in module._parameters.items()),
        "_buffers": collections.OrderedDict((n, None if b is None else b.detach().clone())
                                            for n, b in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(children),
        **attrs,
        "_init_args": (),
        "_init_kwargs": _EasyDict(init_kwargs),
    }


def _record(class_name: str, state: dict[str, Any], module_src: str) -> _Record:
    return _Record({"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
                    "state": state})


def _describe(m: torch.nn.Module, cfg, src: str) -> _Record:
    """Persistent record of one of our modules, with the per-class attributes the official code keeps."""
    children = {n: _describe(c, cfg, src) for n, c in m._modules.items()}
    if isinstance(m, FullyConnectedLayer):
        attrs = dict(activation=m.activation, weight_gain=m.weight_gain, bias_gain=m.bias_gain)
        return _record("FullyConnectedLayer", _module_state(m, attrs, {}, children), src)
    if isinstance(m, MappingNetwork):
        attrs = dict(z_dim=m.z_dim, c_dim=0, w_dim=m.w_dim, num_ws=m.num_ws, num_layers=m.num_layers,
                     w_avg_beta=m.w_avg_beta)
        return _record("MappingNetwork", _module_state(m, attrs, {}, children), src)
    if isinstance(m, SynthesisLayer):
        attrs = dict(resolution=m.resolution[0], up=m.up, use_noise=m.use_noise, activation="lrelu",
                     conv_clamp=cfg.conv_clamp, padding=m.padding, act_gain=np.float64(m.act_gain))
        return _record("SynthesisLayer", _module_state(m, attrs, {}, children), src)
    if isinstance(m, ToRGBLayer):
        attrs = dict(conv_clamp=cfg.conv_clamp, weight_gain=m.weight_gain)
        return _record("ToRGBLayer", _module_state(m, attrs, {}, children), src)
    if isinstance(m, SkipLayer):
        attrs = dict(activation="linear", up=2, down=1, conv_clamp=None, padding=0, weight_gain=m.weight_gain,
                     act_gain=np.float64(1.0))
        return _record("Conv2dLayer", _module_state(m, attrs, {}, children), src)
    if isinstance(m, SynthesisBlock):
        attrs = dict(in_channels=m.in_channels, resolution=m.resolution[0], architecture=m.architecture,
                     use_fp16=m.use_fp16, channels_last=False, num_conv=m.num_conv, num_torgb=m.num_torgb)
        return _record("SynthesisBlock", _module_state(m, attrs, {}, children), src)
    if isinstance(m, SynthesisNetwork):
        attrs = dict(w_dim=m.w_dim, img_resolution=m.img_resolution, img_channels=m.img_channels,
                     block_resolutions=list(m.block_resolutions), num_ws=m.num_ws)
        return _record("SynthesisNetwork", _module_state(m, attrs, {}, children), src)
    if isinstance(m, sg3.SynthesisInput):
        attrs = dict(w_dim=m.w_dim, channels=m.channels, size=np.array(m.size, dtype=np.int64),
                     sampling_rate=m.sampling_rate, bandwidth=m.bandwidth)
        return _record("SynthesisInput", _module_state(m, attrs, {}, children), src)
    if isinstance(m, sg3.SynthesisLayer):
        sp = m.spec
        attrs = dict(w_dim=m.w_dim, is_torgb=sp.is_torgb, is_critically_sampled=sp.is_critically_sampled,
                     use_fp16=sp.use_fp16, in_channels=sp.in_channels, out_channels=sp.out_channels,
                     in_size=np.array([sp.in_size, sp.in_size], dtype=np.int64),
                     out_size=np.array([sp.out_size, sp.out_size], dtype=np.int64),
                     in_sampling_rate=sp.in_sampling_rate, out_sampling_rate=sp.out_sampling_rate,
                     tmp_sampling_rate=sp.in_sampling_rate * sp.up_factor, in_cutoff=sp.in_cutoff,
                     out_cutoff=sp.out_cutoff, in_half_width=sp.in_half_width, out_half_width=sp.out_half_width,
                     conv_kernel=sp.conv_kernel, conv_padding=sp.conv_kernel - 1, conv_clamp=cfg.conv_clamp,
                     magnitude_ema_beta=cfg.magnitude_ema_beta, up_factor=sp.up_factor, up_taps=sp.up_taps,
                     up_radial=False, down_factor=sp.down_factor, down_taps=sp.down_taps,
                     down_radial=sp.down_radial, padding=list(sp.padding))
        return _record("SynthesisLayer", _module_state(m, attrs, {}, children), src)
    if isinstance(m, sg3.SynthesisNetwork):
        attrs = dict(w_dim=m.w_dim, num_ws=m.num_ws, img_resolution=m.img_resolution,
                     img_size=m.img_resolution, img_channels=m.img_channels, num_layers=m.num_layers,
                     num_critical=m.num_critical, margin_size=m.margin_size, output_scale=m.output_scale,
                     num_fp16_res=m.num_fp16_res, layer_names=list(m.layer_names))
        return _record("SynthesisNetwork", _module_state(m, attrs, {}, children), src)
    raise TypeError(f"cannot describe {type(m).__name__}")


def stylegan3_init_kwargs(cfg: "sg3.StyleGAN3Config") -> dict[str, Any]:
    """Flat init kwargs as the stylegan3 repository's training records them: the settings it passes
    (dims, mapping layers, channel_base/max, magnitude_ema_beta; conv_kernel and use_radial_filters
    for R) plus any other setting that differs from the code's default."""
    mapping = _EasyDict(num_layers=cfg.mapping_layers)
    if cfg.mapping_lr_multiplier != 0.01:
        mapping["lr_multiplier"] = cfg.mapping_lr_multiplier
    if cfg.w_avg_beta != 0.998:
        mapping["w_avg_beta"] = cfg.w_avg_beta
    kwargs: dict[str, Any] = dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping,
                                  channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                  magnitude_ema_beta=cfg.magnitude_ema_beta)
    if cfg.conv_kernel != 3 or cfg.use_radial_filters:
        kwargs.update(conv_kernel=cfg.conv_kernel, use_radial_filters=cfg.use_radial_filters)
    defaults = sg3.StyleGAN3Config()
    for key in ("num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel", "margin_size",
                "output_scale", "num_fp16_res", "filter_size", "lrelu_upsampling", "conv_clamp"):
        if getattr(cfg, key) != getattr(defaults, key):
            kwargs[key] = getattr(cfg, key)
    kwargs.update(c_dim=0, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    return kwargs


def generator_init_kwargs(cfg, layout: str) -> dict[str, Any]:
    """Init kwargs as each training code base records them (see the notes on nested vs flat)."""
    mapping = _EasyDict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier)
    synthesis = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                     conv_clamp=cfg.conv_clamp, architecture=cfg.architecture)
    base = dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                img_channels=cfg.img_channels, mapping_kwargs=mapping)
    if layout == "nested":
        return {**base, "synthesis_kwargs": _EasyDict(synthesis)}
    if layout == "flat":
        flat = {**base, **synthesis, "fused_modconv_default": "inference_only"}
        if cfg.num_fp16_res == 4:
            del flat["num_fp16_res"]  # the SG3-repo default; its producers omit it
        if cfg.conv_clamp == 256:
            del flat["conv_clamp"]
        return flat
    raise ValueError("layout must be 'nested' or 'flat'")


def generator_record(G: Generator, layout: str = "nested", module_src: str = DEFAULT_MODULE_SRC) -> _Record:
    """The persistent-object tree of G. StyleGAN3 generators always use the flat layout (their only one)."""
    cfg = G.cfg
    children = {"synthesis": _describe(G.synthesis, cfg, module_src), "mapping": _describe(G.mapping, cfg, module_src)}
    attrs = dict(z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, img_resolution=G.img_resolution,
                 img_channels=G.img_channels, num_ws=G.num_ws)
    if isinstance(G, sg3.Generator):
        init_kwargs = stylegan3_init_kwargs(cfg)
    else:
        init_kwargs = generator_init_kwargs(cfg, layout)
    state = _module_state(G, attrs, init_kwargs, children)
    return _record("Generator", state, module_src)


def write(G: Generator, f: BinaryIO | str, layout: str = "nested", generator_only: bool = False,
          module_src: str = DEFAULT_MODULE_SRC, extra: dict[str, Any] | None = None, protocol: int | None = None) -> None:
    """Write G as an NVIDIA network pickle.

    layout='nested' is stylegan2-ada-pytorch's (protocol 3), 'flat' the stylegan3 repository's
    (protocol 4); StyleGAN3 generators are always written flat. A snapshot holds G, G_ema (both
    this network) and whatever `extra` adds (e.g. D); generator_only writes the bare network, as PTI
    exports do.
    """
    if isinstance(G, sg3.Generator):
        layout = "flat"
    rec = generator_record(G, layout, module_src)
    data: Any = rec if generator_only else {"G": rec, "G_ema": rec, "augment_pipe": None,
                                             "training_set_kwargs": None, **(extra or {})}
    blob = dumps_official(data, protocol=protocol or (3 if layout == "nested" else 4))
    if isinstance(f, (str, bytes)) or hasattr(f, "__fspath__"):
        with open(f, "wb") as fh:
            fh.write(blob)
    else:
        f.write(blob)


def read_bytes(blob: bytes) -> Generator:
    return read(io.BytesIO(blob))
