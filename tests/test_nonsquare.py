"""Non-square StyleGAN2 generators (StyleGAN-Human layout: a 4x2 first layer, images twice as tall as wide).

Loading in NVIDIA's layout, generating and dragging in the native geometry through the Python
API and the command line: points, masks, previews and results are all H x W = 2W x W.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import make_generator
from draggan_core import cli as core_cli
from draggan_core import load_generator, registry
from draggan_core.drag import DragConfig, DragSession, FeatureField
from draggan_core.formats import native, nvidia, safe_pickle

H, W = 64, 32


@pytest.fixture(scope="module")
def G():
    return make_generator(seed=21, img_resolution=H, init_res=(4, 2), channel_base=1024, channel_max=32, z_dim=24,
                          w_dim=24)


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_official_layout_round_trip(tmp_path, G, layout):
    path = tmp_path / "stylegan_human.pkl"
    nvidia.write(G, path, layout=layout)
    with open(path, "rb") as f:
        sd = nvidia.state_dict_of(safe_pickle.load(f)["G_ema"])
    assert list(sd) == list(G.state_dict())
    assert tuple(sd["synthesis.b4.const"].shape) == (32, 4, 2)
    assert tuple(sd["synthesis.b4.conv1.noise_const"].shape) == (4, 2)
    assert tuple(sd["synthesis.b64.conv1.noise_const"].shape) == (64, 32)
    assert tuple(sd["synthesis.b64.torgb.weight"].shape) == (3, G.synthesis.b64.torgb.weight.shape[1], 1, 1)
    Hd = load_generator(path)
    assert Hd.cfg == G.cfg and Hd.cfg.init_res == (4, 2) and Hd.img_size == (H, W)
    for k, v in G.state_dict().items():
        assert torch.equal(Hd.state_dict()[k], v), k
    z = torch.randn(1, G.z_dim)
    img = Hd(z, truncation_psi=0.7)
    assert img.shape == (1, 3, H, W) and torch.equal(img, G(z, truncation_psi=0.7))
    out = tmp_path / "g.safetensors"
    native.write(G, out)
    assert json.loads(native.read_metadata(out)["config"])["flavour"] == "stylegan2"
    assert load_generator(out).img_size == (H, W)


def test_feature_field_on_a_rectangular_map():
    fmap = torch.randn(1, 4, 16, 8)
    field = FeatureField(fmap, (H, W))
    full = F.interpolate(fmap, size=(H, W), mode="bilinear", align_corners=False)
    xy = torch.tensor([[0.0, 0.0], [31, 63], [5, 40], [30, 2]])
    assert torch.allclose(field.sample(xy), full[0, :, xy[:, 1].long(), xy[:, 0].long()].t(), atol=1e-6)


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_drag_in_the_native_geometry(G, path):
    s = DragSession(G, 4, config=DragConfig(stall_steps=0, path=path, learning_rate=5e-3))
    assert s.size == (H, W)
    with pytest.raises(ValueError, match="outside"):
        s.set_points([(40, 10)], [(10, 10)])  # inside a square of the height, outside this image
    s.set_points([(25, 50), (8, 10)], [(29, 46), (8, 16)])  # near the right edge and low down
    with pytest.raises(ValueError, match="mask"):
        s.set_mask(np.ones((H, H), bool))
    mask = np.zeros((H, W), bool)
    mask[30:, 16:] = True
    mask[:24, :16] = True
    s.set_mask(mask)
    before = s.latent()
    steps = list(s.run(max_steps=3, preview_every=3))
    assert len(steps) == 3 and steps[-1].preview.shape == (1, 3, H, W)
    assert not torch.equal(s.latent(), before)
    assert s.image().shape == (1, 3, H, W)


def test_cli_generate_and_drag(tmp_path, G):
    model = tmp_path / "human.pkl"
    nvidia.write(G, model)
    mask = np.zeros((H, W), np.uint8)
    mask[20:60, 4:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out, traj, gif = tmp_path / "out.png", tmp_path / "t.json", tmp_path / "v.gif"
    res = subprocess.run([sys.executable, "-m", "backend.cli", "drag", "--model", str(model), "--seed", "3",
                          "--points", "20,50:24,46", "--steps", "3", "--mask", str(tmp_path / "mask.png"),
                          "--out", str(out), "--trajectory", str(traj), "--video", str(gif), "--preview-every", "3",
                          "--device", "cpu"],
                         capture_output=True, text=True, env={**os.environ, "DRAGGAN_MODELS": str(tmp_path)},
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert np.asarray(Image.open(out)).shape == (H, W, 3)
    assert Image.open(gif).size == (2 * W, 2 * H)
    assert len(json.loads(traj.read_text())["steps"]) == 3
    gen = tmp_path / "gen.png"
    assert core_cli.main(["generate", "--model", str(model), "--seed", "3", "--out", str(gen), "--device", "cpu"]) == 0
    assert np.asarray(Image.open(gen)).shape == (H, W, 3)
    Image.fromarray(np.zeros((H, H), np.uint8)).save(tmp_path / "square.png")
    assert core_cli.main(["drag", "--model", str(model), "--points", "20,50:24,46", "--steps", "1",
                          "--mask", str(tmp_path / "square.png"), "--out", str(out), "--device", "cpu"]) == 1


def test_registry_lists_stylegan3_and_stylegan_human():
    for c in ("t", "r"):
        for name, res in (("ffhq-1024x1024", 1024), ("ffhqu-1024x1024", 1024), ("ffhqu-256x256", 256),
                          ("metfaces-1024x1024", 1024), ("metfacesu-1024x1024", 1024), ("afhqv2-512x512", 512)):
            info = registry.ZOO[f"stylegan3-{c}-{name}"]
            assert info.url == ("https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
                                f"stylegan3-{c}-{name}.pkl")
            assert info.resolution == res and info.size_text == f"{res}x{res}" and "NC" in info.licence
            assert info.size is None and info.sha256 is None
    for name, h in (("stylegan_human_v2_512", 512), ("stylegan_human_v2_1024", 1024)):
        info = registry.ZOO[name]
        assert (info.resolution, info.width, info.size_text) == (h, h // 2, f"{h // 2}x{h}")
        assert info.url is None and "Google Drive" in info.note and info.filename == f"{name}.pkl"
    res = core_cli.main(["models", "download", "stylegan_human_v2_512", "--dir", "/nonexistent"])
    assert res == 1
