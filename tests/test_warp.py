"""The warp target (draggan_core/warp.py) and the search that finds handles after a warp fit."""
from __future__ import annotations

import torch

from draggan_core.tracking import search_between
from draggan_core.drag import FeatureField
from draggan_core.warp import displacement_at, displacement_field, warp_map


def test_a_lone_drag_moves_every_pixel_with_it():
    field = displacement_field((20, 30), torch.tensor([[5.0, 5.0]]), torch.tensor([[8.0, 1.0]]))
    assert field.shape == (20, 30, 2)
    assert torch.allclose(field, torch.tensor([3.0, -4.0]).expand(20, 30, 2))


def test_a_held_point_pins_its_surroundings_and_the_motion_blends_between():
    handles = torch.tensor([[10.0, 10.0], [50.0, 10.0]])
    targets = torch.tensor([[10.0, 20.0], [50.0, 10.0]])  # the second is held (handle = target)
    field = displacement_field((21, 61), handles, targets)
    assert field[10, 10, 1] > 9.5 and field[10, 50].abs().max() < 0.5  # at the drag ~ its vector, at the hold ~ 0
    assert 4.0 < field[10, 30, 1] < 6.0  # half way: half the motion
    assert torch.all(field[..., 0].abs() < 1e-6)  # nothing asked for horizontal motion


def test_an_editable_mask_keeps_held_pixels_still():
    editable = torch.zeros(16, 16)
    editable[:, :8] = 1
    field = displacement_field((16, 16), torch.tensor([[4.0, 4.0]]), torch.tensor([[6.0, 4.0]]), editable)
    assert torch.all(field[:, 8:] == 0) and torch.allclose(field[:, :8, 0], torch.full((16, 8), 2.0))


def test_the_warp_shifts_content_by_the_field():
    image = torch.zeros(1, 1, 32, 32)
    image[0, 0, 10:14, 8:12] = 1.0
    field = displacement_field((32, 32), torch.tensor([[9.0, 11.0]]), torch.tensor([[14.0, 13.0]]))  # (+5, +2)
    moved = warp_map(image, field)
    expected = torch.zeros(1, 1, 32, 32)
    expected[0, 0, 12:16, 13:17] = 1.0
    assert torch.allclose(moved, expected, atol=1e-5)


def test_the_backward_warp_inverts_a_varying_field():
    """Where the motion varies, output pixel p shows the input at s with s + field(s) = p (not p - field(p))."""
    handles = torch.tensor([[8.0, 16.0], [40.0, 16.0]])
    targets = torch.tensor([[14.0, 16.0], [40.0, 16.0]])
    field = displacement_field((33, 49), handles, targets)
    xs = torch.arange(49, dtype=torch.float32).expand(1, 1, 33, 49)
    moved = warp_map(xs, field)  # each output pixel shows the x it came from
    source = moved[0, 0, 16]
    landed = source + field[16, :, 0].gather(0, source.round().long().clamp(0, 48))
    # left of x = 6 the content came from outside the image (everything there moves right by ~6 px)
    assert torch.allclose(landed[7:], torch.arange(49, dtype=torch.float32)[7:], atol=0.2)


def test_the_motion_at_a_handle_is_its_drag_and_the_field_is_the_same_formula():
    handles, targets = torch.tensor([[3.0, 4.0], [15.0, 15.0]]), torch.tensor([[7.0, 4.0], [15.0, 15.0]])
    assert torch.allclose(displacement_at(handles, handles, targets), torch.tensor([[4.0, 0.0], [0.0, 0.0]]), atol=0.05)
    field = displacement_field((20, 20), handles, targets)
    assert torch.allclose(field[9, 12], displacement_at(torch.tensor([12.0, 9.0]), handles, targets))


def test_the_search_between_finds_a_handle_beyond_the_trackers_reach():
    """A feature 9 px from where its handle was, on the way to the predicted end: a +-2 tracker misses it."""
    fmap = torch.zeros(1, 4, 24, 40)
    fmap[0, :, 12, 20] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    field = FeatureField(fmap, (24, 40))
    template = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    start, end = torch.tensor([[11.0, 12.0]]), torch.tensor([[25.0, 12.0]])
    assert search_between(field, start, end, template, r2=2).tolist() == [[20.0, 12.0]]
