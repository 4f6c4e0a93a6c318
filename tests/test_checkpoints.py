"""Every supported checkpoint format: written in its official layout, loaded back exactly, and safely."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import make_generator
from draggan_core import CheckpointError, load_generator
from draggan_core.formats import native, nvidia, rosinality, safe_pickle, tf_legacy
from draggan_core.formats.safe_pickle import PersistentObject


def assert_same_weights(G, H, exact=True, skip=()):
    a, b = G.state_dict(), H.state_dict()
    assert list(a) == list(b)
    for k in a:
        if k in skip:
            continue
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_nvidia_pickle_round_trip(tmp_path, layout):
    G = make_generator(seed=1, num_fp16_res=2, conv_clamp=256)
    path = tmp_path / "net.pkl"
    nvidia.write(G, path, layout=layout)
    H = load_generator(path)
    assert H.checkpoint_format == "nvidia-pickle"
    assert H.cfg == G.cfg
    assert_same_weights(G, H)
    assert [b.use_fp16 for b in H.synthesis.blocks()] == [False, False, True, True]


def test_nvidia_generator_only_and_resnet(tmp_path):
    G = make_generator(seed=2, architecture="resnet", img_resolution=64, channel_base=1024, channel_max=40)
    path = tmp_path / "g_only.pkl"
    nvidia.write(G, path, generator_only=True)
    H = load_generator(path)
    assert H.cfg.architecture == "resnet" and H.cfg.img_resolution == 64
    assert_same_weights(G, H)
    z = torch.randn(1, G.z_dim)
    assert torch.equal(G(z), H(z))


def test_nvidia_layout_defaults_when_settings_are_absent():
    """Settings nowhere in the file take each code base's defaults: flat (stylegan3 repo) means fp16 on
    4 resolutions and clamp 256, nested (stylegan2-ada) means fp32 and no clamp."""
    def strip(obj):
        for key in ("use_fp16", "conv_clamp"):
            obj.state.pop(key, None)
        kwargs = obj.state.get("_init_kwargs", {})
        for d in (kwargs, kwargs.get("synthesis_kwargs", {})):
            d.pop("num_fp16_res", None)
            d.pop("conv_clamp", None)
        for child in obj.state.get("_modules", {}).values():
            strip(child)

    G = make_generator(seed=3)
    for layout, expected in (("flat", (4, 256.0)), ("nested", (0, None))):
        buf = io.BytesIO()
        nvidia.write(G, buf, layout=layout)
        data = safe_pickle.loads(buf.getvalue())
        strip(data["G_ema"])
        hints = nvidia.config_hints(data["G_ema"])
        assert (hints["num_fp16_res"], hints["conv_clamp"]) == expected


def test_tensorflow_pickle_converts_to_official_names(tmp_path):
    G = make_generator(seed=4, img_resolution=32)
    path = tmp_path / "tf.pkl"
    tf_legacy.write(G, path)
    H = load_generator(path)
    assert H.checkpoint_format == "tensorflow-pickle"
    # mod_bias is stored minus one, so the style biases round-trip to float precision; all else exactly.
    assert_same_weights(G, H, skip=[k for k in G.state_dict() if k.endswith("affine.bias")])
    assert_same_weights(G, H, exact=False)
    with open(path, "rb") as f:
        Gs = safe_pickle.load(f)[2]
    tf = dict(Gs["components"]["synthesis"]["variables"])
    # Up-sampling kernels are stored transposed and flipped, per the documented conversion.
    expected = torch.from_numpy(tf["8x8/Conv0_up/weight"].transpose(3, 2, 0, 1)).flip([2, 3])
    assert torch.equal(H.synthesis.b8.conv0.weight, expected)
    assert torch.equal(H.synthesis.b4.conv1.affine.bias, torch.from_numpy(tf["4x4/Conv/mod_bias"] + 1))


def test_tensorflow_progressive_growing_is_refused(tmp_path):
    G = make_generator(seed=4)
    v = tf_legacy.tf_variables(G)
    v["synthesis"]["ToRGB_lod0/weight"] = np.zeros((1, 1, 8, 3), np.float32)
    syn = tf_legacy._network("G_synthesis", v["synthesis"], {})
    Gs = tf_legacy._network("G", v["G"], {}, {"mapping": tf_legacy._network("G_mapping", v["mapping"], {}),
                                               "synthesis": syn})
    path = tmp_path / "lod.pkl"
    path.write_bytes(nvidia.dumps_official((Gs, Gs, Gs)))
    with pytest.raises(CheckpointError, match="ToRGB_lod"):
        load_generator(path)


@pytest.mark.parametrize("with_avg", [True, False])
def test_rosinality_round_trip(tmp_path, with_avg):
    G = make_generator(seed=5)
    path = tmp_path / "ros.pt"
    rosinality.write(G, path, with_latent_avg=with_avg)
    H = load_generator(path)
    assert H.checkpoint_format == "rosinality"
    if with_avg:
        assert_same_weights(G, H)
    else:
        assert_same_weights(G, H, skip=["mapping.w_avg"])
        assert not torch.equal(H.mapping.w_avg, torch.zeros_like(H.mapping.w_avg))  # estimated from samples


def test_native_round_trip_and_metadata(tmp_path):
    G = make_generator(seed=6, init_res=(4, 2))
    path = tmp_path / "g.safetensors"
    native.write(G, path, metadata={"name": "tiny"})
    H = load_generator(path)
    assert H.cfg == G.cfg and H.checkpoint_format == "draggan-safetensors"
    assert_same_weights(G, H)
    assert native.read_metadata(path)["name"] == "tiny"


def test_same_images_from_every_format(tmp_path):
    G = make_generator(seed=7)
    files = {"a.pkl": lambda p: nvidia.write(G, p), "b.pkl": lambda p: tf_legacy.write(G, p),
             "c.pt": lambda p: rosinality.write(G, p), "d.safetensors": lambda p: native.write(G, p)}
    z = torch.randn(1, G.z_dim)
    ref = G(z, truncation_psi=0.7)
    for name, write in files.items():
        write(tmp_path / name)
        img = load_generator(tmp_path / name)(z, truncation_psi=0.7)
        assert torch.allclose(img, ref, atol=1e-5), name


# ----------------------------------------------------------------------------------- safety


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def test_embedded_module_source_is_never_executed(tmp_path, capsys):
    marker = tmp_path / "executed"
    src = f"open({str(marker)!r}, 'w').write('x')\nprint('EMBEDDED CODE RAN')\nraise SystemExit(3)\n"
    G = make_generator(seed=8)
    path = tmp_path / "src.pkl"
    nvidia.write(G, path, module_src=src)
    H = load_generator(path)
    assert_same_weights(G, H)
    assert not marker.exists()
    assert "EMBEDDED CODE RAN" not in capsys.readouterr().out


@pytest.mark.parametrize("func,name", [(os.system, "system"), (eval, "builtins.eval"), (exec, "builtins.exec"),
                                       (getattr, "builtins.getattr"), (subprocess.check_call, "subprocess.check_call")])
def test_forbidden_globals_are_refused_by_name(tmp_path, func, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    payload = {"G_ema": _Evil(func, f"touch {marker}" if func is os.system else "1")}
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as err:
        load_generator(path)
    assert "not allowed" in str(err.value)
    assert not marker.exists()


def test_pickle_inside_a_torch_zip_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(os.system, "true")}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(path)


def test_persistent_class_other_than_the_stub_is_refused():
    with pytest.raises(safe_pickle.UnsafePickleError, match="torch_utils.persistence.persistent_class"):
        safe_pickle.loads(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x17torch_utils.persistence"
                          b"\x94\x8c\x10persistent_class\x94\x93\x94.")


@pytest.mark.parametrize("content,match", [
    (b"", "unsupported"), (b"hello world, not a model", "unsupported"),
    (b"\x80\x04\x95\x10\x00\x00", "broken pickle"), (b"PK\x03\x04garbage", "broken torch file"),
])
def test_broken_files_are_refused_with_a_reason(tmp_path, content, match):
    path = tmp_path / "broken.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_generator(path)


def test_truncated_real_pickle_is_refused(tmp_path):
    G = make_generator(seed=9)
    buf = io.BytesIO()
    nvidia.write(G, buf)
    path = tmp_path / "cut.pkl"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_unsupported_architectures_are_refused(tmp_path):
    G = make_generator(seed=10)
    buf = io.BytesIO()
    nvidia.write(G, buf)
    data = safe_pickle.loads(buf.getvalue())
    data["G_ema"].state["_modules"]["synthesis"].state["_modules"]["input"] = PersistentObject(
        {"type": "class", "version": 6, "class_name": "SynthesisInput", "state": {}})
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        nvidia.generator_from_data(data)
    data = safe_pickle.loads(buf.getvalue())
    data["G_ema"].state["c_dim"] = 10
    with pytest.raises(CheckpointError, match="conditional"):
        nvidia.generator_from_data(data)


def test_missing_file():
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_generator("/nonexistent/model.pkl")


# ----------------------------------------------------------------------------------- CLI


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_cli_generates_a_png_from_each_format(tmp_path):
    from PIL import Image
    G = make_generator(seed=11)
    writers = {"n.pkl": lambda p: nvidia.write(G, p, layout="flat"), "t.pkl": lambda p: tf_legacy.write(G, p),
               "r.pt": lambda p: rosinality.write(G, p), "s.safetensors": lambda p: native.write(G, p)}
    images = []
    for name, write in writers.items():
        write(tmp_path / name)
        out = tmp_path / f"{name}.png"
        res = run_cli("generate", "--model", str(tmp_path / name), "--seed", "3", "--out", str(out))
        assert res.returncode == 0, res.stderr
        images.append(np.asarray(Image.open(out)))
    assert images[0].shape == (32, 32, 3)
    for img in images[1:]:
        assert np.abs(img.astype(int) - images[0]).max() <= 1


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Evil(os.system, "true")}, protocol=4))
    cases = [
        (["generate", "--model", str(tmp_path / "missing.pkl"), "--seed", "1", "--out", "x.png"], "unknown model"),
        (["generate", "--model", str(evil), "--seed", "1", "--out", "x.png"], "posix.system"),
    ]
    for args, expected in cases:
        res = run_cli(*args)
        assert res.returncode == 1
        assert "Traceback" not in res.stderr and expected in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    res = run_cli("generate", "--seed", "notanumber", "--out", "x.png")
    assert res.returncode == 2 and "Traceback" not in res.stderr
