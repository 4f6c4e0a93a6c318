"""Aligned framing (draggan_core.alignment): the FFHQ recipe by hand, the demo world's constants, the
similarity transform and its inverse, images, masks and points through a rotation, and a rotated edit
composited back bit-exactly outside its mask with alpha kept."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from draggan_core import registry
from draggan_core.alignment import (CENTRE, DEMO, FFHQ, LANDMARKS, AlignedMapping, OrientedBox, box_from_landmarks,
                                    warp)
from draggan_core.demo import world
from draggan_core.region import composite

MODEL_SIZES = [(32, 32), (64, 64), (128, 128), (64, 32), (48, 80)]


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]):
    """p -> scale * R(angle) p + shift (angle clockwise on screen), on [N, 2] arrays."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return lambda p: np.asarray(p, dtype=np.float64) @ rot.T * scale + np.asarray(shift)


# ---------------------------------------------------------------- the recipes

def test_ffhq_recipe_against_hand_arithmetic():
    # e = (40, 0), m = (0, 50): axis e + perp(m) = (90, 0), half side max(2.0 * 40, 1.8 * 50) = 90,
    # centre (120, 100) + 0.1 * (0, 50) = (120, 105).
    box = box_from_landmarks(FFHQ, (100, 100), (140, 100), (105, 150), (135, 150))
    assert box.center == pytest.approx((120, 105)) and box.width == pytest.approx(180)
    assert box.height == pytest.approx(180) and box.angle == pytest.approx(0)
    assert np.allclose(box.corners(), [(30, 15), (210, 15), (210, 195), (30, 195)])
    # Eyes 100 apart dominate: half side max(200, 1.8 * 50 = 90) = 200.
    wide = box_from_landmarks(FFHQ, (0, 0), (100, 0), (40, 50), (60, 50))
    assert wide.width == pytest.approx(400) and wide.center == pytest.approx((50, 5))
    # The first face turned a quarter turn clockwise on screen: (x, y) -> (-y, x).
    turned = box_from_landmarks(FFHQ, (-100, 100), (-100, 140), (-150, 105), (-150, 135))
    assert turned.angle == pytest.approx(90) and turned.center == pytest.approx((-105, 120))
    assert turned.width == pytest.approx(180)
    assert np.allclose(turned.corners(), [(-15, 30), (-15, 210), (-195, 210), (-195, 30)])


def test_ffhq_axis_leans_with_the_mouth_as_the_recipe_says():
    # e = (40, 0), m = (10, 50): axis = (40 + 50, 0 - 10) = (90, -10).
    box = box_from_landmarks(FFHQ, (100, 100), (140, 100), (115, 150), (145, 150))
    assert box.angle == pytest.approx(math.degrees(math.atan2(-10, 90)))
    assert box.width == pytest.approx(2 * max(80, 1.8 * math.hypot(10, 50)))
    assert box.center == pytest.approx((120 + 1.0, 100 + 5.0))


def test_swapped_eyes_and_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError, match="swapped"):
        box_from_landmarks(FFHQ, (140, 100), (100, 100), (105, 150), (135, 150))
    with pytest.raises(ValueError, match="apart"):
        box_from_landmarks(FFHQ, (100, 100), (100.5, 100), (105, 150), (135, 150))
    with pytest.raises(ValueError, match="centred crop"):
        box_from_landmarks(CENTRE, (100, 100), (140, 100), (105, 150), (135, 150))


def mean_cat(**changes: float) -> np.ndarray:
    params = np.full(world.NUM_PARAMS, 0.5, np.float32)
    for name, value in changes.items():
        params = world.set_param(params, name, value)
    return params


def centred_landmarks(params: np.ndarray, size: int = 128) -> dict[str, tuple[float, float]]:
    """The world's landmarks (pixel column j spans [j, j + 1)) in the centres-at-integers convention."""
    return {k: (x - 0.5, y - 0.5) for k, (x, y) in world.landmarks(params, size).items()}


def test_demo_constants_reproduce_the_worlds_training_framing():
    marks = world.landmarks(mean_cat(), 128)
    le, re_, ml, mr = (np.array(marks[k]) for k in LANDMARKS)
    eye_mid, e, m = (le + re_) / 2, re_ - le, (ml + mr) / 2 - (le + re_) / 2
    assert DEMO.eye_scale == pytest.approx(64 / math.hypot(*e), abs=1e-5)
    assert DEMO.mouth_scale == pytest.approx(64 / math.hypot(*m), abs=1e-5)
    assert DEMO.centre_shift == pytest.approx((64 - eye_mid[1]) / m[1], abs=1e-5)
    # The mean cat's landmarks frame exactly its 128 px image, at any render size.
    for size in (64, 128, 256):
        mapping = AlignedMapping.from_landmarks((size, size), (size, size), DEMO, centred_landmarks(mean_cat(), size))
        assert mapping.scale == pytest.approx(1, abs=1e-5) and abs(mapping.box.angle) < 1e-9
        assert np.allclose(mapping.quad(), [(-0.5, -0.5), (size - 0.5, -0.5), (size - 0.5, size - 0.5),
                                            (-0.5, size - 0.5)], atol=2e-3 * size / 128)


@pytest.mark.parametrize("changes", [dict(head_tilt=0.0), dict(head_tilt=1.0, head_size=1.0),
                                     dict(head_x=0.0, head_y=1.0, head_size=0.0, mouth_open=1.0)])
def test_demo_alignment_undoes_the_worlds_pose(changes):
    """Any head position, size and tilt of the world is framed like the mean cat: the aligned frame
    sits on the head exactly as the mean cat's training frame sits on its head."""
    params = mean_cat(**changes)
    p = world.physical(params)
    mapping = AlignedMapping.from_landmarks((128, 128), (128, 128), DEMO, centred_landmarks(params))
    mean = world.physical(mean_cat())
    assert mapping.scale == pytest.approx(mean["head_size"] / p["head_size"], rel=1e-5)
    assert mapping.box.angle == pytest.approx(math.degrees(p["head_tilt"]), abs=1e-6)
    centre = mapping.to_model([(p["head_x"] * 128 - 0.5, p["head_y"] * 128 - 0.5)])[0]
    assert centre == pytest.approx((mean["head_x"] * 128 - 0.5, mean["head_y"] * 128 - 0.5), abs=1e-3)


def test_registry_declares_each_models_framing():
    zoo = registry.ZOO
    assert zoo["demo"].framing == "demo"
    assert zoo["stylegan2-ffhq-512x512"].framing == "ffhq" and zoo["stylegan3-r-ffhq-1024x1024"].framing == "ffhq"
    assert zoo["stylegan2-celebahq-256x256"].framing == "ffhq" and zoo["stylegan2-metfaces-1024x1024"].framing == "ffhq"
    for name in ("stylegan2-ffhqu-256x256", "stylegan2-afhqcat-512x512", "stylegan2-car-config-f",
                 "stylegan2_lions_512_pytorch", "stylegan3-t-metfacesu-1024x1024", "stylegan_human_v2_512"):
        assert zoo[name].framing == "centre", name


# ---------------------------------------------------------------- the transform

@st.composite
def mappings(draw):
    lh, lw = draw(st.integers(16, 900)), draw(st.integers(16, 900))
    model = draw(st.sampled_from(MODEL_SIZES))
    w = draw(st.floats(8, 4 * max(lh, lw)))
    h = draw(st.floats(8, 4 * max(lh, lw)))
    centre = (draw(st.floats(0, lw - 1)), draw(st.floats(0, lh - 1)))
    angle = draw(st.floats(-360, 360))
    return AlignedMapping.create((lh, lw), model, OrientedBox(centre, w, h, angle))


coords = st.floats(-2000, 3000, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(mappings(), st.lists(st.tuples(coords, coords), min_size=1, max_size=6))
def test_points_round_trip(m, points):
    there = m.to_model(points)
    back = m.to_layer(there)
    assert np.allclose(back, points, rtol=0, atol=1e-7)
    assert np.allclose(m.to_model(back), there, rtol=0, atol=1e-7)
    assert np.allclose(m.to_model(np.asarray(points)), there, rtol=0, atol=0)  # arrays and lists agree


@settings(max_examples=200, deadline=None)
@given(mappings())
def test_the_box_fits_inside_the_model_and_its_centre_is_the_models(m):
    mh, mw = m.model_size
    corners = np.asarray(m.to_model(m.box.corners()))
    assert corners[:, 0].min() >= -0.5 - 1e-6 and corners[:, 0].max() <= mw - 0.5 + 1e-6
    assert corners[:, 1].min() >= -0.5 - 1e-6 and corners[:, 1].max() <= mh - 0.5 + 1e-6
    touches_x = math.isclose(corners[:, 0].min(), -0.5, abs_tol=1e-6)
    touches_y = math.isclose(corners[:, 1].min(), -0.5, abs_tol=1e-6)
    assert touches_x or touches_y  # fitted: one pair of sides touches the model's edges
    assert m.to_model([m.box.center])[0] == pytest.approx(((mw - 1) / 2, (mh - 1) / 2), abs=1e-6)
    # The region holds every layer pixel the model sees, and only layer pixels.
    r, (lh, lw) = m.region, m.layer_size
    assert 0 <= r.x and 0 <= r.y and r.right <= lw and r.bottom <= lh and m.region_coverage().any()


@settings(max_examples=150, deadline=None)
@given(st.floats(-180, 180), st.floats(0.3, 3), st.floats(-300, 300), st.floats(-300, 300),
       st.sampled_from([FFHQ, DEMO]))
def test_landmark_framing_follows_the_face(angle, scale, dx, dy, framing):
    """The recipe commutes with similarities: move, turn and scale a face and its landmarks, and every
    point of the face lands on the same model pixel as before. A handle on a tilted face lands on the
    same feature."""
    marks = centred_landmarks(mean_cat(head_tilt=0.2, head_yaw=0.7))
    s = similarity(angle, scale, (dx + 400, dy + 400))
    moved = {k: tuple(s([p])[0]) for k, p in marks.items()}
    before = AlignedMapping.from_landmarks((128, 128), (64, 64), framing, marks)
    after = AlignedMapping.from_landmarks((900, 900), (64, 64), framing, moved)
    features = np.array([marks[k] for k in ("nose", "left_ear_tip", "chin", "mouth_bottom")])
    assert np.allclose(after.to_model(s(features)), before.to_model(features), atol=1e-6)
    assert after.scale == pytest.approx(before.scale / scale)


def test_limits_are_refused_with_reasons():
    with pytest.raises(ValueError, match="does not overlap"):
        AlignedMapping.create((100, 100), (64, 64), OrientedBox((500, 500), 50, 50, 10))
    with pytest.raises(ValueError, match="sides must be"):
        AlignedMapping.create((100, 100), (64, 64), OrientedBox((50, 50), 4, 50, 0))
    with pytest.raises(ValueError, match="sides must be"):
        AlignedMapping.create((100, 100), (64, 64), OrientedBox((50, 50), 900, 900, 0))
    with pytest.raises(ValueError, match="finite"):
        AlignedMapping.create((100, 100), (64, 64), OrientedBox((50, math.nan), 50, 50, 0))


# ---------------------------------------------------------------- images and masks

def test_an_unrotated_whole_pixel_placement_copies_pixels_exactly():
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 256, (50, 70, 4), np.uint8)
    layer[..., 3] = 255
    m = AlignedMapping.create((50, 70), (32, 32), OrientedBox((20 + 15.5, 10 + 15.5), 32, 32, 0))
    rgb, valid = m.crop_and_fit(layer)
    assert (rgb == layer[10:42, 20:52, :3]).all() and (valid == 1).all()
    assert m.region.to_dict() == {"x": 20, "y": 10, "width": 32, "height": 32}
    assert m.region_coverage().all()
    assert np.abs(m.image_to_region(rgb) - layer[10:42, 20:52, :3]).max() < 1e-3


def test_valid_is_zero_off_the_layer_and_on_transparent_pixels():
    layer = np.full((60, 60, 4), 200, np.uint8)
    layer[..., 3] = 255
    layer[:, :20, 3] = 0  # a transparent band
    m = AlignedMapping.create((60, 60), (40, 40), OrientedBox((40, 30), 60, 60, 30))  # half off the layer
    rgb, valid = m.crop_and_fit(layer)
    model_xy = np.stack(np.meshgrid(np.arange(40), np.arange(40)), -1).reshape(-1, 2).astype(float)
    at = np.asarray(m.to_layer(model_xy)).reshape(40, 40, 2)
    off = (at[..., 0] > 61) | (at[..., 1] < -2) | (at[..., 1] > 61)
    transparent = (at[..., 0] < 18) & (at[..., 0] > -2)
    assert off.any() and transparent.any()
    assert (valid[off] == 0).all() and (valid[transparent] < 0.02).all()
    solid = (at[..., 0] > 22) & (at[..., 0] < 57) & (at[..., 1] > 2) & (at[..., 1] < 57)
    assert (valid[solid] > 0.99).all() and (np.abs(rgb[solid].astype(int) - 200) <= 1).all()


def test_a_shrinking_warp_averages_instead_of_aliasing():
    checker = ((np.indices((400, 400)).sum(0) % 2) * 255).astype(np.uint8)
    layer = np.repeat(checker[..., None], 4, 2)
    layer[..., 3] = 255
    m = AlignedMapping.create((400, 400), (64, 64), OrientedBox((200, 200), 300, 300, 17))
    rgb, _ = m.crop_and_fit(layer)
    assert m.shrink_in == 4
    assert np.abs(rgb.astype(float) - 127.5).max() < 24  # a grey, not a moire of black and white


def test_points_and_masks_follow_a_rotation():
    layer_size, model = (300, 400), (64, 64)
    m = AlignedMapping.create(layer_size, model, OrientedBox((210, 140), 160, 160, -35))
    yy, xx = np.mgrid[:300, :400]
    spot = (230.0, 120.0)
    disk = ((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2 <= 20 ** 2).astype(np.uint8) * 255
    inside = m.mask_to_model(disk)
    ys, xs = np.nonzero(inside > 0.5)
    centroid = (xs.mean(), ys.mean())
    assert centroid == pytest.approx(m.to_model([spot])[0], abs=0.5)
    radius = 20 * m.scale
    assert (inside > 0.5).sum() == pytest.approx(math.pi * radius ** 2, rel=0.1)
    back = m.mask_to_layer(inside)
    assert back.shape == layer_size and back.min() >= 0 and back.max() <= 1
    agree = (back > 0.5) == (disk > 127)
    assert agree.mean() > 0.995
    # Off the quad the model sees nothing: the mask comes back 0 there.
    corner = m.to_layer([(-10.0, -10.0)])[0]
    assert back[int(round(corner[1])), int(round(corner[0]))] == 0


def tilted_layer(angle: float = 25.0, scale: float = 1.3) -> tuple[np.ndarray, AlignedMapping, callable]:
    """A 128 px cat rendered by the world, turned, scaled and moved into a 360x300 RGBA canvas, with a
    half-transparent band and a transparent corner; its aligned mapping from the moved landmarks."""
    params = mean_cat(left_ear_angle=0.9, fur_hue=0.3)
    render = world.render(params)
    s = similarity(angle, scale, (190, 150))
    to_canvas = lambda p: s(np.asarray(p, dtype=np.float64) - 63.5)  # noqa: E731  render centre -> (190, 150)
    from_canvas = similarity(-angle, 1 / scale, (0, 0))
    yy, xx = np.mgrid[:300, :360]
    src = from_canvas(np.stack([xx - 190, yy - 150], -1).reshape(-1, 2)).reshape(300, 360, 2) + 63.5
    planes = np.concatenate([render.transpose(2, 0, 1), np.full((1, 128, 128), 255)], 0).astype(np.float32)
    placed = warp(planes, src, 1, "bilinear", "zeros")
    canvas = np.empty((300, 360, 4), np.uint8)
    background = np.array([70, 110, 60, 255], np.float64)
    cover = placed[3] / 255
    canvas[..., :3] = np.clip(np.rint(placed[:3].transpose(1, 2, 0) + (1 - cover[..., None]) * background[:3]), 0, 255)
    canvas[..., 3] = 255
    canvas[:, 300:, 3] = 128
    canvas[:20, :20, 3] = 0
    marks = {k: tuple(to_canvas([p])[0]) for k, p in centred_landmarks(params).items()}
    mapping = AlignedMapping.from_landmarks((300, 360), (128, 128), DEMO, marks)
    return canvas, mapping, to_canvas


def test_the_aligned_crop_of_a_tilted_cat_is_the_upright_render():
    canvas, mapping, to_canvas = tilted_layer()
    params = mean_cat(left_ear_angle=0.9, fur_hue=0.3)
    rgb, valid = mapping.crop_and_fit(canvas)
    render = world.render(params).astype(float)
    inner = (slice(8, 120), slice(8, 120))  # away from the render's own edge, which the canvas blends
    assert np.abs(rgb[inner] - render[inner]).mean() < 4
    # The handles a user puts on the tilted cat land on the upright cat's features.
    marks = centred_landmarks(params)
    for name in ("nose", "left_ear_tip", "mouth_bottom"):
        on_layer = to_canvas([marks[name]])[0]
        assert mapping.to_model([tuple(on_layer)])[0] == pytest.approx(marks[name], abs=0.1)
        assert mapping.contains(on_layer)


def test_a_rotated_edit_composites_back_bit_exact_outside_its_mask():
    canvas, mapping, to_canvas = tilted_layer(-30, 1.5)
    rgb, _ = mapping.crop_and_fit(canvas)
    edited = rgb.copy()
    edited[40:90, 40:90] = (255, 0, 255)  # a magenta square in the model's frame
    yy, xx = np.mgrid[:300, :360]
    centre = to_canvas([(64, 64)])[0]
    mask = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= 60 ** 2)
    out = composite(canvas, mapping, edited, mask=mask, feather=4)
    assert out.layer.shape == canvas.shape
    assert (out.layer[~mask] == canvas[~mask]).all()  # bit-exact outside the mask, alpha included
    assert (out.layer[..., 3] == canvas[..., 3]).all()  # alpha kept everywhere
    square = np.asarray(mapping.to_layer([(65.0, 65.0)])[0]).round().astype(int)
    assert tuple(out.layer[square[1], square[0], :3]) == (255, 0, 255)  # the edit arrived, upright in the model
    c = out.changed
    assert c is not None and mask[c.y:c.y + c.height, c.x:c.x + c.width].any()
    # Without a mask the edit is confined to the quad the model sees; the rest is the layer's bytes.
    free = composite(canvas, mapping, edited, feather=4)
    seen = np.zeros(canvas.shape[:2], bool)
    seen[mapping.region.slices] = mapping.region_coverage()
    assert (free.layer[~seen] == canvas[~seen]).all() and (free.layer[..., 3] == canvas[..., 3]).all()


def test_the_unedited_reconstruction_composites_back_close_to_the_layer():
    """crop_and_fit then image_to_region is the exact inverse transform: only the two resamplings differ."""
    canvas, mapping, _ = tilted_layer(12, 1.0)
    rgb, _ = mapping.crop_and_fit(canvas)
    back = composite(canvas, mapping, rgb, feather=0).layer
    seen = np.zeros(canvas.shape[:2], bool)
    seen[mapping.region.slices] = mapping.region_coverage()
    opaque = seen & (canvas[..., 3] == 255)
    assert np.abs(back[opaque][:, :3].astype(int) - canvas[opaque][:, :3]).mean() < 3


def test_catalogue_entries_declare_their_framing(tmp_path):
    entry = {"url": "https://models.example/m.pkl", "resolution": 256, "domain": "d", "licence": "l"}
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps([{**entry, "name": "faces", "framing": "ffhq"}, {**entry, "name": "cats"},
                                {**entry, "name": "stylegan2-ffhq-256x256"}]))
    zoo = registry.load_catalogue(path)
    assert zoo["faces"].framing == "ffhq" and zoo["cats"].framing == "centre"
    assert zoo["stylegan2-ffhq-256x256"].framing == "ffhq"  # a mirror keeps the built-in model's framing
    for bad in ("demo", "FFHQ", 3):
        path.write_text(json.dumps([{**entry, "name": "faces", "framing": bad}]))
        with pytest.raises(registry.CatalogueError, match="'framing' must be one of 'ffhq', 'centre'"):
            registry.load_catalogue(path)
