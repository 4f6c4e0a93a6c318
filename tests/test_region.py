"""Regions: layer <-> model mapping (points, masks, images) and compositing edits back bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from draggan_core.region import (Rect, RegionMapping, changed_mask, composite, distance_to_outside, feather_weights,
                                 select_region)

MODEL_SIZES = [(32, 32), (64, 32), (32, 64), (48, 80), (256, 128)]


@st.composite
def mappings(draw):
    lh, lw = draw(st.integers(1, 600)), draw(st.integers(1, 600))
    x = draw(st.integers(0, lw - 1))
    y = draw(st.integers(0, lh - 1))
    w = draw(st.integers(1, lw - x))
    h = draw(st.integers(1, lh - y))
    model = draw(st.sampled_from(MODEL_SIZES))
    return RegionMapping.create((lh, lw), model, Rect(x, y, w, h))


coords = st.floats(-50, 700, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(mappings(), st.lists(st.tuples(coords, coords), min_size=1, max_size=6))
def test_points_round_trip_exactly(m, points):
    there = m.to_model(points)
    back = m.to_layer(there)
    assert np.allclose(back, points, rtol=0, atol=1e-9)
    again = m.to_model(back)
    assert np.allclose(again, there, rtol=0, atol=1e-9)
    arr = np.asarray(points)
    assert np.allclose(m.to_model(arr), there, rtol=0, atol=0)  # arrays and lists agree


@settings(max_examples=200, deadline=None)
@given(mappings())
def test_fit_keeps_aspect_and_maps_edges_onto_the_content_box(m):
    r, c = m.region, m.content
    mh, mw = m.model_size
    assert 0 <= c.x and c.right <= mw and 0 <= c.y and c.bottom <= mh
    assert c.width == mw or c.height == mh  # it fits: one side touches
    # aspect ratio kept up to the rounding of the content box to whole pixels (at least one)
    s = min(mw / r.width, mh / r.height)
    assert abs(c.width - r.width * s) <= 0.5 + 1e-9 or c.width == 1
    assert abs(c.height - r.height * s) <= 0.5 + 1e-9 or c.height == 1
    # padding is centred (differs by at most one pixel between the two sides)
    left, top, right, bottom = m.padding
    assert abs(left - right) <= 1 and abs(top - bottom) <= 1
    # the region's outer pixel edges land on the content box's outer pixel edges, sub-pixel exactly
    corners = [(r.x - 0.5, r.y - 0.5), (r.right - 0.5, r.bottom - 0.5)]
    (x0, y0), (x1, y1) = m.to_model(corners)
    assert (x0, y0) == pytest.approx((c.x - 0.5, c.y - 0.5), abs=1e-9)
    assert (x1, y1) == pytest.approx((c.right - 0.5, c.bottom - 0.5), abs=1e-9)
    centre = m.to_model([((r.x + r.right - 1) / 2, (r.y + r.bottom - 1) / 2)])[0]
    assert centre == pytest.approx(((c.x + c.right - 1) / 2, (c.y + c.bottom - 1) / 2), abs=1e-9)
    assert m.in_content(m.to_model([(r.x, r.y), (r.right - 1, r.bottom - 1)])).all()


def test_off_centre_region_on_a_non_square_layer_and_model():
    m = RegionMapping.create((300, 500), (64, 32), Rect(310, 40, 120, 90))  # layer 500 wide, 300 high
    assert m.content == Rect(0, 20, 32, 24)  # 120x90 -> 32x24, padded top and bottom
    assert m.scale == (32 / 120, 24 / 90)
    assert m.padding == (0, 20, 0, 20)
    pts = [(310.0, 40.0), (429.0, 129.0), (350.25, 77.75)]
    model = m.to_model(pts)
    assert np.allclose(m.to_layer(model), pts, atol=1e-12)
    assert not m.in_content([(10.0, 5.0)])[0] and m.in_content([(10.0, 30.0)])[0]
    assert m.clamp_model([(-3.0, 5.0)]) == [(0.0, 20.0)]
    d = m.to_dict()
    assert d["region"] == {"x": 310, "y": 40, "width": 120, "height": 90} and d["padding"] == [0, 20, 0, 20]


def _layer(h, w, seed=0, alpha=True):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if not alpha:
        img[..., 3] = 255
    return img


def test_crop_and_fit_pads_and_weights_by_alpha():
    layer = _layer(70, 130, alpha=False)
    layer[20:40, 50:60, 3] = 0  # a transparent hole inside the region
    m = RegionMapping.create((70, 130), (32, 64), Rect(30, 10, 60, 45))
    rgb, valid = m.crop_and_fit(layer)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert valid.shape == (32, 64) and valid.dtype == np.float32
    c = m.content
    assert (valid[:, :c.x] == 0).all() and (valid[:, c.right:] == 0).all()
    assert (valid[:c.y] == 0).all() and (valid[c.bottom:] == 0).all()
    inner = valid[c.slices]
    assert inner.max() == pytest.approx(1, abs=1e-3) and inner.min() < 0.05  # the hole shows
    hole = m.to_model([(55.0, 30.0)])[0]
    assert valid[int(round(hole[1])), int(round(hole[0]))] < 0.05
    if c.x > 0:  # edge padding repeats the border column
        assert (rgb[:, 0] == rgb[:, c.x]).all()
    # an opaque flat-colour region comes out as that colour exactly
    flat = np.zeros((70, 130, 4), np.uint8)
    flat[...] = (10, 200, 30, 255)
    rgb2, valid2 = m.crop_and_fit(flat[..., :3])
    assert (rgb2 == (10, 200, 30)).all() and np.allclose(valid2[c.slices], 1, atol=1e-4)


def test_masks_map_both_ways():
    m = RegionMapping.create((80, 120), (64, 64), Rect(20, 10, 80, 40))
    mask = np.zeros((80, 120), bool)
    mask[20:40, 40:70] = True
    mm = m.mask_to_model(mask)
    assert mm.shape == (64, 64) and mm.min() >= 0 and mm.max() <= 1
    c = m.content
    assert mm[: c.y].sum() == 0 and mm[c.bottom:].sum() == 0
    centre = m.to_model([(55.0, 30.0)])[0]
    assert mm[int(round(centre[1])), int(round(centre[0]))] == pytest.approx(1)
    assert np.allclose(m.mask_to_model(mask[10:50, 20:100]), mm)  # region-size masks too
    assert np.allclose(m.mask_to_model((mask * 255).astype(np.uint8)), mm, atol=1e-6)
    back = m.mask_to_layer(mm)
    assert back.shape == (80, 120)
    assert back[:10].sum() == 0 and back[:, 100:].sum() == 0
    assert np.abs(back - mask).max() <= 1 and ((back > 0.5) == mask).mean() > 0.97
    with pytest.raises(ValueError):
        m.mask_to_model(np.zeros((5, 5)))


def test_composite_non_square_off_centre_is_bit_exact_outside_the_mask():
    layer = _layer(90, 150, seed=1)
    m = RegionMapping.create((90, 150), (32, 64), Rect(70, 20, 60, 50))
    edited = np.random.default_rng(2).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:90, :150]
    mask = (xx - 100) ** 2 + (yy - 45) ** 2 <= 15 ** 2
    out = composite(layer, m, edited, mask=mask, feather=4)
    assert out.layer.shape == layer.shape and out.layer.dtype == np.uint8
    assert (out.layer[~mask] == layer[~mask]).all()  # RGB and alpha, bit-exact
    assert (out.layer[..., 3] == layer[..., 3]).all()  # alpha kept everywhere
    assert out.changed is not None
    ys, xs = np.nonzero(mask)
    c = out.changed
    assert c.x >= xs.min() and c.right <= xs.max() + 1 and c.y >= ys.min() and c.bottom <= ys.max() + 1
    diff = np.nonzero((out.layer != layer).any(axis=2))
    assert diff[0].min() >= c.y and diff[0].max() < c.bottom and diff[1].min() >= c.x and diff[1].max() < c.right
    # deep inside the mask the edit replaces the layer (resized to the region)
    edit_region = m.image_to_region(edited)
    inner = (xx - 100) ** 2 + (yy - 45) ** 2 <= 8 ** 2
    got = out.layer[inner][:, :3].astype(int)
    want = np.rint(edit_region[(yy[inner] - 20), (xx[inner] - 70)]).astype(int)
    assert np.abs(got - want).max() <= 1


def test_feathering_is_monotonic_across_the_edge():
    mask = np.zeros((40, 80), np.float32)
    mask[:, 30:] = 1  # editable to the right of column 30
    for feather in (0, 3, 8):
        w = feather_weights(mask, feather, outside_border=(False, False, False, False))
        row = w[20]
        assert (row[:30] == 0).all() and row[-1] == 1
        assert (np.diff(row) >= 0).all()
        assert (row[30: 30 + feather] < 1).all() and (row[30 + feather:] == 1).all()
    # and through a full composite: constant layer 0, constant edit 255, values along a row never go back
    layer = np.zeros((40, 80, 4), np.uint8)
    layer[..., 3] = 255
    m = RegionMapping.create((40, 80), (32, 64))
    edited = np.full((32, 64, 3), 255, np.uint8)
    out = composite(layer, m, edited, mask=mask, feather=6).layer
    for y in (0, 13, 39):
        v = out[y, :, 0].astype(int)
        assert (np.diff(v) >= 0).all() and v[0] == 0 and v[-1] == 255
    # a diagonal line crossing the edge of a disk
    yy, xx = np.mgrid[:60, :60]
    disk = ((xx - 30) ** 2 + (yy - 30) ** 2 <= 20 ** 2).astype(np.float32)
    w = feather_weights(disk, 5)
    diag = np.array([w[i, i] for i in range(0, 31)])
    assert (np.diff(diag) >= 0).all() and diag[0] == 0 and diag[-1] == 1


def test_region_edges_on_the_layer_border_are_not_feathered():
    layer = _layer(40, 60, seed=3)
    m = RegionMapping.create((40, 60), (32, 32), Rect(0, 0, 30, 40))  # touches left, top, bottom
    edited = np.full((32, 32, 3), 7, np.uint8)
    out = composite(layer, m, edited, feather=5)
    assert out.changed == Rect(0, 0, 30, 40)
    assert (out.weights[:, 0] == 1).all() and (out.weights[0, :24] == 1).all()
    assert (out.weights[:, -1] > 0).all() and (out.weights[:, -1] < 1).all()  # interior edge ramps
    assert (out.layer[:, 30:] == layer[:, 30:]).all()


def test_composite_without_mask_uses_what_the_edit_changed():
    layer = _layer(64, 96, seed=4, alpha=False)
    m = RegionMapping.create((64, 96), (64, 96))  # identity mapping
    reference = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    edited = reference.copy()
    edited[30:36, 40:46] = 255 - edited[30:36, 40:46]
    out = composite(layer, m, edited, reference=reference, feather=3, dilate=2, threshold=6)
    w = out.weights
    assert w[30:36, 40:46].min() > 0.6
    far = np.ones_like(w, bool)
    far[30 - 7:36 + 7, 40 - 7:46 + 7] = False
    assert (w[far] == 0).all() and (out.layer[far] == layer[far]).all()
    assert out.changed is not None and out.changed.x >= 40 - 7 and out.changed.right <= 46 + 7
    unchanged = composite(layer, m, reference, reference=reference)
    assert unchanged.changed is None and (unchanged.layer == layer).all()
    ch = changed_mask(edited, reference, threshold=6, dilate=0)
    assert ch.sum() == 36


def test_alpha_is_kept_and_fill_transparent_is_opt_in():
    layer = _layer(30, 40, seed=6)
    layer[..., 3] = 0
    layer[:, :20, 3] = 200
    m = RegionMapping.create((30, 40), (32, 32))
    edited = np.full((32, 32, 3), 99, np.uint8)
    out = composite(layer, m, edited, feather=0)
    assert (out.layer[..., 3] == layer[..., 3]).all()
    filled = composite(layer, m, edited, feather=0, fill_transparent=True)
    assert (filled.layer[..., 3] == 255).all()
    rgb_out = composite(layer[..., :3], m, edited)
    assert rgb_out.layer.shape == (30, 40, 4) and (rgb_out.layer[..., 3] == 255).all()


def test_select_region_grows_and_clamps():
    assert select_region((100, 200)) == Rect(0, 0, 200, 100)
    r = select_region((100, 200), Rect(50, 40, 20, 10), margin=0.5, min_margin=2)
    assert r == Rect(40, 30, 40, 30)
    edge = select_region((100, 200), (190, 95, 30, 30), margin=0.25)
    assert edge.right == 200 and edge.bottom == 100 and edge.x == 190 - 8 and edge.y == 95 - 8
    square = select_region((100, 200), Rect(90, 40, 40, 10), margin=0, min_margin=0, model_size=(64, 64))
    assert square.width == square.height == 40 and square.x == 90
    tall = select_region((100, 200), Rect(0, 0, 200, 100), model_size=(128, 64))
    assert tall == Rect(0, 0, 200, 100)  # cannot grow past the layer
    wide = select_region((100, 200), Rect(100, 45, 10, 10), margin=0, min_margin=0, model_size=(32, 64))
    assert (wide.width, wide.height) == (20, 10)
    with pytest.raises(ValueError):
        select_region((100, 200), Rect(300, 10, 5, 5))
    with pytest.raises(ValueError):
        RegionMapping.create((100, 200), (32, 32), Rect(190, 0, 20, 10))


def test_distance_transform_matches_brute_force():
    rng = np.random.default_rng(7)
    inside = rng.random((17, 23)) > 0.25
    d = distance_to_outside(inside, 6)
    oy, ox = np.nonzero(~np.pad(inside, 8, constant_values=False))
    oy, ox = oy - 8, ox - 8
    yy, xx = np.mgrid[:17, :23]
    brute = np.sqrt((yy[..., None] - oy) ** 2 + (xx[..., None] - ox) ** 2).min(-1)
    assert np.allclose(d, np.where(inside, np.minimum(brute, 7), 0), atol=1e-5)
