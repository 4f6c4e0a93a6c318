"""Inversion: W -> W+ projection and pivotal tuning on tiny generators, stopping, session keys, feature-net hook."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from conftest import make_generator
from draggan_core import invert
from draggan_core.drag import DragSession
from draggan_core.images import to_uint8
from draggan_core.invert import (FeatureNetHashError, InversionConfig, Inverter, TorchScriptFeatureLoss, lr_schedule,
                                 module_bytes, session_key)
from draggan_core.stylegan2 import ws_from_seed

FAST = dict(w_avg_samples=1000)


def _generator(**overrides):
    """A tiny random generator whose images mostly lie in [-1, 1], like a trained one's (8-bit targets clip)."""
    G = make_generator(**overrides)
    with torch.no_grad():
        for block in G.synthesis.blocks():
            block.torgb.weight *= 0.4
            block.torgb.bias *= 0.4
    return G


def _state(G):
    return {k: v.detach().clone() for k, v in G.state_dict().items()}


def _target(G, seed=5):
    with torch.no_grad():
        return G.synthesis(ws_from_seed(G, seed, 0.7), noise_mode="const")


@pytest.fixture(scope="module")
def full_run():
    """One full W -> W+ -> PTI inversion of an image the generator made (the true latent is known)."""
    torch.manual_seed(0)
    G = _generator(img_resolution=32)
    before = _state(G)
    target = to_uint8(_target(G))  # the client sends 8-bit RGB
    cfg = InversionConfig(w_steps=60, wplus_steps=30, pti_steps=80, **FAST)
    inv = Inverter(G, target, None, cfg)
    steps = list(inv.run(preview_every=25))
    return G, before, target, inv, steps


def test_projection_and_pti_raise_quality(full_run):
    G, _, _, inv, _ = full_run
    q = inv.result().quality
    assert list(q) == ["start", "w", "w+", "pti"]
    # Measured: start 15.0 dB, W 25.8, W+ 26.4, PTI 33.1 (SSIM 0.97); with 80 / 40 / 100 steps
    # 26.0, 26.7, 34.5, and on seed 3 16.1, 27.4, 28.2, 37.1.
    assert q["w"].psnr > q["start"].psnr + 7
    assert q["w+"].psnr > q["w"].psnr - 0.5
    assert q["pti"].psnr > q["w+"].psnr + 5
    assert q["pti"].ssim > 0.95 and q["pti"].ssim > q["w+"].ssim > q["start"].ssim
    assert q["pti"].steps == 80 and q["pti"].seconds > 0


def test_steps_are_reported_per_stage(full_run):
    _, _, _, inv, steps = full_run
    stages = [s.stage for s in steps]
    assert stages == ["w"] * 60 + ["w+"] * 30 + ["pti"] * 80
    assert [s.step for s in steps[:3]] == [1, 2, 3] and steps[60].step == 1
    assert all(math.isfinite(s.loss) and math.isfinite(s.psnr) for s in steps)
    assert [s.done for s in steps].count(True) == 1 and steps[-1].done and steps[-1].reason == "finished"
    assert steps[59].reason == "finished" and not steps[59].done
    previews = [s for s in steps if s.preview is not None]
    assert previews and all(tuple(p.preview.shape) == (1, 3, 32, 32) for p in previews)
    assert steps[1].lr > steps[0].lr == 0.0  # the ramp-up starts at 0


def test_pti_leaves_the_original_generator_alone(full_run):
    G, before, _, inv, _ = full_run
    after = _state(G)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in G.parameters())
    res = inv.result()
    assert res.tuned is not None and res.tuned is not G and res.generator is res.tuned
    g_ptrs = {p.data_ptr() for p in G.parameters()}
    assert not g_ptrs & {p.data_ptr() for p in res.tuned.parameters()}
    moved = [k for k, v in res.tuned.state_dict().items() if not torch.equal(v, before[k])]
    assert moved and all(k.startswith("synthesis.") for k in moved)
    assert not any(k.endswith("noise_const") for k in moved)  # the optimised noise was discarded
    assert res.extra_bytes == module_bytes(res.tuned) > res.tuned_parameter_bytes > 0


def test_tuned_generator_is_saved_only_when_asked(full_run, tmp_path):
    from draggan_core import load_generator
    _, _, _, inv, _ = full_run
    res = inv.result()
    path = tmp_path / "tuned.safetensors"
    res.save_tuned(str(path), {"source": "test"})
    G2 = load_generator(path)
    with torch.no_grad():
        assert torch.equal(G2.synthesis(res.ws, noise_mode="const"), res.image())


def test_drag_session_runs_on_the_tuned_copy(full_run):
    G, before, _, inv, _ = full_run
    res = inv.result()
    with torch.no_grad():
        assert torch.allclose(res.image(), res.tuned.synthesis(res.ws, noise_mode="const"))
    s = DragSession(res.generator, res.ws)
    s.set_points([(10.0, 12.0)], [(14.0, 12.0)])
    out = list(s.run(max_steps=3))
    assert len(out) == 3 and tuple(s.image().shape) == (1, 3, 32, 32)
    assert not torch.equal(s.latent(), res.ws)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_stop_midway_keeps_the_best_result():
    G = _generator(img_resolution=32)
    target = _target(G)
    cfg = InversionConfig(w_steps=200, w_noise_factor=0.0, optimize_noise=False, **FAST)  # loss = reconstruction
    inv = Inverter(G, target, config=cfg)
    calls = []
    steps = list(inv.run(should_stop=lambda: calls.append(1) or len(calls) >= 25))
    assert len(steps) == 25 and steps[-1].reason == "stopped" and steps[-1].done
    res = inv.result()
    assert res.stopped and res.tuned is None and res.generator is G
    assert list(res.quality) == ["start", "w"] and res.quality["w"].stopped
    with torch.no_grad():
        final = float(inv.recon_loss(G.synthesis(res.ws, noise_mode="const")))
    assert final <= min(s.loss for s in steps) + 1e-6
    assert res.quality["w"].psnr > res.quality["start"].psnr


def test_breaking_out_keeps_the_best_and_pti_can_be_stopped():
    G = _generator(img_resolution=32)
    target = _target(G, seed=3)
    before = _state(G)
    G.requires_grad_(True)  # as a freshly loaded checkpoint may be: inversion must not collect grads in it
    inv = Inverter(G, target, config=InversionConfig(w_steps=30, wplus_steps=10, pti_steps=50, **FAST))
    for step in inv.run():
        if step.stage == "pti" and step.step == 4:
            break  # the caller walks away mid-stage
    res = inv.result()
    assert res.stopped and res.tuned is not None
    assert res.quality["pti"].steps == 4 and res.quality["pti"].stopped
    assert res.quality["pti"].psnr >= res.quality["w+"].psnr - 0.5
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in G.parameters())
    G.requires_grad_(False)

    inv2 = Inverter(G, target, config=InversionConfig(w_steps=30, **FAST))
    for step in inv2.run():
        if step.step == 7:
            break
    assert inv2.result().stopped and inv2.result().quality["w"].steps == 7

    inv3 = Inverter(G, target, config=InversionConfig(w_steps=10, wplus_steps=10, **FAST))
    for step in inv3.run():
        if step.reason == "finished":
            break  # walked away right after the W stage finished: the run counts as stopped
    assert inv3.result().stopped and "w+" not in inv3.result().quality and "w" in inv3.result().quality


def test_locality_regulariser_keeps_the_tuned_generator_close_elsewhere():
    G = _generator(img_resolution=32)
    target = _target(G, seed=4)
    pivot = ws_from_seed(G, 8, 0.7)  # a wrong pivot, so tuning has to move the weights a lot
    probes = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.5)
    drift = {}
    for weight in (0.0, 10.0):
        cfg = InversionConfig(pti_steps=25, pti_lr=3e-3, pti_stop_psnr=None, locality_weight=weight, **FAST)
        gen = invert.tune(G, pivot, target, config=cfg)
        steps = []
        try:
            while True:
                steps.append(next(gen))
        except StopIteration as stop:
            res = stop.value
        assert len(steps) == 25 and res.quality["pti"].psnr > res.quality["start"].psnr + 2
        with torch.no_grad():
            drift[weight] = float((res.tuned.synthesis(probes, noise_mode="none")
                                   - G.synthesis(probes, noise_mode="none")).square().mean())
    assert drift[10.0] < 0.7 * drift[0.0]


def test_valid_mask_excludes_padding_on_a_non_square_model():
    G = _generator(img_resolution=32, init_res=(4, 2))
    assert G.img_size == (32, 16)
    target = _target(G)
    valid = torch.zeros(32, 16)
    valid[4:28, :] = 1  # letterbox padding above and below
    junk = target.clone()
    junk[:, :, :4] = 1.0
    junk[:, :, 28:] = -1.0
    a = Inverter(G, target, valid, InversionConfig(stages=("w",), w_steps=5, **FAST))
    b = Inverter(G, junk, valid, InversionConfig(stages=("w",), w_steps=5, **FAST))
    img = G.synthesis(ws_from_seed(G, 9), noise_mode="const")
    assert float(a.recon_loss(img)) == pytest.approx(float(b.recon_loss(img)), abs=1e-6)
    assert a.psnr(img) == pytest.approx(b.psnr(img), abs=1e-6)
    full = Inverter(G, junk, None, InversionConfig(stages=("w",), w_steps=5, **FAST))
    assert float(full.recon_loss(img)) != pytest.approx(float(b.recon_loss(img)), abs=1e-3)
    la = [s.loss for s in a.run()]
    lb = [s.loss for s in b.run()]
    assert np.allclose(la, lb, rtol=1e-4, atol=1e-5)
    assert tuple(b.result().ws.shape) == (1, G.num_ws, G.w_dim)
    with pytest.raises(ValueError):
        Inverter(G, target, torch.zeros(32, 16), InversionConfig(stages=("w",), **FAST))
    with pytest.raises(ValueError):
        Inverter(G, target[:, :, :16], None, InversionConfig(stages=("w",), **FAST))


def test_keep_noise_gives_a_parameter_sharing_copy():
    G = _generator(img_resolution=32)
    before = _state(G)
    inv = Inverter(G, _target(G), config=InversionConfig(stages=("w",), w_steps=10, keep_noise=True, **FAST))
    list(inv.run())
    res = inv.result()
    Gn = res.generator
    assert Gn is not G and res.noise
    assert {p.data_ptr() for p in Gn.parameters()} == {p.data_ptr() for p in G.parameters()}
    assert res.extra_bytes == sum(t.numel() * 4 for t in res.noise.values())
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in res.noise.items())


def test_session_key_changes_with_pixels_model_and_settings():
    G = _generator(img_resolution=32)
    G2 = _generator(seed=1, img_resolution=32)
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    cfg = InversionConfig()
    key = session_key(pixels, G, cfg)
    assert key == session_key(pixels.copy(), _generator(img_resolution=32), InversionConfig())
    assert len(key) == 64
    other = pixels.copy()
    other[3, 4, 1] ^= 1
    assert session_key(other, G, cfg) != key
    assert session_key(pixels[:, :29], G, cfg) != key
    assert session_key(pixels, G2, cfg) != key
    assert session_key(pixels, G, InversionConfig(pti_steps=10)) != key
    assert session_key(pixels, G, InversionConfig(stages=("w", "w+"))) != key
    assert session_key(pixels, "sha256:abc", cfg) == session_key(pixels, "sha256:abc", cfg) != key
    assert session_key(pixels, G, cfg, valid=np.ones((32, 32), np.float32)) != key


def _scripted_net(tmp_path):
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor):
            f1 = torch.relu(self.conv(x))
            return [f1, torch.nn.functional.avg_pool2d(f1, 2)]

    path = tmp_path / "tiny_features.pt"
    torch.jit.script(Tiny()).save(str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated upstream, still supported
def test_torchscript_feature_net_is_loaded_only_when_the_hash_matches(tmp_path, monkeypatch):
    path, digest = _scripted_net(tmp_path)
    loads = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(FeatureNetHashError, match="does not match"):
        TorchScriptFeatureLoss(path, wrong)
    with pytest.raises(FeatureNetHashError):
        TorchScriptFeatureLoss(path, "not-a-hash")
    assert loads == []  # refused before torch.jit.load ever saw the file
    net = TorchScriptFeatureLoss(path, digest.upper())
    assert loads == [1] and net.identity.startswith("torchscript:" + digest)

    G = _generator(img_resolution=32)
    target = _target(G)
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    loss = net(x, target)
    loss.backward()
    assert float(loss.detach()) > 0 and x.grad.abs().sum() > 0
    inv = Inverter(G, target, config=InversionConfig(stages=("w",), w_steps=6, **FAST), feature_loss=net)
    steps = list(inv.run())
    assert len(steps) == 6 and all(math.isfinite(s.loss) for s in steps)
    pixels = to_uint8(target)
    assert session_key(pixels, G, feature_loss=net) != session_key(pixels, G)
    small = TorchScriptFeatureLoss(path, digest, input_range=(0, 255), max_size=16)
    assert small.identity != net.identity
    assert float(small(target, target)) == 0 and float(small(target.detach() * 0.5, target)) > 0


def test_config_and_schedule():
    with pytest.raises(ValueError):
        InversionConfig(stages=("pti", "w"))
    with pytest.raises(ValueError):
        InversionConfig(stages=("x",))
    with pytest.raises(ValueError):
        InversionConfig(w_steps=0)
    G = _generator(img_resolution=32)
    r = InversionConfig().resolved(G)
    assert (r.w_steps, r.wplus_steps, r.pti_steps) == (300, 150, 200)
    assert r.locality_alpha == pytest.approx(30 * math.sqrt(G.w_dim / 512))
    assert lr_schedule(0.0, 0.1) == 0.0 and lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)
    ts = np.linspace(0, 1, 101)
    lrs = [lr_schedule(t, 0.1) for t in ts]
    assert max(lrs) == pytest.approx(0.1) and all(v >= 0 for v in lrs)
    w_avg, w_std = invert.w_stats(G, 500)
    assert w_avg.shape == (G.w_dim,) and w_std > 0


def test_layer_to_inversion_to_drag_to_composite_end_to_end():
    """The daemon's path: a non-square layer region -> model image -> invert -> drag -> back into the layer."""
    from draggan_core.region import RegionMapping, composite, select_region
    G = _generator(img_resolution=32)
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 256, (50, 90, 4), dtype=np.uint8)
    region = select_region(layer.shape[:2], (40, 12, 30, 20), margin=0.2, min_margin=2, model_size=G.img_size)
    m = RegionMapping.create(layer.shape[:2], G.img_size, region)
    rgb, valid = m.crop_and_fit(layer)
    inv = Inverter(G, rgb, valid, InversionConfig(w_steps=8, wplus_steps=4, pti_steps=4, **FAST))
    list(inv.run())
    res = inv.result()
    assert set(res.quality) == {"start", "w", "w+", "pti"}
    with torch.no_grad():
        reference = res.image()
    s = DragSession(res.generator, res.ws)
    handles, targets = m.to_model([(52.0, 20.0)]), m.to_model([(58.0, 22.0)])
    s.set_points(handles, targets)
    s.set_mask(m.mask_to_model(np.ones(layer.shape[:2], bool)))  # editable = the content, not the padding
    list(s.run(max_steps=2))
    back = m.to_layer(s.handle_list())
    assert len(back) == 1 and region.x - 1 <= back[0][0] <= region.right
    out = composite(layer, m, s.image(), reference=reference, feather=2)
    assert out.layer.shape == layer.shape
    outside = np.ones(layer.shape[:2], bool)
    outside[region.slices] = False
    assert (out.layer[outside] == layer[outside]).all() and (out.layer[..., 3] == layer[..., 3]).all()
    key = session_key(m.crop(layer), G, inv.config)
    assert key == session_key(layer[region.slices].copy(), G, inv.config)
