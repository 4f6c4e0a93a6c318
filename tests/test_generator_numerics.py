"""The forward pass against arithmetic written out independently of draggan_core.ops.

The reference below uses only elementwise operations, einsum and explicit loops over filter taps,
following the StyleGAN2 paper's definitions, so a mistake in ops.py cannot cancel itself out.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from conftest import make_generator


def ref_dense(x, weight, bias, lr_mul, act):
    y = x @ (weight * lr_mul / math.sqrt(weight.shape[1])).T + bias * lr_mul
    if act:
        y = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    return y


def ref_mapping(G, z, psi):
    x = z / torch.sqrt((z ** 2).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(G.cfg.mapping_layers):
        fc = getattr(G.mapping, f"fc{i}")
        x = ref_dense(x, fc.weight, fc.bias, 0.01, act=True)
    w_avg = G.mapping.w_avg
    x = w_avg + psi * (x - w_avg)
    return x.unsqueeze(1).repeat(1, G.num_ws, 1)


def correlate_same_size(x, k):
    """Zero-padded 2-D cross-correlation of every channel of x [C,H,W] with per-(out,in) kernels k [O,C,kh,kw]."""
    O, C, kh, kw = k.shape
    H, W = x.shape[1:]
    xp = torch.zeros(C, H + kh - 1, W + kw - 1, dtype=x.dtype)
    xp[:, kh // 2: kh // 2 + H, kw // 2: kw // 2 + W] = x
    out = torch.zeros(O, H, W, dtype=x.dtype)
    for dy in range(kh):
        for dx in range(kw):
            out += torch.einsum("oc,chw->ohw", k[:, :, dy, dx], xp[:, dy: dy + H, dx: dx + W])
    return out


def fir_blur(x, taps, pad0, pad1):
    """Convolve each channel with the separable normalised filter after padding (pad0 before, pad1 after)."""
    f = np.outer(taps, taps)
    f = f / f.sum()
    C, H, W = x.shape
    xp = torch.zeros(C, H + pad0 + pad1, W + pad0 + pad1, dtype=x.dtype)
    xp[:, pad0: pad0 + H, pad0: pad0 + W] = x
    n = f.shape[0]
    Ho, Wo = xp.shape[1] - n + 1, xp.shape[2] - n + 1
    out = torch.zeros(C, Ho, Wo, dtype=x.dtype)
    ff = f[::-1, ::-1]  # true convolution
    for dy in range(n):
        for dx in range(n):
            out += float(ff[dy, dx]) * xp[:, dy: dy + Ho, dx: dx + Wo]
    return out


def zero_insert(x, factor=2):
    C, H, W = x.shape
    out = torch.zeros(C, H * factor, W * factor, dtype=x.dtype)
    out[:, ::factor, ::factor] = x
    return out


def modulated_weight(layer, w, demod=True, extra_gain=1.0):
    s = (w @ (layer.affine.weight / math.sqrt(layer.affine.weight.shape[1])).T + layer.affine.bias) * extra_gain
    wt = layer.weight * s.reshape(1, -1, 1, 1)
    if demod:
        wt = wt / torch.sqrt((wt ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    return wt


def ref_layer(layer, x, w, up):
    wt = modulated_weight(layer, w)
    if up:
        # Transposed stride-2 conv == correlate the zero-inserted input with the flipped kernel,
        # padded by k-1 so the output is 2H+1; then the [1,3,3,1] blur with gain 4 brings it to 2H.
        xu = zero_insert(x)[:, : 2 * x.shape[1] - 1, : 2 * x.shape[2] - 1]
        k = wt.flip([2, 3])
        xp = torch.zeros(xu.shape[0], xu.shape[1] + 4, xu.shape[2] + 4)
        xp[:, 2:-2, 2:-2] = xu
        y = correlate_same_size(xp, k)[:, 1:-1, 1:-1]  # valid part: 2H+1
        y = fir_blur(y, [1, 3, 3, 1], 1, 1) * 4
    else:
        y = correlate_same_size(x, wt)
    y = y + layer.noise_const * layer.noise_strength
    y = y + layer.bias.reshape(-1, 1, 1)
    y = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    if layer.act_clamp is not None:
        y = y.clamp(-layer.act_clamp, layer.act_clamp)
    return y


def ref_torgb(layer, x, w, clamp):
    wt = modulated_weight(layer, w, demod=False, extra_gain=1 / math.sqrt(layer.weight.shape[1]))
    y = torch.einsum("oc,chw->ohw", wt[:, :, 0, 0], x) + layer.bias.reshape(-1, 1, 1)
    return y.clamp(-clamp, clamp) if clamp is not None else y


def ref_synthesis(G, ws):
    """Whole synthesis network, skip architecture, one sample."""
    syn = G.synthesis
    x = img = None
    feats = []
    wi = 0
    for r in syn.block_resolutions:
        b = getattr(syn, f"b{r}")
        if r == syn.block_resolutions[0]:
            x = ref_layer(b.conv1, b.const, ws[wi], up=False)
            img = ref_torgb(b.torgb, x, ws[wi + 1], G.cfg.conv_clamp)
            wi += 1
        else:
            x = ref_layer(b.conv0, x, ws[wi], up=True)
            x = ref_layer(b.conv1, x, ws[wi + 1], up=False)
            img = fir_blur(zero_insert(img), [1, 3, 3, 1], 2, 1) * 4 + ref_torgb(b.torgb, x, ws[wi + 2], G.cfg.conv_clamp)
            wi += 2
        feats.append(x)
    return img, feats


def test_mapping_matches_hand_arithmetic():
    G = make_generator(seed=1)
    z = torch.randn(3, G.z_dim)
    ours = G.mapping(z, None, truncation_psi=0.6)
    assert torch.allclose(ours, ref_mapping(G, z, 0.6), atol=1e-5)


def test_truncation_cutoff_only_touches_first_rows():
    G = make_generator(seed=1)
    z = torch.randn(1, G.z_dim)
    full = G.mapping(z, None, truncation_psi=1.0)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.equal(cut[:, 2:], full[:, 2:])
    assert torch.allclose(cut[:, :2], G.mapping.w_avg + 0.5 * (full[:, :2] - G.mapping.w_avg), atol=1e-6)


def test_synthesis_matches_hand_arithmetic_with_features():
    G = make_generator(seed=2, img_resolution=16, conv_clamp=256)
    ws = G.mapping(torch.randn(1, G.z_dim), None, truncation_psi=0.8)
    img, feats = G.synthesis(ws, noise_mode="const", return_features=True)
    ref_img, ref_feats = ref_synthesis(G, ws[0])
    assert img.shape == (1, 3, 16, 16)
    assert len(feats) == len(ref_feats) == 3
    for ours, ref in zip(feats, ref_feats):
        assert torch.allclose(ours[0], ref, atol=2e-4, rtol=1e-4), (ours[0] - ref).abs().max()
    assert torch.allclose(img[0], ref_img, atol=2e-4, rtol=1e-4), (img[0] - ref_img).abs().max()


def test_clamp_is_applied():
    G = make_generator(seed=3, img_resolution=16, conv_clamp=0.05)
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    _, feats = G.synthesis(ws, return_features=True)
    # conv_clamp bounds the activations of every layer (gain 1 in the skip architecture).
    assert max(f.abs().max().item() for f in feats) <= 0.05 + 1e-6
    ref_img, ref_feats = ref_synthesis(G, ws[0])
    assert torch.allclose(feats[-1][0], ref_feats[-1], atol=1e-5)


def test_noise_modes():
    G = make_generator(seed=4)
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    a = G.synthesis(ws, noise_mode="const")
    assert torch.equal(a, G.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(a, G.synthesis(ws, noise_mode="none"))
    torch.manual_seed(0)
    r1 = G.synthesis(ws, noise_mode="random")
    torch.manual_seed(1)
    assert not torch.allclose(r1, G.synthesis(ws, noise_mode="random"))


def test_stop_at_block_returns_the_same_features_without_the_image():
    G = make_generator(seed=5)
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    _, full = G.synthesis(ws, return_features=True)
    img, part = G.synthesis(ws, stop_at_block=2)
    assert img is None and len(part) == 3
    assert torch.equal(part[2], full[2])


def test_seed_convention_matches_numpy_randomstate():
    from draggan_core import seed_to_z
    z = seed_to_z(42, 24)
    expected = np.random.RandomState(42).randn(1, 24).astype(np.float32)
    assert np.array_equal(z.numpy(), expected)


def test_official_layout_size_of_a_512_generator():
    """Names, count and element count of the official 512x512 G_ema (163 entries, 30,276,583 parameters)."""
    from draggan_core import Generator, GeneratorConfig
    G = Generator(GeneratorConfig(img_resolution=512))
    sd = G.state_dict()
    assert len(sd) == 163 and G.num_ws == 16
    assert sum(p.numel() for p in G.parameters()) == 30_276_583
    assert list(sd)[:3] == ["synthesis.b4.const", "synthesis.b4.resample_filter", "synthesis.b4.conv1.weight"]
    assert sd["synthesis.b128.conv0.weight"].shape == (256, 512, 3, 3)
    assert sd["synthesis.b512.conv1.noise_const"].shape == (512, 512)


def test_rectangular_generator_keeps_its_aspect_ratio():
    G = make_generator(seed=6, init_res=(4, 2))
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    img, feats = G.synthesis(ws, return_features=True)
    assert img.shape == (2, 3, 32, 16) and G.img_size == (32, 16)
    assert feats[-1].shape[2:] == (32, 16)


def test_unfused_modulated_conv_matches_fused():
    G = make_generator(seed=7)
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    fused = G.synthesis(ws)
    unfused = G.synthesis(ws, fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-4)
