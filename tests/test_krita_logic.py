"""The Krita plug-in's pure logic, outside Krita: coordinate mapping, point editing, request
building, response handling, settings, BGRA <-> PNG, and the worker-side daemon calls (against a
fake client). The plug-in is imported from its packaged layout (scripts/package_krita.py --stage),
so the shared client module is the one the zip carries; `krita` is not importable here, so the
package registers nothing."""
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
    from draggan_krita import daemon, geometry, imaging, jobspec, points, settings
    from draggan_krita.draggan_client import pngcodec
    yield {"pkg": draggan_krita, "geometry": geometry, "points": points, "jobspec": jobspec, "pngcodec": pngcodec,
           "settings": settings, "daemon": daemon, "imaging": imaging}
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


# -- request building ----------------------------------------------------------------------------------

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


def test_mask_from_selection(plugin):
    js = plugin["jobspec"]
    assert js.mask_from_selection(None, 4, 2) is None  # nothing selected: whole layer
    assert js.mask_from_selection(b"\xff" * 8, 4, 2) is None  # everything selected: whole layer
    with pytest.raises(js.RequestError, match="empty"):
        js.mask_from_selection(b"\x00" * 8, 4, 2)
    with pytest.raises(js.RequestError):
        js.mask_from_selection(b"\x00" * 7, 4, 2)
    soft = bytes([0, 64, 200, 255, 255, 128, 0, 0])
    assert js.mask_from_selection(soft, 4, 2) == soft  # feathering survives
    assert js.mask_bounds(soft, 4, 2) == (0, 0, 4, 2)
    assert js.mask_bounds(bytes([0, 0, 0, 0, 0, 9, 9, 0]), 4, 2) == (1, 1, 2, 1)
    assert js.mask_bounds(None, 4, 2) == (0, 0, 4, 2)
    assert js.mask_bounds(b"\x00" * 8, 4, 2) is None


def test_drag_request_without_mask(plugin):
    js = plugin["jobspec"]
    req = js.drag_request(_pair_list(plugin), {"steps": 50, "r2": 12})
    assert req["handles"] == [[2.0, 2.0]] and req["targets"] == [[5.123, 3.0]]
    assert req["steps"] == 50 and req["r2"] == 12 and "r1" not in req and "learning_rate" not in req
    assert "mask_png" not in req
    with pytest.raises(js.RequestError, match="handle"):
        js.drag_request(plugin["points"].PointList(8, 6), {})
    lone = plugin["points"].PointList(8, 6)
    lone.place(1, 1)
    with pytest.raises(js.RequestError):
        js.drag_request(lone, {})


def test_drag_request_with_soft_mask(plugin):
    js, png = plugin["jobspec"], plugin["pngcodec"]
    w, h = 8, 6
    mask = bytes(255 if 1 <= x <= 6 and 1 <= y <= 4 else (90 if x == 0 else 0) for y in range(h) for x in range(w))
    req = js.drag_request(_pair_list(plugin, w, h), {}, mask, w, h)
    assert png.decode_png(req["mask_png"]) == (w, h, 1, mask)
    outside = bytes(255 if x >= 6 else 0 for y in range(h) for x in range(w))
    with pytest.raises(js.RequestError, match="outside the selection"):
        js.drag_request(_pair_list(plugin, w, h), {}, outside, w, h)


def test_session_request_is_an_rgba_png_of_the_layer(plugin):
    js, png = plugin["jobspec"], plugin["pngcodec"]
    bgra = bytes([1, 2, 3, 4] * 6)
    assert png.decode_png(js.session_request(bgra, 3, 2)) == (3, 2, 4, bytes([3, 2, 1, 4] * 6))


# -- response handling --------------------------------------------------------------------------------

def test_progress_texts(plugin):
    js = plugin["jobspec"]
    q = js.Progress({"state": "queued"})
    assert not q.finished and q.percent == 0 and "queued" in q.text()
    r = js.Progress({"state": "running", "step": 30, "max_steps": 120, "eta_seconds": 75.4,
                     "handles": [[1, 2]], "preview_step": 30})
    assert r.percent == 25 and r.text() == "Step 30 / 120, about 1 min 15 s left" and r.handles == [[1, 2]]
    d = js.Progress({"state": "done", "step": 44, "max_steps": 120, "reason": "reached"})
    assert d.finished and d.succeeded and d.percent == 100 and "reached their targets" in d.text()
    s = js.Progress({"state": "done", "step": 9, "max_steps": 120, "reason": "stopped"})
    assert s.text() == "Done after 9 steps (stopped)"
    f = js.Progress({"state": "failed", "error": {"code": "x", "message": "out of memory on cuda:0"}})
    assert f.finished and not f.succeeded and f.text() == "Failed: out of memory on cuda:0"
    assert js.Progress({"state": "cancelled"}).text() == "Cancelled"
    assert js.format_eta(None) == "" and js.format_eta(4.4) == "4 s" and js.format_eta(7322) == "2 h 02 min"


def test_result_layer_pixels_fade_outside_the_soft_mask(plugin):
    js = plugin["jobspec"]
    result = bytes([10, 20, 30, 255] * 3)
    assert js.result_layer_pixels(result, None) == result
    out = js.result_layer_pixels(result, bytes([255, 128, 0]))
    assert out == bytes([10, 20, 30, 255, 10, 20, 30, 128, 10, 20, 30, 0])


def test_names_and_session_annotation(plugin):
    js = plugin["jobspec"]
    assert js.result_layer_name("ffhq", 1) == "DragGAN: ffhq 1 point"
    assert js.result_layer_name("ffhq", 3) == "DragGAN: ffhq 3 points"
    info = js.parse_session_info(js.session_info_json("abc", "ffhq", 42, 512, 512, "http://x:1"))
    assert info == {"session_id": "abc", "model": "ffhq", "seed": 42, "width": 512, "height": 512,
                    "daemon": "http://x:1"}
    assert js.parse_session_info(None) is None and js.parse_session_info("{") is None
    assert js.parse_session_info('{"model": "x"}') is None
    assert js.generate_request("", 5) == {"model": None, "seed": 5}


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


# -- worker-side daemon calls against a fake client ----------------------------------------------------

class FakeClient:
    def __init__(self, plugin, sessions=("s1",)):
        self.png = plugin["pngcodec"]
        self.DaemonError = sys.modules["draggan_krita.draggan_client.client"].DaemonError
        self.calls = []
        self.sessions = set(sessions)
        self.state = {"state": "running", "step": 3, "max_steps": 10, "preview_step": 2, "handles": [[1, 1]]}

    def generate(self, seed, model=None, psi=None):
        self.calls.append(("generate", seed, model))
        return {"session_id": "s1", "width": 2, "height": 1, "seed": seed, "model": model,
                "image": self.png.encode_png(2, 1, 3, bytes([255, 0, 0, 0, 255, 0]))}

    def create_session(self, png, from_session=None, **kwargs):
        self.calls.append(("create_session", len(png), from_session) + ((kwargs,) if kwargs else ()))
        if from_session in self.sessions:
            self.sessions.add("s2")
            return {"session_id": "s2", "width": 4, "height": 2}
        raise self.DaemonError("this daemon cannot edit images it did not generate yet", 501,
                               "inversion_unavailable")

    def drag(self, sid, handles, targets, mask_png=None, **options):
        self.calls.append(("drag", sid, handles, targets, mask_png is not None, options))
        if sid not in self.sessions:
            raise self.DaemonError("session %s not found" % sid, 404, "not_found")
        return {"job_id": "j1", "state": "queued"}

    def job(self, jid):
        return dict(self.state, job_id=jid)

    def preview(self, jid):
        self.calls.append(("preview", jid))
        return self.png.encode_png(2, 1, 3, bytes([0, 0, 255, 0, 0, 255]))

    def result(self, jid):
        return self.png.encode_png(2, 1, 3, bytes([1, 2, 3, 4, 5, 6]))


def test_daemon_calls(plugin):
    d, js = plugin["daemon"], plugin["jobspec"]
    c = FakeClient(plugin)
    made = d.generate(c, js.generate_request("tiny", 3))
    assert made["bgra"] == bytes([0, 0, 255, 255, 0, 255, 0, 255]) and made["session_id"] == "s1"
    req = js.drag_request(_pair_list(plugin), {"steps": 7})
    assert d.start_drag(c, "s1", None, req) == {"phase": "drag", "job_id": "j1", "session_id": "s1"}
    assert c.calls[-1] == ("drag", "s1", [[2.0, 2.0]], [[5.123, 3.0]], False,
                           {"steps": 7, "mask_lambda": 20.0, "preview_every": 5, "w_layers": 6})
    status, preview = d.poll(c, "j1", None, 2, 1)
    assert status["step"] == 3 and preview == {"step": 2, "bgra": bytes([255, 0, 0, 255] * 2)}
    n = len(c.calls)
    assert d.poll(c, "j1", 2, 2, 1)[1] is None and len(c.calls) == n  # no new preview: not fetched
    assert d.result(c, "j1", 2, 1)["bgra"] == bytes([3, 2, 1, 255, 6, 5, 4, 255])


def test_daemon_errors_are_explained(plugin):
    d, js = plugin["daemon"], plugin["jobspec"]
    c = FakeClient(plugin, sessions=())
    req = js.drag_request(_pair_list(plugin), {})
    with pytest.raises(c.DaemonError) as e:
        d.start_drag(c, "gone", None, req)
    assert "New image from model" in str(e.value)
    with pytest.raises(c.DaemonError) as e:
        d.start_drag(c, None, b"png", req)
    assert e.value.code == "inversion_unavailable" and c.calls[-1] == ("create_session", 3, None)
    # a layer showing the session's picture at another size: a new session made from the old one
    c2 = FakeClient(plugin)
    assert d.start_drag(c2, "s1", b"png", req) == {"phase": "drag", "job_id": "j1", "session_id": "s2"}
    assert c2.calls[0] == ("create_session", 3, "s1") and c2.calls[1][:2] == ("drag", "s2")
    assert d.describe_error(c.DaemonError("cannot reach the DragGAN daemon at http://x")) \
        == "Cannot reach the DragGAN daemon at http://x"
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


# -- real layers (GAN inversion) -------------------------------------------------------------------------

def test_inversion_params_and_layer_request(plugin):
    js = plugin["jobspec"]
    p = js.clean_params({})
    assert p["invert_w"] is None and p["invert_wplus"] is None and p["invert_pti"] is None
    assert js.invert_settings({}) is None
    # 0 = auto for W (at least one step), 0 = skip for W+ and PTI, negative = auto; clamped to the limits
    p = js.clean_params({"invert_w": 0, "invert_wplus": 0, "invert_pti": -1})
    assert p["invert_w"] is None and p["invert_wplus"] == 0 and p["invert_pti"] is None
    assert js.invert_settings({"invert_w": 12.4, "invert_wplus": 0, "invert_pti": 9000}) == {
        "steps_w": 12, "steps_wplus": 0, "steps_pti": 2000}
    assert js.selection_bbox(None, 4, 2) is None
    assert js.selection_bbox(bytes([0, 0, 0, 0, 0, 9, 200, 0]), 4, 2) == [1, 1, 2, 1]
    assert js.layer_session_request("", None, None) == {"model": None, "selection_bbox": None, "invert": None}
    assert js.layer_session_request("tiny", (1, 2, 3, 4), {"steps_w": 5}) == {
        "model": "tiny", "selection_bbox": [1, 2, 3, 4], "invert": {"steps_w": 5}}
    a = js.layer_fingerprint(b"\x01\x02\x03\x04", 1, 1)
    assert a == js.layer_fingerprint(bytearray(b"\x01\x02\x03\x04"), 1, 1)
    assert a != js.layer_fingerprint(b"\x01\x02\x03\x05", 1, 1) and a.startswith("1x1:")


def test_inversion_progress_texts(plugin):
    js = plugin["jobspec"]
    r = js.Progress({"kind": "invert", "state": "running", "step": 25, "max_steps": 100, "eta_seconds": 12,
                     "handles": [[1, 2]], "inversion": {"stage": "w+", "stage_step": 5, "stage_steps": 30,
                                                        "psnr": 21.456}})
    assert r.kind == "invert" and r.percent == 25 and r.psnr == pytest.approx(21.456)
    assert r.text() == "Inverting the layer (W+ 5 / 30), PSNR 21.5 dB, about 12 s left"
    assert js.Progress({"kind": "invert", "state": "running", "step": 0, "max_steps": 9,
                        "inversion": {"stage": "w", "stage_step": 0, "stage_steps": 4, "psnr": None}}).text() \
        == "Inverting the layer (W 0 / 4)"
    d = js.Progress({"kind": "invert", "state": "done", "step": 60, "max_steps": 100, "reason": "stopped",
                     "inversion": {"stage": "pti", "stage_step": 3, "stage_steps": 30, "psnr": 24.04}})
    assert d.succeeded and d.percent == 100 and d.text() == "Inversion done, PSNR 24.0 dB (stopped early)"
    assert js.Progress({"kind": "invert", "state": "cancelled"}).text() == "Inversion cancelled"
    assert js.Progress({"kind": "invert", "state": "failed", "error": {"message": "boom"}}).text() \
        == "Inversion failed: boom"
    assert js.Progress({"kind": "invert", "state": "queued"}).text().startswith("Waiting")
    assert js.Progress({"state": "running", "step": 1, "max_steps": 2}).kind == "drag"


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


def test_layer_session_annotation_and_reuse(plugin):
    js = plugin["jobspec"]
    fp = js.layer_fingerprint(b"abcd" * 6, 3, 2)
    text = js.layer_session_info_json("s9", "tiny", 200, 150, "http://d:1", [40, 20, 120, 100], [60, 40, 50, 40],
                                      fp, {"steps_w": 8})
    info = js.parse_session_info(text)
    assert js.is_layer_session(info) and not js.is_layer_session(
        js.parse_session_info(js.session_info_json("g", "tiny", 1, 64, 64, "u")))
    assert js.region_list({"x": 1, "y": 2, "width": 3, "height": 4}) == [1, 2, 3, 4] and js.region_list(None) is None
    args = dict(model="tiny", width=200, height=150, url="http://d:1", fingerprint=fp, invert={"steps_w": 8})
    reuse = js.reusable_layer_session
    assert reuse(info, bbox=[60, 40, 50, 40], **args) == "s9"
    assert reuse(info, bbox=[45, 25, 100, 90], **args) == "s9"  # another selection inside the region
    assert reuse(info, bbox=[30, 25, 100, 90], **args) is None  # beyond the inverted region
    assert reuse(info, bbox=None, **args) is None  # the whole layer was not inverted
    for change in (dict(model="other"), dict(url="http://e:1"), dict(invert=None), dict(width=201),
                   dict(fingerprint=js.layer_fingerprint(b"abce" * 6, 3, 2))):
        assert reuse(info, bbox=[60, 40, 50, 40], **dict(args, **change)) is None, change
    whole = js.parse_session_info(js.layer_session_info_json("s10", None, 200, 150, "http://d:1",
                                                             {"x": 0, "y": 0, "width": 200, "height": 150}, None,
                                                             fp, None))
    assert reuse(whole, bbox=None, **dict(args, model="", invert=None)) == "s10"
    assert reuse(None, bbox=None, **args) is None


class LayerClient(FakeClient):
    """A daemon with inversion: sessions made from layers start an invert job unless reused."""

    def __init__(self, plugin, ready=False, reused=False, sessions=()):
        super().__init__(plugin, sessions=sessions)
        self.ready, self.reused = ready, reused

    def create_session(self, png, from_session=None, **kwargs):
        self.calls.append(("create_session", png, from_session, kwargs))
        self.sessions.add("L1")
        return {"session_id": "L1", "model": kwargs.get("model") or "tiny", "reused": self.reused,
                "ready": self.ready, "job_id": None if self.ready else "inv1",
                "region": {"x": 10, "y": 5, "width": 40, "height": 40}}

    def drag(self, sid, handles, targets, mask_png=None, **options):
        if sid == "L1" and not self.ready:
            self.calls.append(("drag", sid))
            raise self.DaemonError("session L1 is still being inverted (job inv1)", 409, "session_inverting")
        return super().drag(sid, handles, targets, mask_png, **options)

    def cancel(self, jid):
        self.calls.append(("cancel", jid))
        raise self.DaemonError("job %s has finished" % jid, 409, "job_finished")


def test_start_layer_inverts_then_drags(plugin):
    d, js = plugin["daemon"], plugin["jobspec"]
    req = js.drag_request(_pair_list(plugin), {"steps": 7})
    create = js.layer_session_request("tiny", [1, 2, 30, 20], {"steps_w": 4})
    c = LayerClient(plugin)
    sent = []
    answer = d.start_layer(c, None, lambda: sent.append(1) or b"PNG", create, req)
    assert answer == {"phase": "invert", "invert_job": "inv1", "session_id": "L1", "reused": False, "model": "tiny",
                      "region": {"x": 10, "y": 5, "width": 40, "height": 40}, "sent_layer": True}
    assert c.calls == [("create_session", b"PNG", None, {"model": "tiny", "selection_bbox": [1, 2, 30, 20],
                                                         "invert": {"steps_w": 4}})]
    # once the inversion is done, the drag runs on the layer's session
    c.ready = True
    assert d.start_drag(c, "L1", None, req, True) == {"phase": "drag", "job_id": "j1", "session_id": "L1"}
    # None values are not sent (the daemon's defaults)
    c2 = LayerClient(plugin, ready=True, reused=True)
    answer = d.start_layer(c2, None, lambda: b"PNG", js.layer_session_request(None, None, None), req)
    assert c2.calls[0] == ("create_session", b"PNG", None, {})
    assert answer["phase"] == "drag" and answer["job_id"] == "j1" and answer["reused"] is True
    assert c2.calls[1][:2] == ("drag", "L1")


def test_start_layer_reuses_the_saved_session(plugin):
    d, js = plugin["daemon"], plugin["jobspec"]
    req = js.drag_request(_pair_list(plugin), {})
    c = LayerClient(plugin, ready=True, sessions=("S0",))
    answer = d.start_layer(c, "S0", lambda: pytest.fail("the layer must not be sent again"), {}, req)
    assert answer["phase"] == "drag" and answer["session_id"] == "S0" and answer["sent_layer"] is False
    assert [k[0] for k in c.calls] == ["drag"]
    # the daemon lost it (restart): the layer is sent again and inverted anew
    c = LayerClient(plugin)
    answer = d.start_layer(c, "gone", lambda: b"PNG", {"model": "tiny"}, req)
    assert answer["phase"] == "invert" and answer["session_id"] == "L1"
    assert [k[0] for k in c.calls] == ["drag", "create_session"]
    # a drag error that is not about the session is reported as it is
    c = LayerClient(plugin, sessions=("S0",))

    def bad_drag(*a, **k):
        raise c.DaemonError("handle (2, 2) lies outside the region", 400, "bad_points")
    c.drag = bad_drag
    with pytest.raises(c.DaemonError, match="outside the region"):
        d.start_layer(c, "S0", lambda: b"PNG", {}, req)
    # a lost layer session says to run again, not to make a new image
    with pytest.raises(c.DaemonError, match="Run again"):
        d.start_drag(FakeClient(plugin, sessions=()), "L1", None, req, True)
    assert d.cancel(LayerClient(plugin), "j1") is None  # already finished: nothing to cancel
