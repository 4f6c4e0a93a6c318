"""The drag engine's pieces against hand arithmetic, and the session's behaviour."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_generator
from draggan_core.drag import (DragConfig, DragSession, FeatureField, default_feature_block, disk_offsets,
                               motion_loss, stop_distance_for, track_points)


def field_of(fmap, dense=False):
    return FeatureField(fmap, tuple(fmap.shape[2:]), dense=dense)


def test_sparse_sampling_equals_resizing_at_pixels():
    fmap = torch.randn(1, 5, 8, 8)
    field = FeatureField(fmap, (32, 32))
    full = F.interpolate(fmap, size=(32, 32), mode="bilinear", align_corners=False)
    xy = torch.tensor([[0.0, 0.0], [31, 31], [7, 19], [30, 2]])
    expected = full[0, :, xy[:, 1].long(), xy[:, 0].long()].t()
    assert torch.allclose(field.sample(xy), expected, atol=1e-6)
    dense = FeatureField(fmap, (32, 32), dense=True)
    assert torch.allclose(dense.sample(xy), expected, atol=1e-6)


def test_motion_loss_and_gradient_by_hand():
    torch.manual_seed(0)
    fmap = torch.randn(1, 4, 16, 16, requires_grad=True)
    handles, targets = torch.tensor([[6.0, 7.0]]), torch.tensor([[12.0, 7.0]])  # d = (1, 0)
    offsets = disk_offsets(1.0)  # centre and 4 neighbours
    assert sorted(map(tuple, offsets.tolist())) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    loss = motion_loss(field_of(fmap), handles, targets, offsets)
    f = fmap[0]
    qs = [(6 + dx, 7 + dy) for dx, dy in offsets.long().tolist()]
    expected = torch.stack([(f[:, y, x + 1] - f[:, y, x]).abs() for x, y in qs]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    (grad,) = torch.autograd.grad(loss, fmap)
    # Gradient flows only into the shifted samples q + d, with sign(F(q+d) - sg(F(q))) / (K * C).
    expected_grad = torch.zeros_like(f)
    for x, y in qs:
        expected_grad[:, y, x + 1] += torch.sign(f[:, y, x + 1] - f[:, y, x]).detach() / (len(qs) * 4)
    assert torch.allclose(grad[0], expected_grad, atol=1e-6)


def test_motion_loss_fractional_direction_uses_bilinear_samples():
    torch.manual_seed(1)
    fmap = torch.randn(1, 3, 12, 12)
    handles, targets = torch.tensor([[5.0, 5.0]]), torch.tensor([[8.0, 9.0]])  # d = (0.6, 0.8)
    loss = motion_loss(field_of(fmap), handles, targets, torch.zeros(1, 2))
    f = fmap[0]
    x, y = 5.6, 5.8
    bil = (f[:, 5, 5] * 0.4 * 0.2 + f[:, 5, 6] * 0.6 * 0.2 + f[:, 6, 5] * 0.4 * 0.8 + f[:, 6, 6] * 0.6 * 0.8)
    assert torch.allclose(loss, (bil - f[:, 5, 5]).abs().mean(), atol=1e-5)
    del x, y


def test_points_near_their_target_are_not_supervised_and_losses_sum():
    fmap = torch.randn(1, 3, 16, 16)
    offsets = disk_offsets(2)
    h = torch.tensor([[4.0, 4.0], [10.0, 10.0]])
    t = torch.tensor([[4.5, 4.0], [10.0, 3.0]])
    both = motion_loss(field_of(fmap), h, t, offsets)
    second = motion_loss(field_of(fmap), h[1:], t[1:], offsets)
    assert torch.allclose(both, second)
    first_far = motion_loss(field_of(fmap), h[:1], torch.tensor([[9.0, 4.0]]), offsets)
    joint = motion_loss(field_of(fmap), h, torch.tensor([[9.0, 4.0], [10.0, 3.0]]), offsets)
    assert torch.allclose(joint, first_far + second)


@pytest.mark.parametrize("true_xy,start_xy", [((9, 7), (12, 5)), ((0, 5), (2, 5)), ((19, 19), (16, 17)),
                                              ((3, 0), (3, 3))])
def test_tracking_finds_the_known_match_including_borders(true_xy, start_xy):
    torch.manual_seed(2)
    fmap = torch.randn(1, 8, 20, 20)
    template = fmap[0, :, true_xy[1], true_xy[0]][None]
    found = track_points(field_of(fmap), torch.tensor([start_xy], dtype=torch.float32), template, r2=4)
    assert found.tolist() == [list(map(float, true_xy))]


def test_tracking_is_vectorised_over_points():
    torch.manual_seed(3)
    fmap = torch.randn(1, 8, 24, 24)
    starts = torch.tensor([[5.0, 5.0], [15.0, 12.0], [20.0, 3.0]])
    templates = torch.stack([fmap[0, :, 7, 4], fmap[0, :, 10, 17], fmap[0, :, 1, 23]])
    together = track_points(field_of(fmap), starts, templates, r2=3)
    apart = torch.cat([track_points(field_of(fmap), s[None], t[None], r2=3) for s, t in zip(starts, templates)])
    assert torch.equal(together, apart)
    assert together.tolist() == [[4.0, 7.0], [17.0, 10.0], [23.0, 1.0]]


def test_stop_rule():
    assert stop_distance_for(5, 512) == 1 and stop_distance_for(6, 512) == 2
    assert stop_distance_for(1, 128) == 1 and stop_distance_for(2, 1024) == 2


def test_mask_term_only_outside_the_editable_region():
    fmap = torch.randn(1, 3, 8, 8, requires_grad=True)
    reference = field_of(fmap.detach() + 1)
    editable = torch.zeros(8, 8)
    editable[2:6, 2:6] = 1
    loss = field_of(fmap).masked_l1(reference, 1 - editable)
    (grad,) = torch.autograd.grad(loss, fmap)
    assert torch.all(grad[0, :, 2:6, 2:6] == 0)
    assert torch.all(grad[0, :, :2] != 0)
    assert torch.allclose(loss, torch.tensor(1.0))  # mean over the fixed pixels only


@pytest.fixture(scope="module")
def G():
    return make_generator(seed=5, img_resolution=64, channel_base=2048, channel_max=48, z_dim=32, w_dim=32)


def test_default_feature_block():
    assert default_feature_block(make_generator(img_resolution=32)) == 3  # small models: the last block
    from draggan_core import Generator, GeneratorConfig
    big = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=256, channel_base=256, channel_max=8,
                                    mapping_layers=1))
    assert big.synthesis.block_resolutions[default_feature_block(big)] == 128


def test_run_is_deterministic_and_reports_every_step(G):
    def trajectory():
        s = DragSession(G, 7, config=DragConfig(stall_steps=0))
        s.set_points([(20, 30), (40, 20)], [(28, 30), (40, 12)])
        steps = list(s.run(max_steps=8, preview_every=4))
        return steps, s.latent()

    a, la = trajectory()
    b, lb = trajectory()
    assert [s.handles for s in a] == [s.handles for s in b]
    assert torch.equal(la, lb)
    assert [s.step for s in a] == list(range(1, 9)) and a[-1].reason == "max_steps"
    assert a[3].preview is not None and a[0].preview is None and a[-1].preview.shape == (1, 3, 64, 64)


def test_reached_stops_without_touching_the_latent(G):
    s = DragSession(G, 3)
    s.set_points([(20, 20)], [(20, 20)])
    before = s.latent()
    steps = list(s.run(max_steps=5))
    assert len(steps) == 1 and steps[0].reason == "reached"
    assert torch.equal(s.latent(), before)


def test_only_the_first_w_rows_move(G):
    s = DragSession(G, 4, config=DragConfig(w_layers=3))
    s.set_points([(10, 10)], [(30, 30)])
    before = s.latent()
    list(s.run(max_steps=3))
    after = s.latent()
    assert not torch.equal(after[:, :3], before[:, :3])
    assert torch.equal(after[:, 3:], before[:, 3:])


def test_stop_and_continue_keeps_templates_of_unmoved_points(G):
    s = DragSession(G, 5, config=DragConfig(stall_steps=0))
    s.set_points([(20, 20)], [(40, 20)])
    for step in s.run(max_steps=50):
        if step.step == 3:
            break  # the caller stops: the session keeps the state of step 3
    tracked = s.handle_list()
    template = s.templates[0].clone()
    s.set_points(tracked + [(50, 50)], [(40, 20), (50, 40)])
    assert torch.equal(s.templates[0], template)
    more = list(s.run(max_steps=2))
    assert len(more[-1].handles) == 2


def test_should_stop_callback(G):
    s = DragSession(G, 6, config=DragConfig(stall_steps=0))
    s.set_points([(20, 20)], [(40, 40)])
    steps = list(s.run(max_steps=50, should_stop=lambda: True))
    assert len(steps) == 1 and steps[0].reason == "stopped" and steps[0].preview is not None


def test_bad_input_is_refused(G):
    s = DragSession(G, 1)
    with pytest.raises(ValueError, match="outside"):
        s.set_points([(70, 10)], [(10, 10)])
    with pytest.raises(ValueError, match="same"):
        s.set_points([(1, 1)], [])
    with pytest.raises(ValueError, match="mask"):
        s.set_mask(np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="latent"):
        DragSession(G, torch.zeros(1, 3, 5))


def test_full_or_empty_mask_means_no_mask_term(G):
    s = DragSession(G, 1)
    s.set_mask(np.ones((64, 64), bool))
    assert s.fixed is None
    s.set_mask(np.zeros((64, 64), np.uint8))
    assert s.fixed is None
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 10:30] = 255
    s.set_mask(m)
    assert s.fixed is not None and float(s.fixed[20, 20]) == 0 and float(s.fixed[0, 0]) == 1


def test_fast_and_reference_paths_follow_the_same_trajectory():
    """On a 256-px model the feature block (128 px) is resized; the two samplings agree closely."""
    G = make_generator(seed=8, img_resolution=256, channel_base=1024, channel_max=16, z_dim=16, w_dim=16)
    runs = {}
    for path in ("fast", "reference"):
        s = DragSession(G, 2, config=DragConfig(path=path, stall_steps=0))
        s.set_points([(100, 120)], [(130, 120)])
        runs[path] = (list(s.run(max_steps=4)), s.latent())
    (fast, lf), (ref, lr) = runs["fast"], runs["reference"]
    assert [s.handles for s in fast] == [s.handles for s in ref]
    for a, b in zip(fast, ref):
        assert abs(a.loss - b.loss) <= 0.05 * abs(b.loss) + 1e-6
    assert (lf - lr).abs().max() < 0.05 * (lr.abs().max())


def test_stall_rule():
    from draggan_core.drag import _StallCounter
    c = _StallCounter(3)
    assert [c.update(d) for d in (10, 9.8, 9.7, 9.6)] == [False, False, False, True]
    c = _StallCounter(3)
    assert not any(c.update(d) for d in (10, 9.4, 8.8, 8.2, 7.6))  # steady progress is never a stall
    assert not any(_StallCounter(0).update(5) for _ in range(10))
