"""The demo model's training script: reproducible, resumable, exports a loadable model, grows one, edge losses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from draggan_core import ops
from draggan_core.checkpoint import load_generator
from draggan_core.demo import train
from draggan_core.demo.grow import grow, grown_config
from draggan_core.demo.objective import Objective, gradient_l1, laplacian_pyramid_l1
from draggan_core.demo.targets import TargetRenderer
from draggan_core.formats import native
from draggan_core.losses import reconstruction_loss
from draggan_core.stylegan2 import Generator


def _train(workdir, iters: int, *extra: str) -> None:
    assert train.main(["--workdir", str(workdir), "--iters", str(iters), "--batch", "2", "--save-every", "1",
                       *extra]) == 0


def _weights(workdir) -> dict[str, torch.Tensor]:
    return torch.load(workdir / "state.pt", weights_only=True)["G_ema"]


def test_resumed_training_equals_one_straight_run(tmp_path):
    _train(tmp_path / "straight", 3)
    _train(tmp_path / "resumed", 2)
    _train(tmp_path / "resumed", 3)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    state = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert state["iteration"] == 3 and [e["iteration"] for e in state["log"]] == [1, 2, 3]


def test_learning_rate_decays_linearly_to_a_tenth_over_the_last_iterations():
    assert [train.lr_scale(i, 100, 10) for i in (0, 90, 95, 100)] == [1.0, 1.0, 0.55, 0.1]
    assert train.lr_scale(99, 100, 0) == 1.0  # no decay asked


def test_a_run_interrupted_during_the_decay_resumes_exactly(tmp_path):
    def run(workdir, until: int) -> train.Trainer:
        workdir.mkdir(exist_ok=True)
        t = train.Trainer(workdir, 0, 2e-3, 2, 0.998)
        t.load()
        while t.iteration < until:
            t.set_lr_scale(train.lr_scale(t.iteration, 4, 3))
            t.step()
        t.save()
        return t

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4)
    assert [g["lr"] for g in resumed.opt.param_groups] == [g["lr"] for g in straight.opt.param_groups]
    a, b = straight.G_ema.state_dict(), resumed.G_ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_changes_the_model_and_a_different_seed_changes_it_differently(tmp_path):
    _train(tmp_path / "a", 1)
    _train(tmp_path / "b", 1, "--seed", "1")
    start = train.Trainer(tmp_path / "fresh", 0, 2e-3, 2, 0.998).G.state_dict()
    a, b = torch.load(tmp_path / "a" / "state.pt", weights_only=True)["G"], \
        torch.load(tmp_path / "b" / "state.pt", weights_only=True)["G"]
    assert not torch.equal(a["synthesis.b4.const"], start["synthesis.b4.const"])
    assert not torch.equal(a["synthesis.b4.const"], b["synthesis.b4.const"])


def test_mapping_network_learns_despite_its_lr_multiplier(tmp_path):
    """Without the boost the mapping barely moves (StyleGAN's 0.01 multiplier); with it, it moves as much as the rest."""
    def mapping_change(boost: str) -> float:
        workdir = tmp_path / boost
        _train(workdir, 2, "--mapping-lr-boost", boost, "--ema-beta", "0")
        start = train.Trainer(workdir, 0, 2e-3, 2, 0.998).G.mapping.fc0
        end = torch.load(workdir / "state.pt", weights_only=True)["G"]
        return float(((end["mapping.fc0.weight"] - start.weight.detach()) * start.weight_gain).abs().max())

    assert mapping_change("100") > 50 * mapping_change("1")


def test_export_is_a_loadable_demo_model_that_counts_the_history_it_started_from(tmp_path):
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    _train(tmp_path / "one", 2, "--export", str(first))
    _train(tmp_path / "two", 1, "--init-from", str(first), "--export", str(second))
    meta = native.read_metadata(str(second))
    assert meta["name"] == "demo" and meta["trained_iterations"] == "3"
    G = load_generator(str(second))
    assert G.img_resolution == train.DEMO_CONFIG.img_resolution
    assert torch.isfinite(G.mapping.w_avg).all() and G.mapping.w_avg.abs().sum() > 0


def _images(G, seed: int = 0):
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.synthesis(G.mapping(z), noise_mode="const")


def test_a_widened_model_draws_the_same_images_and_can_learn_with_its_new_channels():
    G = Generator(train.DEMO_CONFIG).eval()
    wide = grow(G, grown_config(G.cfg, channel_base=4096)).eval()
    assert wide.synthesis.b128.conv1.weight.shape[:2] == (32, 32)  # was 16: the 32-128 px blocks doubled
    assert torch.allclose(_images(G), _images(wide), atol=1e-5)


def test_a_model_grown_to_256_px_draws_its_128_px_image_upsampled():
    G = Generator(train.DEMO_CONFIG).eval()
    big = grow(G, grown_config(G.cfg, resolution=256, channel_base=4096)).eval()
    assert big.img_resolution == 256 and big.num_ws == G.num_ws + 2
    expected = ops.upsample2d(_images(G), G.synthesis.b128.resample_filter)
    assert torch.allclose(_images(big), expected, atol=1e-5)


def test_growing_refuses_to_shrink():
    with pytest.raises(ValueError, match="narrow"):
        grown_config(train.DEMO_CONFIG, channel_base=1024)
    with pytest.raises(ValueError, match="resolution"):
        grown_config(train.DEMO_CONFIG, resolution=64)


def test_the_default_objective_is_the_shipped_models_loss_and_the_edge_terms_see_only_edges():
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(Objective()(x, y), reconstruction_loss(x, y))
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert float(gradient_l1(flat - 0.1)) == 0 and float(laplacian_pyramid_l1(flat - 0.1)) < 1e-6  # an offset
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 1
    shifted = torch.roll(edge, 1, dims=-1)
    assert float(gradient_l1(edge - shifted)) > 0 and float(laplacian_pyramid_l1(edge - shifted)) > 0
    loss = Objective(gradient_weight=1, laplacian_weight=1)
    assert float(loss(edge, shifted)) > float(Objective()(edge, shifted))


def test_init_from_grows_the_model_and_the_run_keeps_its_size(tmp_path, capsys):
    first = tmp_path / "first.safetensors"
    _train(tmp_path / "one", 1, "--export", str(first))
    _train(tmp_path / "wide", 2, "--init-from", str(first), "--channel-base", "4096", "--gradient-weight", "1",
           "--laplacian-weight", "0.5", "--export-every", "2")
    exported = tmp_path / "wide" / "model.safetensors"  # --export-every: a usable model inside the workdir
    G = load_generator(str(exported))
    assert G.cfg.channel_base == 4096 and native.read_metadata(str(exported))["trained_iterations"] == "3"
    assert train.saved_config(tmp_path / "wide").channel_base == 4096
    _train(tmp_path / "wide", 3)  # resumed without repeating the size: the saved config is used
    assert torch.load(tmp_path / "wide" / "state.pt", weights_only=True)["iteration"] == 3
    with pytest.raises(SystemExit):  # another size in the same workdir is refused
        _train(tmp_path / "wide", 4, "--channel-base", "8192")
    capsys.readouterr()
    assert train.main(["--evaluate", str(exported)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"l1", "ssim"} and metrics["l1"] > 0 and -1 <= metrics["ssim"] <= 1


def test_targets_rendered_in_worker_processes_equal_those_rendered_in_process():
    params = train.params_from_z(torch.randn(5, 32, generator=torch.Generator().manual_seed(3))).numpy()
    with TargetRenderer(64, workers=2) as pool:
        assert torch.equal(pool(params), TargetRenderer(64)(params))


def test_a_run_with_render_workers_trains_the_same_weights(tmp_path):
    _train(tmp_path / "inline", 2)
    _train(tmp_path / "workers", 2, "--render-workers", "2")
    inline, workers = _weights(tmp_path / "inline"), _weights(tmp_path / "workers")
    assert all(torch.equal(inline[k], workers[k]) for k in inline)


def test_a_run_bounded_by_minutes_stops_on_time_and_saves_its_state(tmp_path):
    # 0.001 minutes is 60 ms: a few iterations at most, nowhere near 10,000 on any machine
    _train(tmp_path / "timed", 10_000, "--minutes", "0.001")
    state = torch.load(tmp_path / "timed" / "state.pt", weights_only=True)
    assert 1 <= state["iteration"] < 10_000
    assert state["log"][-1]["iteration"] == state["iteration"]


def test_the_decay_of_a_timed_run_follows_the_clock():
    assert [train.time_lr_scale(t, 600, 60) for t in (0, 540, 570, 600)] == [1.0, 1.0, 0.55, 0.1]
    assert train.time_lr_scale(599, 600, 0) == 1.0


def test_the_gpu_training_script_runs_on_the_cpu_and_exports_a_model_that_continues_the_shipped_one(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "MINUTES": "0.02", "BATCH": "2", "WORKERS": "2",
           "OUT": str(tmp_path / "out"), "WORKDIR": str(tmp_path / "run"), "PYTHON": sys.executable}
    done = subprocess.run([str(root / "scripts" / "train_demo_gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    exported = tmp_path / "out" / "demo_model.safetensors"
    shipped = native.read_metadata(str(root / "draggan_core" / "demo" / "demo_model.safetensors"))
    meta = native.read_metadata(str(exported))
    assert int(meta["trained_iterations"]) > int(shipped["trained_iterations"])
    assert load_generator(str(exported)).img_resolution == 128
    assert "render workers 2" in (tmp_path / "out" / "device.txt").read_text()
