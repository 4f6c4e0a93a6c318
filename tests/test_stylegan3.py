"""StyleGAN3 (configs T and R): official checkpoint layout, forward arithmetic, feature alignment, dragging.

The reference arithmetic below uses only elementwise operations, einsum and explicit loops over
filter taps, written from the paper and the fact sheet, never draggan_core.ops, so a mistake in
the generator cannot cancel itself out.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from draggan_core import cli as core_cli
from draggan_core import load_generator, stylegan3
from draggan_core.drag import DragConfig, DragSession, FeatureField, default_feature_block, track_points
from draggan_core.features import FeatureGeometry
from draggan_core.formats import native, nvidia, safe_pickle
from draggan_core.stylegan3 import StyleGAN3Config, choose_feature_layer, layer_schedule

RES = 32


def make_sg3(kind: str = "t", seed: int = 0, **overrides) -> stylegan3.Generator:
    """A tiny random StyleGAN3 whose every parameter and buffer is non-trivial."""
    cfg = dict(z_dim=16, w_dim=20, img_resolution=RES, channel_base=256, channel_max=16, num_layers=6,
               conv_kernel=3 if kind == "t" else 1, use_radial_filters=kind == "r")
    cfg.update(overrides)
    torch.manual_seed(seed)
    G = stylegan3.Generator(StyleGAN3Config(**cfg))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") and "affine" not in name:
                p.normal_(0, 0.1)
        G.synthesis.input.affine.weight.normal_(0, 0.3)  # a w-dependent rotation and translation
        for layer in G.synthesis.layers():
            layer.magnitude_ema.fill_(0.3 + torch.rand(()).item())
        G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module", params=["t", "r"])
def G(request):
    return make_sg3(request.param, seed=1 if request.param == "t" else 2)


# ----------------------------------------------------------------------------------- layout


def test_official_layer_names_for_released_configs():
    def names(**kw):
        return " ".join(s.name for s in layer_schedule(StyleGAN3Config(**kw))[1])

    assert names(img_resolution=1024) == (
        "L0_36_512 L1_36_512 L2_52_512 L3_52_512 L4_84_512 L5_148_512 L6_148_512 L7_276_323 L8_276_203 "
        "L9_532_128 L10_1044_81 L11_1044_51 L12_1044_32 L13_1024_32 L14_1024_3")
    assert names(img_resolution=256) == (
        "L0_36_512 L1_36_512 L2_36_512 L3_52_512 L4_52_512 L5_84_512 L6_84_512 L7_148_512 L8_148_512 "
        "L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3")
    assert names(img_resolution=1024, channel_base=65536, channel_max=1024, conv_kernel=1,
                 use_radial_filters=True).endswith("L7_276_645 L8_276_406 L9_532_256 L10_1044_161 L11_1044_102 "
                                                   "L12_1044_64 L13_1024_64 L14_1024_3")


@pytest.mark.parametrize("kind", ["t", "r"])
def test_official_pickle_round_trip(tmp_path, kind):
    G = make_sg3(kind, seed=3)
    # The name says T, the contents say otherwise for R: the file name must not matter.
    path = tmp_path / "stylegan3-t-ffhq-1024x1024.pkl"
    nvidia.write(G, path)
    with open(path, "rb") as f:
        data = safe_pickle.load(f)
    rec = data["G_ema"]
    sd = nvidia.state_dict_of(rec)
    expected = list(G.state_dict())
    assert list(sd) == expected
    layer_names = [s.name for s in G.synthesis.specs]
    assert expected[:7] == ["synthesis.input.weight", "synthesis.input.transform", "synthesis.input.freqs",
                            "synthesis.input.phases", "synthesis.input.affine.weight", "synthesis.input.affine.bias",
                            f"synthesis.{layer_names[0]}.weight"]
    first = layer_names[0]
    assert [k for k in expected if k.startswith(f"synthesis.{first}.")] == [
        f"synthesis.{first}.{n}" for n in ("weight", "bias", "magnitude_ema", "up_filter", "down_filter",
                                           "affine.weight", "affine.bias")]
    torgb = layer_names[-1]
    assert [k for k in expected if k.startswith(f"synthesis.{torgb}.")] == [  # taps = 1: no filters stored
        f"synthesis.{torgb}.{n}" for n in ("weight", "bias", "magnitude_ema", "affine.weight", "affine.bias")]
    assert expected[-5:] == ["mapping.w_avg", "mapping.fc0.weight", "mapping.fc0.bias", "mapping.fc1.weight",
                             "mapping.fc1.bias"]
    kwargs = rec.state["_init_kwargs"]
    assert "synthesis_kwargs" not in kwargs and kwargs["channel_base"] == 256
    assert kwargs["mapping_kwargs"]["num_layers"] == 2
    assert ("conv_kernel" in kwargs) == (kind == "r") and kwargs.get("use_radial_filters", False) == (kind == "r")
    kernel = 3 if kind == "t" else 1
    assert sd[f"synthesis.{first}.weight"].shape[-1] == kernel
    # R: radial (2-D) down filters on the non-critically sampled layers; T: 1-D everywhere.
    dims = {s.name: sd[f"synthesis.{s.name}.down_filter"].ndim for s in G.synthesis.specs if s.down_taps > 1}
    assert dims[first] == (2 if kind == "r" else 1) and dims[layer_names[-2]] == 1

    H = load_generator(path)
    assert isinstance(H, stylegan3.Generator) and H.checkpoint_format == "nvidia-pickle"
    assert H.cfg == G.cfg and H.flavour == f"stylegan3-{kind}"
    for k, v in G.state_dict().items():
        assert torch.equal(H.state_dict()[k], v), k
    ws = G.mapping(torch.randn(2, G.z_dim), truncation_psi=0.7)
    assert torch.equal(H.synthesis(ws), G.synthesis(ws))

    # Without channel_base/channel_max in the kwargs the layer names still pin them down.
    for key in ("channel_base", "channel_max"):
        kwargs.pop(key)
    assert nvidia.generator_from_data(data).cfg == G.cfg

    out = tmp_path / "g.safetensors"
    native.write(G, out)
    assert json.loads(native.read_metadata(out)["config"])["flavour"] == f"stylegan3-{kind}"
    N = load_generator(out)
    assert isinstance(N, stylegan3.Generator) and N.cfg == G.cfg
    assert all(torch.equal(N.state_dict()[k], v) for k, v in G.state_dict().items())


def test_native_flavour_must_match_the_tensors(tmp_path):
    import safetensors.torch
    G = make_sg3("r", seed=5)
    path = tmp_path / "g.safetensors"
    native.write(G, path)
    meta = native.read_metadata(path)
    config = json.loads(meta["config"])
    config["flavour"] = "stylegan3-t"  # says T, but the settings (1x1 kernels) describe R
    tensors = safetensors.torch.load_file(path)
    safetensors.torch.save_file(tensors, path, metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(nvidia.CheckpointError, match="stylegan3-t"):
        load_generator(path)


def test_inconsistent_geometry_is_refused(tmp_path):
    G = make_sg3("t", seed=4)
    path = tmp_path / "g.pkl"
    nvidia.write(G, path)
    with open(path, "rb") as f:
        data = safe_pickle.load(f)
    layer = data["G_ema"].state["_modules"]["synthesis"].state["_modules"][G.synthesis.layer_names[2]]
    layer.state["padding"] = [0, 0, 0, 0]
    with pytest.raises(nvidia.CheckpointError, match="padding"):
        nvidia.generator_from_data(data)


# ----------------------------------------------------------------------------------- arithmetic


def ref_dense(x, weight, bias, lr_mul=1.0):
    weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    return x @ (weight * lr_mul / math.sqrt(weight.shape[1])).T + bias * lr_mul


def ref_input(inp, w):
    """Fourier features written out per channel with scalar rotation/translation formulas."""
    t = ref_dense(w, inp.affine.weight, inp.affine.bias)[0]
    t = t / torch.sqrt(t[0] ** 2 + t[1] ** 2)
    rc, rs, tx, ty = t
    fx, fy = inp.freqs[:, 0].double(), inp.freqs[:, 1].double()
    # frequencies rotated by [[rc, -rs], [rs, rc]] (row vector times matrix), phases shifted by the
    # rotated translation (-tx, -ty); the user transform is the identity here.
    fx2, fy2 = fx * rc + fy * rs, -fx * rs + fy * rc
    px, py = rc * -tx - rs * -ty, rs * -tx + rc * -ty
    phases = inp.phases.double() + fx * px + fy * py
    amp = torch.clamp(1 - (torch.sqrt(fx2 ** 2 + fy2 ** 2) - inp.bandwidth) / (inp.sampling_rate / 2 - inp.bandwidth),
                      0, 1)
    size = int(inp.size[0])
    coords = (torch.arange(size, dtype=torch.float64) + 0.5 - size / 2) / inp.sampling_rate
    gx, gy = coords[None, :], coords[:, None]
    C = inp.channels
    feats = torch.stack([torch.sin(2 * math.pi * (fx2[c] * gx + fy2[c] * gy + phases[c])) * amp[c] for c in range(C)])
    return torch.einsum("oc,chw->ohw", inp.weight.double() / math.sqrt(C), feats.double())


def ref_modconv_full(x, weight, styles, demod, gain):
    """Per-sample modulated convolution with zero padding k - 1 on each side (a 'full' correlation)."""
    O, I, k, _ = weight.shape
    wmod = weight * styles[None, :, None, None]
    if demod:
        wmod = wmod / torch.sqrt((wmod ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    wmod = wmod * gain
    H, W = x.shape[1:]
    xp = torch.zeros(I, H + 2 * (k - 1), W + 2 * (k - 1), dtype=x.dtype)
    xp[:, k - 1: k - 1 + H, k - 1: k - 1 + W] = x
    Ho, Wo = H + k - 1, W + k - 1
    out = torch.zeros(O, Ho, Wo, dtype=x.dtype)
    for dy in range(k):
        for dx in range(k):
            out += torch.einsum("oi,ihw->ohw", wmod[:, :, dy, dx], xp[:, dy: dy + Ho, dx: dx + Wo])
    return out


def ref_upfirdn(x, f, up, down, pad, gain):
    """Zero-insertion upsampling, padding (negative crops), true convolution with f (1-D separable
    or 2-D, tap by tap), gain, keep every down-th sample."""
    C, H, W = x.shape
    xu = torch.zeros(C, H * up, W * up, dtype=x.dtype)
    xu[:, ::up, ::up] = x
    lo, hi = pad
    xp = torch.zeros(C, H * up + max(lo, 0) + max(hi, 0), W * up + max(lo, 0) + max(hi, 0), dtype=x.dtype)
    xp[:, max(lo, 0): max(lo, 0) + H * up, max(lo, 0): max(lo, 0) + W * up] = xu
    xp = xp[:, max(-lo, 0): xp.shape[1] - max(-hi, 0), max(-lo, 0): xp.shape[2] - max(-hi, 0)]
    f = f.double() * gain ** (f.ndim / 2)
    n = f.shape[0]
    Ho, Wo = xp.shape[1] - n + 1, xp.shape[2] - n + 1
    out = torch.zeros(C, Ho, Wo, dtype=x.dtype)
    if f.ndim == 2:
        for dy in range(n):
            for dx in range(n):
                out += f[n - 1 - dy, n - 1 - dx] * xp[:, dy: dy + Ho, dx: dx + Wo]
    else:  # separable: rows, then columns
        rows = torch.zeros(C, xp.shape[1], Wo, dtype=x.dtype)
        for dx in range(n):
            rows += f[n - 1 - dx] * xp[:, :, dx: dx + Wo]
        for dy in range(n):
            out += f[n - 1 - dy] * rows[:, dy: dy + Ho, :]
    return out[:, ::down, ::down]


def ref_layer(layer, x, w):
    sp = layer.spec
    styles = ref_dense(w, layer.affine.weight, layer.affine.bias)[0].double()
    weight = layer.weight.double()
    if sp.is_torgb:
        styles = styles / math.sqrt(sp.in_channels * sp.conv_kernel ** 2)
    else:
        weight = weight / torch.sqrt((weight ** 2).mean(dim=[1, 2, 3], keepdim=True))
        styles = styles / torch.sqrt((styles ** 2).mean())
    y = ref_modconv_full(x.double(), weight, styles, demod=not sp.is_torgb,
                         gain=1 / math.sqrt(float(layer.magnitude_ema)))
    y = y + layer.bias.double()[:, None, None]
    one = torch.ones(1)
    y = ref_upfirdn(y, layer.up_filter if layer.up_filter is not None else one, sp.up_factor, 1,
                    sp.padding[:2], sp.up_factor ** 2)
    if not sp.is_torgb:
        y = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    y = y.clamp(-256, 256)
    return ref_upfirdn(y, layer.down_filter if layer.down_filter is not None else one, 1, sp.down_factor,
                       (0, 0), 1)


def test_forward_against_independent_arithmetic(G):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)), truncation_psi=0.8)
    ws = ws + 0.2 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(6))  # distinct rows
    img, feats = G.synthesis(ws, return_features=True)
    x0 = G.synthesis.input(ws[:, 0])
    assert torch.allclose(x0[0].double(), ref_input(G.synthesis.input, ws[:, 0].double()), atol=1e-5)
    specs = G.synthesis.specs
    layers = G.synthesis.layers()
    # One layer of each kind: up 4 / down 2 (rate doubles), up 2 / down 2, critically sampled, ToRGB.
    chosen = {next(s.index for s in specs if s.up_factor == 4), next(s.index for s in specs if s.up_factor == 2),
              specs[-2].index, specs[-1].index}
    if G.cfg.use_radial_filters:
        assert any(layers[k].down_filter is not None and layers[k].down_filter.ndim == 2 for k in chosen)
    for k in sorted(chosen):
        x_in = x0 if k == 0 else feats[k - 1]
        ref = ref_layer(layers[k], x_in[0], ws[:, k + 1])
        assert ref.shape == feats[k].shape[1:] == (specs[k].out_channels, specs[k].out_size, specs[k].out_size)
        scale = ref.abs().max()
        assert torch.allclose(feats[k][0].double(), ref, atol=1e-5 * float(scale) + 1e-6), specs[k].name
    assert torch.allclose(img, feats[-1] * 0.25)
    assert img.shape == (1, 3, RES, RES)


@pytest.mark.parametrize("numtaps,cutoff,width,fs", [(12, 8.0, 8.0, 64.0), (24, 4.0, 6.0, 64.0)])
def test_filter_design_is_a_normalised_symmetric_lowpass(numtaps, cutoff, width, fs):
    f = stylegan3.design_lowpass_filter(numtaps, cutoff, width, fs).double()
    assert torch.allclose(f.sum(), torch.tensor(1.0, dtype=torch.float64)) and torch.allclose(f, f.flip(0))
    freq = np.fft.rfftfreq(512, 1 / fs)
    resp = np.abs(np.fft.rfft(f.numpy(), 512))
    assert resp[freq <= cutoff / 4].min() > 0.9 and resp[freq >= cutoff + width].max() < 0.05
    r = stylegan3.design_lowpass_filter(numtaps, cutoff, width, fs, radial=True).double()
    assert r.shape == (numtaps, numtaps) and torch.allclose(r, r.t()) and torch.allclose(r.sum(), f.sum())
    z = np.array([0.5, 3.0, 10.0])  # J1 against its power series
    series = sum((-1) ** m * (z / 2) ** (2 * m + 1) / (math.factorial(m) * math.factorial(m + 1)) for m in range(40))
    assert np.allclose(stylegan3.bessel_j1(z), series, atol=1e-10)


# ----------------------------------------------------------------------------------- features and geometry


def test_feature_layer_rule():
    for res, expected in ((1024, "L6_148_512"), (512, "L7_148_483"), (256, "L9_148_362")):
        specs = layer_schedule(StyleGAN3Config(img_resolution=res))[1]
        k = choose_feature_layer(specs, res)
        assert specs[k].name == expected and specs[k].margin == 10 and specs[k].out_sampling_rate == 128
    G = make_sg3("t")
    k = default_feature_block(G)
    assert k == G.default_feature_layer() and G.feature_rate(k) == RES and not G.synthesis.specs[k].is_torgb


def test_margin_crop_maps_samples_to_pixels():
    """A synthetic map whose value is its sample coordinate: after cropping the margin, pixel x reads
    (x + 0.5) * rate / W - 0.5, i.e. sample k sits at pixel (k + 0.5) * W / rate - 0.5."""
    rate, margin, W = 16, 10, 64
    ks = torch.arange(rate + 2 * margin, dtype=torch.float32) - margin
    fmap = torch.stack([ks[None, :].expand(len(ks), -1), ks[:, None].expand(-1, len(ks))])[None]
    field = FeatureField(fmap, (W, W), geometry=FeatureGeometry((margin,) * 4))
    xy = torch.tensor([[2.0, 5.0], [31.5, 40.0], [61.0, 10.0]])
    expected = (xy + 0.5) * rate / W - 0.5
    assert torch.allclose(field.sample(xy), expected, atol=1e-5)
    dense = FeatureField(fmap, (W, W), dense=True, geometry=FeatureGeometry((margin,) * 4))
    assert torch.allclose(dense.sample(xy.round()), (xy.round() + 0.5) * rate / W - 0.5, atol=1e-5)


def test_tracking_recovers_an_image_translation(G):
    """StyleGAN3 is translation equivariant: translating through the input transform by (dx, dy) px
    moves the content, and tracking each layer's aligned features finds exactly that shift. Without
    cropping the margin (resizing the whole map to the image) tracking is off by pixels."""
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(7)), truncation_psi=1.0)
    _, before = G.synthesis(ws, return_features=True)
    pts = torch.tensor([[12.0, 14.0], [18.0, 16.0], [15.0, 20.0]])
    naive_errors = []
    for dx, dy in ((2, -4), (-6, 2), (1, 3)):
        G.synthesis.input.transform.copy_(torch.tensor([[1, 0, -dx / RES], [0, 1, -dy / RES], [0, 0, 1.0]]))
        try:
            _, after = G.synthesis(ws, return_features=True)
        finally:
            G.synthesis.input.transform.copy_(torch.eye(3))
        for k in range(G.num_feature_layers - 1):
            geo = G.feature_geometry(k)
            assert geo.crop == (G.synthesis.specs[k].margin,) * 4
            f0, f1 = (FeatureField(f[k], (RES, RES), geometry=geo) for f in (before, after))
            found = track_points(f1, pts, f0.sample(pts), r2=8)
            assert (found - pts - torch.tensor([dx, dy])).abs().max() <= 0.5, (k, dx, dy)
            if geo.crop[0]:
                n0, n1 = (FeatureField(f[k], (RES, RES)) for f in (before, after))
                naive = track_points(n1, pts, n0.sample(pts), r2=8)
                naive_errors.append(float((naive - pts - torch.tensor([dx, dy])).abs().max()))
    assert max(naive_errors) >= 2


# ----------------------------------------------------------------------------------- dragging


def test_drag_through_the_python_api(G):
    run_drag(G, None, "fast")


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_drag_on_a_layer_with_margin(path):
    run_drag(make_sg3("t", seed=1), 2, path)


def run_drag(G, block, path):
    s = DragSession(G, 3, config=DragConfig(feature_block=block, stall_steps=0, learning_rate=5e-3, path=path))
    k = s.block
    assert s.geometry == G.feature_geometry(k)
    if block is not None:
        assert s.geometry.crop[0] == 10
    s.set_points([(10, 12), (22, 20)], [(14, 12), (22, 16)])
    mask = np.zeros((RES, RES), bool)
    mask[4:28, 4:28] = True
    s.set_mask(mask)
    before = s.latent()
    steps = list(s.run(max_steps=3, preview_every=3))
    assert [st.step for st in steps] == [1, 2, 3] and all(math.isfinite(st.loss) and st.loss > 0 for st in steps)
    assert steps[-1].preview.shape == (1, 3, RES, RES)
    after = s.latent()
    assert not torch.equal(after[:, :6], before[:, :6]) and torch.equal(after[:, 6:], before[:, 6:])
    assert s.image().shape == (1, 3, RES, RES)


@pytest.mark.parametrize("kind", ["t", "r"])
def test_cli_generate_and_drag(tmp_path, kind):
    G = make_sg3(kind, seed=8)
    model = tmp_path / "model.pkl"
    nvidia.write(G, model)
    mask = np.zeros((RES, RES), np.uint8)
    mask[2:30, 2:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    args = ["drag", "--model", str(model), "--seed", "2", "--points", "10,12:15,12;20,20:20,15", "--steps", "2",
            "--mask", str(tmp_path / "mask.png"), "--out", str(out), "--trajectory", str(tmp_path / "t.json"),
            "--device", "cpu"]
    if kind == "t":  # the installed command line, in a fresh interpreter
        res = subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                             env={**os.environ, "DRAGGAN_MODELS": str(tmp_path / "models")}, timeout=120)
        assert res.returncode == 0, res.stderr
    else:  # the same entry point in-process (an interpreter start costs seconds on a busy machine)
        from backend import cli as backend_cli
        assert backend_cli.main(args) == 0
    assert np.asarray(Image.open(out)).shape == (RES, RES, 3)
    record = json.loads((tmp_path / "t.json").read_text())
    assert len(record["steps"]) == 2 and len(record["steps"][-1]["handles"]) == 2
    gen = tmp_path / "gen.png"  # the same command line in-process (a second interpreter start costs seconds)
    assert core_cli.main(["generate", "--model", str(model), "--seed", "2", "--out", str(gen), "--device", "cpu"]) == 0
    ws = G.mapping(torch.from_numpy(np.random.RandomState(2).randn(1, G.z_dim)).float(), truncation_psi=0.7)
    expected = (G.synthesis(ws)[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(np.asarray(Image.open(gen)).astype(int) - expected).max() <= 1
