"""The Krita plug-in's own logic, outside Krita: coordinate mapping, point editing, the Run's
request as the shared workflow's Edit, the result layers' pixels, settings, BGRA <-> PNG, and the
worker-side daemon calls (against a fake client). The conversation with the daemon itself is the
shared draggan_client/workflow.py (tests/test_workflow.py). The plug-in is imported from its packaged
layout (scripts/package_krita.py --stage), so the shared client modules are the ones the zip carries;
`krita` is not importable here, so the package registers nothing."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("package_krita", ROOT / "scripts" / "package_krita.py")
    pk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pk)
    staged = tmp_path_factory.mktemp("krita-plugin")
    pk.stage(str(staged))
    sys.path.insert(0, str(staged))
    for name in [m for m in sys.modules if m == "draggan_krita" or m.startswith("draggan_krita.")]:
        del sys.modules[name]
    import draggan_krita
    from draggan_krita import align, daemon, geometry, history, imaging, jobspec, points, settings
    from draggan_krita.draggan_client import launcher, pngcodec, workflow
    yield {"pkg": draggan_krita, "geometry": geometry, "points": points, "jobspec": jobspec, "pngcodec": pngcodec,
           "settings": settings, "daemon": daemon, "imaging": imaging, "workflow": workflow,
           "launcher": launcher, "history": history, "align": align}
    sys.path.remove(str(staged))


# -- coordinate mapping ------------------------------------------------------------------------------

def _close(a, b, eps=1e-6):
    return abs(a[0] - b[0]) <= eps and abs(a[1] - b[1]) <= eps


def test_affine_follows_qtransform_order_and_inverts(plugin):
    A = plugin["geometry"].Affine
    t = A.scale(2.0) * A.translate(10, 5)  # scale first, then translate (QTransform's a*b)
    assert _close(t.map(3, 4), (16, 13))
    r = A.rotate(90)  # clockwise on screen (y down): +x goes to +y
    assert _close(r.map(1, 0), (0, 1))
    m = A.scale(-1, 1)
    for tr in (t, r, t * r * m, A(1.3, 0.2, -0.4, 0.9, 7, -3)):
        inv = tr.inverted()
        for p in ((0, 0), (12.5, -3.25), (100, 200)):
            assert _close(inv.map(*tr.map(*p)), p, 1e-9)
        assert (tr * inv).almost_equal(A(), 1e-9)
    assert (t * r * m).is_mirrored() and not (t * r).is_mirrored()
    with pytest.raises(ValueError):
        A.scale(0.0).inverted()


def _krita52_view(res, zoom, rotation, mirror, pan, widget=(800, 600)):
    """Flake transforms like Krita 5.2's: flake (pt) -> image px is res/72; flake -> widget is
    zoom (of document pt: zoom*res/72 screen px per image px... expressed on pt), mirror, rotation
    about the widget centre, pan."""
    A = sys.modules["draggan_krita.geometry"].Affine
    flake_to_image = A.scale(res / 72.0)
    cx, cy = widget[0] / 2.0, widget[1] / 2.0
    f2c = A.scale(zoom * res / 72.0) * A.translate(pan[0], pan[1]) * A.translate(-cx, -cy)
    if mirror:
        f2c = f2c * A.scale(-1, 1)
    f2c = f2c * A.rotate(rotation) * A.translate(cx, cy)
    return flake_to_image, f2c


@pytest.mark.parametrize("res,zoom,rotation,mirror,pan", [
    (72, 1.0, 0, False, (0, 0)), (100, 2.76, 0, False, (-40, 25)), (300, 0.5, 30, False, (10, 10)),
    (72, 1.5, 30, True, (120, -60)), (150, 3.0, -135, True, (0, 0))])
def test_widget_image_roundtrip_with_flake_transforms(plugin, res, zoom, rotation, mirror, pan):
    g = plugin["geometry"]
    f2i, f2c = _krita52_view(res, zoom, rotation, mirror, pan)
    i2w = g.image_to_widget_52(f2i, f2c)
    w2i = i2w.inverted()
    # screen pixels per image pixel = zoom whatever the resolution (flake points cancel out)
    assert math.isclose(i2w.scale_factor(), zoom, rel_tol=1e-9)
    assert i2w.is_mirrored() == mirror
    for p in ((0, 0), (150, 90), (33.5, 12.25)):
        w = i2w.map(*p)
        assert _close(w2i.map(*w), p, 1e-9)
    # distances on screen scale by zoom, angles rotate by `rotation`
    a, b = i2w.map(10, 10), i2w.map(20, 10)
    ang = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    expected = 180 + rotation if mirror else rotation  # mirror about the vertical axis, then rotate
    assert math.isclose((ang - expected + 180) % 360 - 180, 0, abs_tol=1e-6)


def test_fallback_mapping_for_krita51(plugin):
    g = plugin["geometry"]
    # 100 dpi image at zoomLevel 3.8339 = 276 % (notes: screen px per image px = zoom*72/res)
    t = g.fallback_image_to_widget(3.8339, 100.0, scroll_x=50, scroll_y=20)
    assert math.isclose(t.scale_factor(), 3.8339 * 0.72, rel_tol=1e-9)
    assert _close(t.map(0, 0), (-50, -20))
    assert _close(t.map(10, 10), (10 * 2.760408 - 50, 10 * 2.760408 - 20), 1e-4)
    # rotated/mirrored: Krita puts the bounding box of the transformed image at minus the document offset
    for rotation, mirror in ((30, True), (-25, False), (90, True), (200, False)):
        tr = g.fallback_image_to_widget(2.0, 72.0, -300, -120, rotation=rotation, mirror=mirror, image_w=64,
                                        image_h=48)
        corners = [tr.map(x, y) for x, y in ((0, 0), (64, 0), (0, 48), (64, 48))]
        assert _close((min(p[0] for p in corners), min(p[1] for p in corners)), (300, 120), 1e-9)
        assert tr.is_mirrored() == mirror and math.isclose(tr.scale_factor(), 2.0)
        assert _close(tr.inverted().map(*tr.map(17, 5)), (17, 5), 1e-9)
        # the same view as the flake transforms would give it (same linear part), up to translation
        f2i, f2c = _krita52_view(72, 2.0, rotation, mirror, (0, 0))
        lin = g.image_to_widget_52(f2i, f2c)
        assert _close((tr.m11, tr.m12), (lin.m11, lin.m12), 1e-9) and _close((tr.m21, tr.m22), (lin.m21, lin.m22), 1e-9)


def test_clamp_point(plugin):
    c = plugin["geometry"].clamp_point
    assert c(-3, 70, 64, 48) == (0.0, 47.0)
    assert c(10.5, 20.25, 64, 48) == (10.5, 20.25)


# -- point editing -----------------------------------------------------------------------------------

def test_place_select_move_remove(plugin):
    P = plugin["points"]
    pts = P.PointList(64, 48)
    events = []
    pts.listeners.append(lambda: events.append(1))
    assert pts.place(10, 10) == (0, P.HANDLE)
    assert pts.complete_pairs() == [] and pts.handles() == []
    assert pts.place(20, 12) == (0, P.TARGET)
    assert pts.place(30, 30) == (1, P.HANDLE)  # a new pair
    assert pts.hit(29, 31, 3) == (1, P.HANDLE)
    assert pts.hit(25, 25, 3) is None
    assert pts.hit(19, 12, 3) == (0, P.TARGET)
    pts.move((0, P.TARGET), 100, -5)  # clamped to the image
    assert pts.pairs[0][1] == (63.0, 0.0)
    assert pts.place(40, 40) == (1, P.TARGET)
    assert pts.handles() == [[10.0, 10.0], [30.0, 30.0]] and pts.targets() == [[63.0, 0.0], [40.0, 40.0]]
    assert pts.remove((0, P.TARGET))  # a removed target leaves its handle; the next click re-places it
    assert pts.pairs[0] == [(10.0, 10.0), None] and len(pts.complete_pairs()) == 1
    assert pts.place(12, 30) == (0, P.TARGET)
    pts.select((1, P.HANDLE))
    assert pts.remove()  # the selected handle: its whole pair goes
    assert len(pts) == 1 and pts.selected is None
    assert not pts.remove()  # nothing selected
    assert not pts.remove((5, P.HANDLE))
    assert len(events) >= 9


def test_hit_prefers_the_nearest_point(plugin):
    P = plugin["points"]
    pts = P.PointList(100, 100)
    pts.place(10, 10)
    pts.place(14, 10)
    assert pts.hit(13, 10, 5) == (0, P.TARGET)
    assert pts.hit(11, 10, 5) == (0, P.HANDLE)


def test_tracked_handles_update_complete_pairs_only(plugin):
    P = plugin["points"]
    pts = P.PointList(64, 64)
    pts.place(1, 1)
    pts.place(5, 5)
    pts.place(9, 9)  # lone handle
    pts.set_handles([[3.5, 2.5]])
    assert pts.pairs[0][0] == (3.5, 2.5) and pts.pairs[1][0] == (9.0, 9.0)


def test_points_json_roundtrip_and_bad_input(plugin):
    P = plugin["points"]
    pts = P.PointList(64, 64)
    pts.place(1.5, 2.5)
    pts.place(10, 20)
    pts.place(30, 31)
    again = P.PointList(64, 64).load_json(pts.to_json())
    assert again.pairs == pts.pairs
    assert json.loads(pts.to_json())["version"] == 1
    for bad in ("", "nope", "[]", '{"pairs": 3}', '{"pairs": [[1]]}'):
        assert len(P.PointList(64, 64).load_json(bad)) == 0
    assert pts.describe()[0].startswith("1: (1.5, 2.5) -> (10.0, 20.0)")
    assert "click to place" in pts.describe()[1]


# -- BGRA <-> PNG (the codec itself: tests/test_pngcodec.py) -------------------------------------

def test_bgra_conversions(plugin):
    im, png = plugin["imaging"], plugin["pngcodec"]
    bgra = bytes([0, 0, 255, 255, 10, 20, 30, 40])  # Krita: pure red, then B=10 G=20 R=30 A=40
    assert im.bgra_to_rgba(bgra) == bytes([255, 0, 0, 255, 30, 20, 10, 40])
    assert im.to_bgra(bytes([255, 0, 0, 30, 20, 10]), 3) == bytes([0, 0, 255, 255, 10, 20, 30, 255])
    assert im.to_bgra(bytes([7, 9]), 1) == bytes([7, 7, 7, 255, 9, 9, 9, 255])
    assert im.to_bgra(bytes([7, 9]), 2) == bytes([7, 7, 7, 9])
    assert png.decode_png(im.encode_bgra_png(bgra, 2, 1)) == (2, 1, 4, bytes([255, 0, 0, 255, 30, 20, 10, 40]))
    # outside Krita (no PyQt5) the imaging layer decodes with the stdlib codec
    assert im.decode_png_bgra(im.encode_bgra_png(bgra, 2, 1)) == (2, 1, bgra)
    with pytest.raises(png.PngError, match="expected 3x1"):
        im.decode_png_bgra(im.encode_bgra_png(bgra, 2, 1), 3, 1)


# -- the Run's request: the shared workflow's Edit -------------------------------------------------------

def _pair_list(plugin, w=8, h=6):
    pts = plugin["points"].PointList(w, h)
    pts.place(2, 2)
    pts.place(5.123456, 3)
    return pts


def test_clean_params(plugin):
    js = plugin["jobspec"]
    p = js.clean_params({"steps": 5000, "mask_lambda": -1, "r1": 0, "r2": "", "learning_rate": None,
                         "w_layers": 6.6, "bogus": 1})
    assert p["steps"] == 2000 and p["mask_lambda"] == 0.0 and p["w_layers"] == 7
    assert p["r1"] is None and p["r2"] is None and p["learning_rate"] is None
    assert js.clean_params({"r1": 3, "learning_rate": 0.002})["r1"] == 3.0
    assert js.clean_params(None) == js.DEFAULT_PARAMS


def test_the_parameters_as_the_workflows_settings(plugin):
    js, wf = plugin["jobspec"], plugin["workflow"]
    assert js.drag_settings({}) == wf.DragSettings(steps=200, mask_lambda=20.0, preview_every=5, w_layers=6,
                                                   preset="paper")
    # the published preset is the daemon's default and is not sent (a daemon from before presets refuses the
    # field); another one is, and a name this plug-in does not know falls back to the published one
    assert "preset" not in js.drag_settings({}).options()
    assert js.drag_settings({"preset": "studio"}).options()["preset"] == "studio"
    assert js.clean_params({"preset": "turbo"})["preset"] == js.clean_params({"preset": 3})["preset"] == "paper"
    assert js.drag_settings({"steps": 5000, "r1": 3, "r2": 0, "learning_rate": 0.002}).options() == {
        "steps": 2000, "mask_lambda": 20.0, "preview_every": 5, "w_layers": 6, "r1": 3.0, "learning_rate": 0.002}
    p = js.clean_params({})
    assert p["invert_w"] is None and p["invert_wplus"] is None and p["invert_pti"] is None
    assert js.invert_settings({}) is None
    # 0 = auto for W (at least one step), 0 = skip for W+ and PTI, negative = auto; clamped to the limits
    p = js.clean_params({"invert_w": 0, "invert_wplus": 0, "invert_pti": -1})
    assert p["invert_w"] is None and p["invert_wplus"] == 0 and p["invert_pti"] is None
    assert js.invert_settings({"invert_w": 12.4, "invert_wplus": 0, "invert_pti": 9000}) == {
        "steps_w": 12, "steps_wplus": 0, "steps_pti": 2000}


def test_the_runs_edit_is_the_layer_as_rgba_with_its_points_mask_and_settings(plugin):
    js, wf, png = plugin["jobspec"], plugin["workflow"], plugin["pngcodec"]
    w, h = 8, 6
    bgra = bytes([1, 2, 3, 4] * (w * h))
    soft = bytes(255 if 1 <= x <= 6 and 1 <= y <= 4 else (90 if x == 0 else 0) for y in range(h) for x in range(w))
    edit = js.edit_request(_pair_list(plugin, w, h), {"steps": 50, "r2": 12, "invert_w": 7}, bgra, w, h, soft, "")
    assert (edit.width, edit.height, edit.channels, edit.pixels) == (w, h, 4, bytes([3, 2, 1, 4] * (w * h)))
    assert png.decode_png(edit.png()) == (w, h, 4, bytes([3, 2, 1, 4] * (w * h)))  # RGBA, alpha kept
    assert edit.drags == [((2.0, 2.0), (5.123456, 3.0))] and edit.mask == soft  # feathering survives
    assert edit.model is None and edit.invert == {"steps_w": 7} and (edit.settings.steps, edit.settings.r2) == (50, 12)
    assert not edit.trusted  # the document's record, not the layer's own
    request = wf.drag_request(edit)
    assert request["handles"] == [[2.0, 2.0]] and request["targets"] == [[5.123, 3.0]]
    assert png.decode_png(request["mask_png"]) == (w, h, 1, soft)
    whole = js.edit_request(_pair_list(plugin, w, h), {}, bgra, w, h, b"\xff" * (w * h), "tiny")
    assert whole.mask is None and whole.model == "tiny"  # everything selected: the whole layer
    assert js.edit_request(_pair_list(plugin, w, h), {}, bgra, w, h, None, "").mask is None  # nothing selected
    with pytest.raises(wf.WorkflowError, match="does not touch this layer"):
        js.edit_request(_pair_list(plugin, w, h), {}, bgra, w, h, bytes(w * h), "")
    lone = plugin["points"].PointList(w, h)
    with pytest.raises(wf.WorkflowError, match="handle"):
        js.edit_request(lone, {}, bgra, w, h, None, "")
    lone.place(1, 1)
    with pytest.raises(wf.WorkflowError, match="handle"):
        js.edit_request(lone, {}, bgra, w, h, None, "")


def test_the_record_of_a_generated_picture(plugin):
    js, wf, im = plugin["jobspec"], plugin["workflow"], plugin["imaging"]
    bgra = bytes([0, 0, 255, 255, 10, 20, 30, 255])
    answer = {"session_id": "abc", "width": 2, "height": 1, "bgra": bgra, "model": None, "seed": 42,
              "initial_state_id": "st-1"}
    record = js.generated_record(answer, "http://x:1")
    assert record == wf.SessionRecord("abc", "http://x:1", 2, 1, wf.GENERATED, model=None, seed=42,
                                      fingerprint=wf.layer_fingerprint(im.bgra_to_rgba(bgra), 2, 1), state_id="st-1")
    assert wf.SessionRecord.from_json(record.to_json()) == record
    # the record is trusted for the layer it was made from (the Run's Edit of the same pixels)
    edit = js.edit_request(_pair_list(plugin, 2, 1), {}, bgra, 2, 1, None, "")
    assert edit.fingerprint() == record.fingerprint


# -- what each layer remembers (history.py) --------------------------------------------------------------

def _record(wf, state, origin=None, seed=42, handles=(), targets=()):
    return wf.SessionRecord("s1", "http://x:1", 4, 4, origin or wf.GENERATED, model="demo", seed=seed,
                            handles=[list(p) for p in handles], targets=[list(p) for p in targets], state_id=state)


def test_a_result_layer_remembers_its_state_its_original_layer_and_its_tracked_handles(plugin):
    H, wf = plugin["history"], plugin["workflow"]
    hist = H.LayerHistory()
    hist.remember_source("{src}", _record(wf, "st-0"), "4x4:aaaa")
    first = hist.remember_result("{r1}", _record(wf, "st-1", wf.DRAGGED, handles=[(3, 2)], targets=[(1, 1)]),
                                 "4x4:bbbb", "{src}")
    second = hist.remember_result("{r2}", _record(wf, "st-2", wf.DRAGGED, handles=[(1.5, 1)], targets=[(1, 1)]),
                                  "4x4:cccc", "{r1}")
    assert (first.base, second.base) == ("{src}", "{src}")  # a continued result still knows the original layer
    assert hist.record_for("{r1}").state_id == "st-1" and hist.record_for("{r1}").fingerprint == "4x4:bbbb"
    assert hist.record_for("{src}").state_id == "st-0" and hist.record_for("{unknown}") is None
    doc_points = [[[3.0, 3.0], [1.0, 1.0]]]
    # the source shows the artist's points, a result layer its tracked handles
    assert hist.shown_pairs("{src}", doc_points) == doc_points and hist.shown_pairs(None, doc_points) == doc_points
    assert hist.shown_pairs("{r1}", doc_points) == [[[3, 2], [1, 1]]]
    # points edited on a result layer stay with it; on any other layer they are the document's
    assert hist.set_points("{r2}", [[(2.0, 2.0), (0.0, 1.0)], [(3.0, 0.0), None]])
    assert not hist.set_points("{src}", doc_points) and not hist.set_points("{unknown}", doc_points)
    again = H.LayerHistory.from_json(hist.to_json())
    assert again.shown_pairs("{r2}", doc_points) == [[[2.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], None]]
    assert again.to_json() == hist.to_json()
    assert again.get("{r2}").is_result and not again.get("{src}").is_result


def test_the_layer_history_reads_damage_as_no_memory_and_stays_bounded(plugin):
    H, wf = plugin["history"], plugin["workflow"]
    for bad in (None, "", "nope", "[]", '{"layers": 3}', '{"layers": {"{a}": {"record": {}}}}',
                '{"layers": {"{a}": {"record": {"session_id": "s", "url": "", "width": 1, "height": 1}, '
                '"kind": "weird"}}}'):
        assert H.LayerHistory.from_json(bad).entries == {}
    good = json.loads(H.LayerHistory().to_json())
    good["layers"]["{a}"] = H.LayerEntry(_record(wf, "st"), H.RESULT, "{b}", [[[1, 2], None]], 3).to_dict()
    good["layers"]["{bad points}"] = dict(good["layers"]["{a}"], points=[["x"]])
    read = H.LayerHistory.from_json(json.dumps(good))
    assert read.get("{a}").points == [[[1.0, 2.0], None]] and read.get("{bad points}").points is None
    hist = H.LayerHistory()
    for i in range(H.MAX_ENTRIES + 5):
        hist.remember_source("{%d}" % i, _record(wf, "st"), None)
    assert len(hist.entries) == H.MAX_ENTRIES and "{0}" not in hist.entries and "{%d}" % H.MAX_ENTRIES in hist.entries


def test_a_layers_record_is_trusted_for_its_own_pixels_only(plugin):
    H, js, wf = plugin["history"], plugin["jobspec"], plugin["workflow"]
    bgra = bytes(range(64))
    hist = H.LayerHistory()
    hist.remember_result("{r}", _record(wf, "st-1", wf.DRAGGED), js.layer_fingerprint(bgra, 4, 4), "{src}")
    pts = _pair_list(plugin, 4, 4)
    same = js.edit_request(pts, {}, bgra, 4, 4, None, "")
    painted = js.edit_request(pts, {}, bytes([9]) + bgra[1:], 4, 4, None, "")
    assert not same.trusted  # a layer's memory is checked against its pixels, never taken on trust
    assert hist.record_for("{r}").fingerprint == same.fingerprint() != painted.fingerprint()


def test_reset_to_original_goes_to_the_original_layer_while_it_is_there(plugin):
    H, wf = plugin["history"], plugin["workflow"]
    hist = H.LayerHistory()
    hist.remember_source("{src}", _record(wf, "st-0"), None)
    hist.remember_result("{r1}", _record(wf, "st-1", wf.DRAGGED), None, "{src}")
    assert H.reset_target(hist, "{r1}", lambda uid: True) == ("{src}", True)
    assert H.reset_target(hist, "{r1}", lambda uid: False) == ("{r1}", False)  # the original layer was deleted
    assert H.reset_target(hist, "{src}", lambda uid: True) == ("{src}", False)
    assert H.reset_target(hist, "{plain}", lambda uid: True) == ("{plain}", False)
    text = H.reset_message(_record(wf, "st-0"), moved_to_original=True)
    assert "forgot the drags" in text and "original layer is selected" in text and "inversion" not in text
    real = _record(wf, "st-0", wf.REAL, seed=None)
    assert "inversion is kept" in H.reset_message(real)
    assert "still shows its edit" in H.reset_message(real, kept_result=True)


def test_a_reset_of_a_session_the_daemon_lost_says_what_the_next_drag_does(plugin):
    H, wf = plugin["history"], plugin["workflow"]
    dragged = _record(wf, "st-3", wf.DRAGGED, handles=[(1, 1)], targets=[(2, 2)])
    lost = H.lost_session_record(dragged)
    assert (lost.origin, lost.state_id, lost.handles, lost.seed) == (wf.GENERATED, None, [], 42)
    assert "generates the picture again from its seed" in H.reset_message(lost, lost=True)
    real = H.lost_session_record(_record(wf, "st-3", wf.REAL, seed=None))
    assert real.origin == wf.REAL and "GAN inversion" in H.reset_message(real, lost=True)


def test_the_point_list_shows_another_layers_points(plugin):
    P = plugin["points"]
    pts = P.PointList(10, 10)
    pts.place(1, 1)
    pts.select((0, P.HANDLE))
    seen = []
    pts.listeners.append(lambda: seen.append(len(pts)))
    pts.set_pairs([[[2, 3], [40, 5]], [[1, 1], None]])
    assert pts.pairs == [[(2.0, 3.0), (9.0, 5.0)], [(1.0, 1.0), None]] and pts.selected is None and seen == [2]
    pts.set_pairs("nonsense")
    assert pts.pairs == []


# -- result layers --------------------------------------------------------------------------------------

def test_result_layer_pixels_fade_outside_the_soft_mask(plugin):
    js = plugin["jobspec"]
    result = bytes([10, 20, 30, 255] * 3)
    assert js.result_layer_pixels(result, None) == result
    out = js.result_layer_pixels(result, bytes([255, 128, 0]))
    assert out == bytes([10, 20, 30, 255, 10, 20, 30, 128, 10, 20, 30, 0])


def test_changed_layer_pixels_keep_only_the_changed_rectangle(plugin):
    js = plugin["jobspec"]
    w, h = 4, 3
    result = bytes(range(4 * w * h))
    out = js.changed_layer_pixels(result, w, h, {"x": 1, "y": 1, "width": 2, "height": 2})
    for y in range(h):
        for x in range(w):
            i = 4 * (y * w + x)
            inside = 1 <= x <= 2 and 1 <= y <= 2
            assert out[i:i + 4] == (result[i:i + 4] if inside else bytes(4)), (x, y)
    assert js.changed_layer_pixels(result, w, h, None) == bytes(4 * w * h)
    # clamped to the layer
    out = js.changed_layer_pixels(result, w, h, {"x": 3, "y": 2, "width": 9, "height": 9})
    assert out[-4:] == result[-4:] and out[:-4] == bytes(4 * w * h - 4)


def test_requests(plugin):
    js = plugin["jobspec"]
    assert js.generate_request("", 5) == {"model": None, "seed": 5}
    assert js.generate_request("tiny", 5.0, 0.7) == {"model": "tiny", "seed": 5, "psi": 0.7}


# -- settings ------------------------------------------------------------------------------------------

class DictStore:
    def __init__(self):
        self.data = {}

    def get(self, key, default=""):
        return self.data.get(key, default)

    def set(self, key, value):
        self.data[key] = value


def test_settings_roundtrip_and_env(plugin):
    S = plugin["settings"]
    store = DictStore()
    s = S.Settings.load(store, environ={})
    assert s.url == S.DEFAULT_URL and s.token == "" and s.params["steps"] == 200
    s.update({"url": "10.0.0.2:9000", "token": " secret-token-123456 ", "model": "ffhq", "seed": -4,
              "params": {"steps": 99, "r1": 0}})
    s.save(store)
    again = S.Settings.load(store, environ={})
    assert again.to_dict() == s.to_dict()
    assert again.url == "http://10.0.0.2:9000" and again.token == "secret-token-123456" and again.seed == 0
    env = S.Settings.load(store, environ={"DRAGGAN_URL": "127.0.0.1:1", "DRAGGAN_TOKEN": "t"})
    assert env.url == "http://127.0.0.1:1" and env.token == "t"
    store.data["settings"] = "{not json"
    assert S.Settings.load(store, environ={}).url == S.DEFAULT_URL


def test_the_local_daemon_settings_round_trip_and_make_the_launchers_settings(plugin, tmp_path):
    S, launcher = plugin["settings"], plugin["launcher"]
    store = DictStore()
    s = S.Settings.load(store, environ={})
    assert s.daemon_settings() == launcher.DaemonSettings()  # the launcher's defaults, nothing of our own
    assert (s.keep_running, s.start_with_krita) == (False, False)
    s.update({"daemon_command": " /opt/draggan/.venv/bin/draggan ", "project_dir": str(tmp_path),
              "extra_args": "--device cpu --models '/my models'", "keep_running": True, "start_with_krita": True})
    s.save(store)
    again = S.Settings.load(store, environ={})
    assert again.to_dict() == s.to_dict()
    assert again.daemon_settings() == launcher.DaemonSettings(
        command="/opt/draggan/.venv/bin/draggan", project_dir=str(tmp_path),
        extra_args="--device cpu --models '/my models'", keep_running=True, start_with_editor=True)
    # only a real true ticks a box (a hand-edited "false" string must not)
    again.update({"keep_running": "false", "start_with_krita": 1, "daemon_command": None})
    assert (again.keep_running, again.start_with_krita, again.daemon_command) == (False, False, "")
    assert again.daemon_settings().command == ""  # empty: the launcher looks in the project, then on PATH


def test_the_launcher_takes_the_plugins_settings_as_they_are(plugin, tmp_path):
    """What start_local() makes of the settings: the configured program with its words, extra arguments
    split like a shell, and the artist told in words about a program that is not there."""
    S, launcher = plugin["settings"], plugin["launcher"]
    program = tmp_path / "my draggan"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    s = S.Settings().update({"daemon_command": str(program)})
    ds = s.daemon_settings()
    assert launcher.find_command(ds.project_dir or None, ds.command or None) == [str(program)]
    s.update({"daemon_command": str(tmp_path / "missing")})
    with pytest.raises(launcher.LauncherError, match="not found"):
        launcher.start_local(launcher.LocalDaemon(), s.daemon_settings())
    s.update({"daemon_command": str(program), "extra_args": "--device 'cpu"})
    with pytest.raises(launcher.LauncherError, match="extra arguments cannot be read"):
        launcher.start_local(launcher.LocalDaemon(), s.daemon_settings())


def test_what_happens_to_the_local_daemon_when_krita_quits(plugin):
    s = plugin["settings"].Settings()
    assert s.quit_action(running=False, kept=False) is None
    assert s.quit_action(running=True, kept=False) == "stop"
    assert s.quit_action(running=True, kept=True) == "stop"  # kept once, but the artist untied it since
    s.update({"keep_running": True})
    assert s.quit_action(running=True, kept=True) == "detach"
    assert s.quit_action(running=True, kept=False) == "stop"  # started tied to Krita: cannot outlive it
    assert s.quit_action(running=False, kept=True) is None


# -- worker-side daemon calls against a fake client ----------------------------------------------------

class FakeClient:
    url = "http://fake"

    def __init__(self, plugin):
        self.png = plugin["pngcodec"]
        self.DaemonError = sys.modules["draggan_krita.draggan_client.client"].DaemonError
        self.calls = []
        self.state = {"state": "running", "step": 3, "max_steps": 10, "preview_step": 2, "handles": [[1, 1]]}

    def generate(self, seed, model=None, psi=None):
        self.calls.append(("generate", seed, model))
        return {"session_id": "s1", "width": 2, "height": 1, "seed": seed, "model": model,
                "image": self.png.encode_png(2, 1, 3, bytes([255, 0, 0, 0, 255, 0]))}

    def session(self, sid):
        return {"session_id": sid, "model": "tiny", "width": 2, "height": 1, "handles": [[1.5, 0.0]],
                "targets": [[1.0, 0.0]], "region": None}

    def job(self, jid):
        return dict(self.state, job_id=jid)

    def preview(self, jid):
        self.calls.append(("preview", jid))
        return self.png.encode_png(2, 1, 3, bytes([0, 0, 255, 0, 0, 255]))

    def result(self, jid):
        return self.png.encode_png(2, 1, 3, bytes([1, 2, 3, 4, 5, 6]))

    def cancel(self, jid):
        self.calls.append(("cancel", jid))
        raise self.DaemonError("job %s has finished" % jid, 409, "job_finished")


def test_daemon_calls(plugin):
    d, js, wf = plugin["daemon"], plugin["jobspec"], plugin["workflow"]
    c = FakeClient(plugin)
    made = d.generate(c, js.generate_request("tiny", 3))
    assert made["bgra"] == bytes([0, 0, 255, 255, 0, 255, 0, 255]) and made["session_id"] == "s1"
    assert (made["width"], made["height"], made["model"], made["seed"]) == (2, 1, "tiny", 3)
    status, preview = d.poll(c, "j1", None, 2, 1)
    assert status["step"] == 3 and preview == {"step": 2, "bgra": bytes([255, 0, 0, 255] * 2)}
    n = len(c.calls)
    assert d.poll(c, "j1", 2, 2, 1)[1] is None and len(c.calls) == n  # no new preview: not fetched
    record = js.generated_record(made, c.url)
    edit = js.edit_request(_pair_list(plugin, 2, 1), {}, made["bgra"], 2, 1, None, "")
    done, bgra = d.finish(c, wf.Started("s1", "j1", "drag", False, model="tiny"), {"state": "done", "step": 4},
                          record, edit)
    assert bgra == bytes([3, 2, 1, 255, 6, 5, 4, 255])
    assert done.record.origin == wf.DRAGGED and done.record.seed == 3 and done.record.handles == [[1.5, 0.0]]
    with pytest.raises(wf.WorkflowError, match="cancelled"):
        d.finish(c, wf.Started("s1", "j1", "drag", False), {"state": "cancelled"}, record, edit)
    assert d.cancel(c, "j1") is None  # already finished: nothing to cancel


def test_daemon_errors_are_explained(plugin):
    d, wf = plugin["daemon"], plugin["workflow"]
    c = FakeClient(plugin)
    assert d.describe_error(c.DaemonError("cannot reach the DragGAN daemon at http://x")) \
        == "Cannot reach the DragGAN daemon at http://x"
    assert d.describe_error(wf.WorkflowError("The drag was cancelled; the image is unchanged.")) \
        == "The drag was cancelled; the image is unchanged."
    assert d.describe_error(KeyError("k")) == "Unexpected error: KeyError: 'k'"


def test_daemon_down_through_the_real_client(plugin):
    d = plugin["daemon"]
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(sys.modules["draggan_krita.draggan_client.client"].DaemonError) as e:
        d.check(d.Daemon("http://127.0.0.1:%d" % port))
    msg = d.describe_error(e.value)
    assert msg.startswith("Cannot reach the DragGAN daemon at http://127.0.0.1:%d" % port)


def test_wrong_token_and_missing_model_messages_through_the_real_client(plugin):
    """The plug-in shows the shared client's messages; check them against a stub daemon."""
    import http.server
    import threading
    d, js = plugin["daemon"], plugin["jobspec"]

    class Stub(http.server.BaseHTTPRequestHandler):
        def _answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer right-token-0123456789":
                return self._answer(401, {"error": {"code": "unauthorized", "message": "bad token"}})
            self._answer(200, {"version": "9", "device": "cpu"} if self.path.endswith("/health") else {"models": []})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer(404, {"error": {"code": "model_not_found",
                                         "message": "model 'nope' is not installed on the daemon; available: tiny"}})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        Err = sys.modules["draggan_krita.draggan_client.client"].DaemonError
        with pytest.raises(Err) as e:
            d.check(d.Daemon(url, "wrong-token"))
        assert "refused the token" in d.describe_error(e.value)
        with pytest.raises(Err) as e:
            d.check(d.Daemon(url, ""))
        assert "needs a token" in d.describe_error(e.value)
        assert d.check(d.Daemon(url, "right-token-0123456789"))[0]["version"] == "9"
        with pytest.raises(Err) as e:
            d.generate(d.Daemon(url, "right-token-0123456789"), js.generate_request("nope", 1))
        assert d.describe_error(e.value) == "Model 'nope' is not installed on the daemon; available: tiny"
    finally:
        server.shutdown()
        server.server_close()


# -- Align mode (issue 16): the landmarks and the square they frame --------------------------------------

def _tilted_face(angle_deg, scale, centre):
    """An upright face's eye and mouth landmarks turned angle_deg clockwise on screen, scaled, moved to centre."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    upright = {"left_eye": (-12.0, -6.0), "right_eye": (12.0, -6.0), "mouth_left": (-8.0, 14.0),
               "mouth_right": (9.0, 14.5)}
    return {k: (centre[0] + c * x - s * y, centre[1] + s * x + c * y) for k, (x, y) in upright.items()}


@pytest.mark.parametrize("framing", ["ffhq", "demo"])
@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (20.0, 1.3), (-35.0, 0.7), (170.0, 2.0)])
def test_the_plugins_square_is_the_daemons_recipe(plugin, framing, angle, scale):
    from draggan_core import alignment
    marks = _tilted_face(angle, scale, (130.0, 95.0))
    args = [marks[k] for k in plugin["align"].LANDMARKS]
    box = alignment.box_from_landmarks(alignment.FRAMINGS[framing], *args)
    mine = plugin["align"].square(framing, *args)
    for p, q in zip(mine, box.corners()):
        assert _close(p, q, 1e-4), (mine, box.corners())
    assert plugin["align"].RECIPES[framing] == (alignment.FRAMINGS[framing].eye_scale,
                                                alignment.FRAMINGS[framing].mouth_scale,
                                                alignment.FRAMINGS[framing].centre_shift)


def test_the_ffhq_square_by_hand(plugin):
    # eyes 20 px apart on y=40, mouth midpoint 24 px below: half side max(2*20, 1.8*24) = 43.2, centre 2.4 below
    sq = plugin["align"].square("ffhq", (40, 40), (60, 40), (42, 64), (58, 64))
    assert all(_close(p, q, 1e-9) for p, q in zip(sq, [(6.8, -0.8), (93.2, -0.8), (93.2, 85.6), (6.8, 85.6)]))


def test_the_square_refuses_what_the_daemon_refuses(plugin):
    al = plugin["align"]
    with pytest.raises(al.AlignError, match="mouth is not below"):
        al.square("ffhq", (60, 40), (40, 40), (42, 64), (58, 64))  # eyes swapped
    with pytest.raises(al.AlignError, match="1 px"):
        al.square("demo", (40, 40), (40.5, 40), (42, 64), (58, 64))
    with pytest.raises(al.AlignError, match="centred crop"):
        al.square("centre", (40, 40), (60, 40), (42, 64), (58, 64))


def test_align_mode_places_four_landmarks_in_order_and_edits_them(plugin):
    al_mod = plugin["align"]
    al = al_mod.Alignment(100, 80)
    seen = []
    al.listeners.append(lambda: seen.append(len(al)))
    assert al.next_name() == "left_eye" and al.landmarks() is None and al.problem("demo") is None
    for x, y in ((40, 40), (60, 40), (42, 64)):
        al.place(x, y)
    assert al.problem("demo").startswith("Alignment: 3 of 4") and "right mouth corner" in al.problem("demo")
    assert al.square("demo") is None
    assert al.place(58, 200) == (3, al_mod.LANDMARK) and al.points[3] == (58.0, 79.0)  # clamped to the image
    assert al.place(10, 10) is None and len(al) == 4  # all four placed: a click elsewhere adds none
    al.move((3, al_mod.LANDMARK), 58, 64)
    assert al.landmarks() == {"left_eye": [40.0, 40.0], "right_eye": [60.0, 40.0], "mouth_left": [42.0, 64.0],
                              "mouth_right": [58.0, 64.0]}
    assert al.square("ffhq") is not None and al.square("centre") is None and al.problem("ffhq") is None
    assert al.hit(59, 41, 3) == (1, al_mod.LANDMARK) and al.hit(0, 0, 3) is None
    assert al.remove((2, al_mod.LANDMARK)) and al.points == [(40.0, 40.0), (60.0, 40.0)]  # and those after it
    assert al.next_name() == "mouth_left" and seen
    al.clear()
    assert len(al) == 0 and al.selected is None


def test_the_alignment_round_trips_through_json_and_survives_bad_input(plugin):
    al_mod = plugin["align"]
    al = al_mod.Alignment(100, 80)
    al.set_landmarks({"left_eye": [40, 40], "right_eye": [60, 40], "mouth_left": [42, 64], "mouth_right": [58, 64]})
    back = al_mod.Alignment(100, 80).load_json(al.to_json())
    assert back.points == al.points and back.complete()
    assert json.loads(al.to_json())["version"] == al_mod.FORMAT_VERSION
    for bad in ("", "{", "[1, 2]", json.dumps({"points": [[1]]}), json.dumps({"points": "xy"})):
        assert len(al_mod.Alignment(100, 80).load_json(bad)) == 0
    assert len(al_mod.Alignment(100, 80).load_json(json.dumps({"points": [[1, 2]] * 9}))) == 4


def test_a_run_sends_the_landmarks_only_when_they_frame_the_picture(plugin):
    al_mod = plugin["align"]
    al = al_mod.Alignment(100, 80)
    assert al_mod.align_for_run(al, "demo") == (None, None) and al_mod.align_for_run(None, "demo") == (None, None)
    al.place(40, 40)
    with pytest.raises(al_mod.AlignError, match="1 of 4"):
        al_mod.align_for_run(al, "demo")
    for x, y in ((60, 40), (42, 64), (58, 64)):
        al.place(x, y)
    sent, note = al_mod.align_for_run(al, "demo")
    assert sent == al.landmarks() and note is None
    assert al_mod.align_for_run(al, None)[0] == sent  # the catalogue is not known: the daemon decides
    sent, note = al_mod.align_for_run(al, "centre")
    assert sent is None and "not used" in note
    al.set_landmarks({"left_eye": [60, 40], "right_eye": [40, 40], "mouth_left": [42, 64], "mouth_right": [58, 64]})
    with pytest.raises(al_mod.AlignError, match="mouth is not below"):
        al_mod.align_for_run(al, "ffhq")
