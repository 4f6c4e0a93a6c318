"""The GIMP plug-in's logic, outside GIMP: points from paths, selection masks at layer offsets,
requests the daemon accepts, answers, session reuse, and the plug-in folder's rules. (Its PNG codec
is the shared draggan_client/pngcodec.py: tests/test_pngcodec.py.)"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugin_gimp" / "draggan"
sys.path.insert(0, str(PLUGIN))
import draggan_logic as logic  # noqa: E402
import draggan_watchdog  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402
from draggan_client.pngcodec import decode_png, encode_png  # noqa: E402


def cps(*anchors):
    """GIMP's control points for a stroke through the anchors (handles on the anchors)."""
    out = []
    for x, y in anchors:
        out += [x - 1, y - 1, x, y, x + 1, y + 1]  # in-handle, anchor, out-handle
    return out


# ----------------------------------------------------------------------------- points

def test_anchors_are_the_middle_pair_of_each_six():
    assert logic.anchors([0, 0, 10, 20, 5, 5, 1, 1, 30.5, 40, 2, 2]) == [(10, 20), (30.5, 40)]
    with pytest.raises(logic.PluginError, match="6 per anchor"):
        logic.anchors([1, 2, 3, 4, 5])


def test_each_stroke_is_one_drag_first_anchor_to_last():
    drags = logic.drags_from_strokes([cps((12, 12), (15, 13), (20, 14)), cps((30.5, 20), (40, 30))], "drags")
    assert drags == [((12, 12), (20, 14)), ((30.5, 20), (40, 30))]


def test_a_one_anchor_stroke_is_refused_with_what_to_do():
    with pytest.raises(logic.PluginError) as e:
        logic.drags_from_strokes([cps((1, 2), (3, 4)), cps((5, 6))], "drags")
    assert e.value.calling
    assert "stroke 2 of path 'drags' has only one anchor" in e.value.message
    assert "Click a second point" in e.value.message


def test_a_path_without_strokes_is_refused():
    with pytest.raises(logic.PluginError, match="has no strokes.*Paths tool"):
        logic.drags_from_strokes([], "drags")


def test_points_json_in_both_shapes():
    assert logic.drags_from_json("[[1, 2, 3, 4.5]]") == [((1, 2), (3, 4.5))]
    assert logic.drags_from_json("[[[1, 2], [3, 4]], [5, 6, 7, 8]]") == [((1, 2), (3, 4)), ((5, 6), (7, 8))]
    for bad, words in [("[[1, 2, 3]", "not valid JSON"), ("[]", "non-empty"), ("{}", "non-empty"),
                       ('[[1, 2, 3, "x"]]', "item 1"), ("[[1, 2, 3, NaN]]", "item 1"), ("[[true, 2, 3, 4]]", "item 1")]:
        with pytest.raises(logic.PluginError, match=words):
            logic.drags_from_json(bad)


def test_points_move_to_layer_pixels_and_must_lie_on_the_layer():
    drags = [((18.0, 14.0), (27.0, 20.0))]
    assert logic.to_layer(drags, 8, 4, 64, 64) == [((10.0, 10.0), (19.0, 16.0))]
    assert logic.to_layer([((8.0, 4.0), (71.4, 67.3))], 8, 4, 64, 64) == [((0.0, 0.0), (63.0, 63.0))]
    with pytest.raises(logic.PluginError, match="target of drag 1 .80, 10. is outside the layer"):
        logic.to_layer([((10.0, 10.0), (80.0, 10.0))], 8, 4, 64, 64)
    with pytest.raises(logic.PluginError, match="handle of drag 2"):
        logic.to_layer([((10.0, 10.0), (11.0, 10.0)), ((2.0, 10.0), (11.0, 10.0))], 8, 4, 64, 64)


# ----------------------------------------------------------------------------- masks

def test_selection_is_cut_at_the_layer_offsets_keeping_soft_values():
    sel = np.zeros((40, 50), np.uint8)
    sel[10:20, 10:30] = 255
    sel[10:20, 9] = 128  # a soft edge
    plane = sel.tobytes()
    out = np.frombuffer(logic.crop_plane(plane, 50, 40, 5, 8, 30, 20), np.uint8).reshape(20, 30)
    assert (out == sel[8:28, 5:35]).all()
    assert 128 in out
    # a layer sticking out on every side: outside the image counts as unselected
    out = np.frombuffer(logic.crop_plane(plane, 50, 40, -3, -2, 60, 45), np.uint8).reshape(45, 60)
    expected = np.zeros((45, 60), np.uint8)
    expected[2:42, 3:53] = sel
    assert (out == expected).all()
    assert logic.crop_plane(plane, 50, 40, 60, 0, 4, 3) == bytes(12)
    assert logic.crop_plane(plane, 50, 40, 0, 50, 4, 3) == bytes(12)
    with pytest.raises(ValueError):
        logic.crop_plane(plane[:-1], 50, 40, 0, 0, 4, 4)


def test_the_mask_sent_for_a_selection():
    assert logic.editable_mask(None, 4, 2) is None  # no selection: the whole layer
    assert logic.editable_mask(b"\xff" * 8, 4, 2) is None  # everything selected: the same
    soft = bytes([0, 0, 128, 255, 255, 40, 0, 0])
    assert logic.editable_mask(soft, 4, 2) == soft
    with pytest.raises(logic.PluginError, match="does not touch this layer"):
        logic.editable_mask(bytes(8), 4, 2)


# ----------------------------------------------------------------------------- PNG

def test_rgb_from_rgba():
    assert logic.rgb_from_rgba(bytes([1, 2, 3, 4, 5, 6, 7, 8])) == bytes([1, 2, 3, 5, 6, 7])


# ----------------------------------------------------------------------------- requests and answers

def test_drag_request_is_what_the_daemon_accepts():
    from backend.config import Limits
    from backend.geometry import Mapping
    from backend.validation import parse_drag

    mask = bytes([0, 100, 255, 255] * 6)
    request = logic.drag_request([((1.0, 2.0), (3.0, 4.0)), ((0.0, 5.0), (2.5, 1.0))],
                                 encode_png(4, 6, 1, mask),
                                 logic.drag_options(40, 12.5, learning_rate=0.01, r1=3.0, r2=0, w_layers=4))
    sent = {}

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.update(method=method, path=path, body=body)
            return {"job_id": "j"}

    Recorder("http://127.0.0.1:1").drag("sid", **request)
    assert (sent["method"], sent["path"]) == ("POST", "/sessions/sid/drag")
    body = json.loads(json.dumps(sent["body"]))
    parsed = parse_drag(body, Limits(), Mapping(4, 6, 64, 64))
    assert parsed.handles == [(1.0, 2.0), (0.0, 5.0)] and parsed.targets == [(3.0, 4.0), (2.5, 1.0)]
    assert (parsed.steps, parsed.mask_lambda, parsed.learning_rate, parsed.r1, parsed.r2, parsed.w_layers) == \
        (40, 12.5, 0.01, 3.0, None, 4)
    assert np.asarray(parsed.mask).tobytes() == mask  # soft values arrive as sent
    assert parsed.preview_every == 0
    no_mask = logic.drag_request([((1.0, 2.0), (3.0, 4.0))], None, logic.drag_options(5, 20.0))
    Recorder("http://127.0.0.1:1").drag("sid", **no_mask)
    assert "mask" not in sent["body"] and "learning_rate" not in sent["body"]


def test_progress_text_and_fraction():
    assert logic.progress({"state": "queued", "queue_position": 2}) == \
        (0.0, "DragGAN: waiting for the daemon (place 2 in the queue)")
    fraction, text = logic.progress({"state": "running", "step": 30, "max_steps": 120, "distance": 7.25,
                                     "eta_seconds": 12.2})
    assert fraction == 0.25 and text == "DragGAN: step 30/120, 7.2 px to go, about 13 s left"
    assert logic.progress({"state": "running", "step": 0, "max_steps": 0}) == (0.0, "DragGAN: step 0/0")


def test_job_answers():
    done = {"state": "done", "step": 12, "reason": "reached"}
    assert logic.finished_job(done) is done
    assert logic.layer_name(done) == "DragGAN drag (12 steps, targets reached)"
    with pytest.raises(logic.PluginError, match="failed on the daemon: out of memory"):
        logic.finished_job({"state": "failed", "error": {"code": "x", "message": "out of memory"}})
    with pytest.raises(logic.PluginError, match="cancelled.*unchanged"):
        logic.finished_job({"state": "cancelled"})


def test_messages_say_what_to_do():
    assert "Start it with `draggan serve`" in logic.friendly("cannot reach the DragGAN daemon at x", "unreachable")
    assert "Token field" in logic.friendly("the daemon refused the token", "unauthorized")
    assert "update draggan-studio" in logic.friendly("no", "inversion_unavailable")  # a daemon from before inversion
    assert "Model field" in logic.friendly("model 'x' is not available on this daemon", "unknown_model")
    assert "Select > None" in logic.friendly("the region is fully transparent", "bad_region")
    assert logic.friendly("session x already has job y", "session_busy") == "Session x already has job y"
    assert logic.friendly("model 'x' is not installed", "unknown_model").startswith("Model 'x' is not installed (")


# ----------------------------------------------------------------------------- sessions

class FakeClient:
    """The daemon's session answers: from_session copies of generated sessions unless refused
    (409 different_picture); a layer without from_session starts an inversion."""

    def __init__(self, sessions, refuse=()):
        self.sessions, self.refuse, self.calls = sessions, refuse, []

    def session(self, sid):
        self.calls.append(("session", sid))
        if sid not in self.sessions:
            raise DaemonError("gone", 404, "unknown_session")
        return self.sessions[sid]

    def create_session(self, png, from_session=None, **real):
        self.calls.append(("create_session", from_session) + ((real,) if real else ()))
        if from_session is None:
            return {"session_id": "real", "reused": False, "job_id": "inv"}
        if from_session in self.refuse:
            raise DaemonError("the image differs from session x's picture", 409, "different_picture")
        return {"session_id": "copy-of-" + from_session}

    def generate(self, seed, model=None, psi=None):
        self.calls.append(("generate", seed, model, psi))
        return {"session_id": "new", "width": 64, "height": 64}


def info_for(handles, origin="generated"):
    return logic.session_info({"session_id": "s1", "model": "tiny", "width": 64, "height": 64,
                               "handles": handles, "targets": handles}, "http://x", seed=5, psi=0.7, origin=origin)


def test_a_layer_showing_its_session_reuses_it():
    client = FakeClient({"s1": {"width": 64, "height": 64, "handles": [[1.0, 2.0]], "targets": [[1.0, 2.0]]}})
    assert logic.resolve_session(client, info_for([[1.0, 2.0]]), 64, 64, lambda: b"png") == "s1"
    assert client.calls == [("session", "s1")]


def test_an_older_or_scaled_picture_gets_a_session_from_the_daemon():
    state = {"width": 64, "height": 64, "handles": [[9.0, 9.0]], "targets": [[9.0, 9.0]]}
    client = FakeClient({"s1": state})
    assert logic.resolve_session(client, info_for([]), 64, 64, lambda: b"png") == "copy-of-s1"
    client = FakeClient({"s1": state})  # a scaled layer
    assert logic.resolve_session(client, info_for([[9.0, 9.0]]), 128, 128, lambda: b"png") == "copy-of-s1"


def test_a_generated_picture_is_regenerated_from_its_seed():
    state = {"width": 64, "height": 64, "handles": [[9.0, 9.0]], "targets": [[9.0, 9.0]]}
    client = FakeClient({"s1": state}, refuse=("s1",))  # the session moved on
    assert logic.resolve_session(client, info_for([]), 64, 64, lambda: b"png") == "new"
    assert client.calls[-1] == ("generate", 5, "tiny", 0.7)
    client = FakeClient({})  # the daemon restarted
    assert logic.resolve_session(client, info_for([]), 64, 64, lambda: b"png") == "new"
    client = FakeClient({})  # ... and the layer was scaled
    assert logic.resolve_session(client, info_for([]), 32, 32, lambda: b"png") == "copy-of-new"


def test_other_pictures_need_inversion():
    """None: the layer goes to the daemon as a real layer (edit() then inverts it)."""
    client = FakeClient({})
    assert logic.resolve_session(client, None, 64, 64, lambda: b"png") is None
    assert client.calls == []
    client = FakeClient({})  # a dragged layer whose session is gone cannot be regenerated
    assert logic.resolve_session(client, info_for([[1.0, 1.0]], origin="drag"), 64, 64, lambda: b"png") is None
    assert ("generate", 5, "tiny", 0.7) not in client.calls
    # a scaled generated layer whose regenerated picture differs (painted on): inversion as well
    client = FakeClient({}, refuse=("new",))
    assert logic.resolve_session(client, info_for([]), 32, 32, lambda: b"png") is None
    assert client.calls[-1] == ("create_session", "new")


def test_unexpected_daemon_errors_are_not_taken_for_other_pictures():
    class Broken(FakeClient):
        def create_session(self, png, from_session=None, **real):
            raise DaemonError("token refused", 401, "unauthorized")

    with pytest.raises(DaemonError, match="token refused"):
        logic.resolve_session(Broken({"s1": {"width": 64, "height": 64, "handles": [], "targets": []}}),
                              info_for([[3.0, 3.0]]), 64, 64, lambda: b"png")


def test_session_info_round_trip():
    info = info_for([[1.5, 2.0]])
    assert logic.decode_info(logic.encode_info(info)) == info
    assert logic.decode_info(b"not json") is None and logic.decode_info(None) is None
    assert logic.decode_info(b'{"x": 1}') is None


# ----------------------------------------------------------------------------- watchdog

def test_watchdog_cancels_named_jobs_unless_told_done():
    cancelled = []
    assert not draggan_watchdog.watch(["job a\n", "job b\n"], cancelled.append)
    assert cancelled == ["a", "b"]
    cancelled.clear()
    assert draggan_watchdog.watch(["job a\n", "done\n"], cancelled.append)
    assert cancelled == []

    def refuse(job_id):
        raise DaemonError("already finished", 409, "job_finished")

    assert not draggan_watchdog.watch(["job a\n"], refuse)


# ----------------------------------------------------------------------------- the plug-in folder

def test_the_plugin_file_is_an_executable_python3_script():
    main = PLUGIN / "draggan.py"
    assert main.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(main, os.X_OK), "GIMP ignores a plug-in file that is not executable"


ALLOWED = {"os", "sys", "subprocess", "tempfile", "threading", "json", "math", "struct", "zlib", "typing",
           "gi", "gi.repository", "draggan_logic", "draggan_watchdog", "base64", "http.client", "socket", "time",
           "urllib.error", "urllib.parse", "urllib.request"}
CARRIED = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "draggan_client").glob("*.py"))


@pytest.mark.parametrize("name", ["plugin_gimp/draggan/draggan.py", "plugin_gimp/draggan/draggan_logic.py",
                                  "plugin_gimp/draggan/draggan_watchdog.py", *CARRIED])
def test_the_plugin_imports_only_the_standard_library_and_gi(name):
    tree = ast.parse((REPO / name).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module if not node.level else "." * node.level + (node.module or ""))
    own = {m for m in imported if m.startswith(("draggan_client", "."))}  # the carried package, relative inside it
    assert imported - own <= ALLOWED, imported - own - ALLOWED


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3")
def test_the_installed_plugin_modules_load_in_the_system_python(tmp_path):
    """GIMP runs the plug-in with the system python3, never the project's venv."""
    subprocess.run(["bash", str(REPO / "scripts/install_gimp_plugin.sh"), str(tmp_path)], check=True,
                   capture_output=True)
    modules = ", ".join(["draggan_logic", "draggan_watchdog"] + ["draggan_client." + Path(n).stem for n in CARRIED])
    p = subprocess.run(["/usr/bin/python3", "-I", "-c", "import sys; sys.path.insert(0, '.'); "
                        "import " + modules + "; print('ok')"],
                       cwd=tmp_path / "draggan", capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert p.stdout.strip() == "ok", p.stderr


def test_package_and_install(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "scripts/package_gimp.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    import zipfile
    with zipfile.ZipFile(next(tmp_path.glob("draggan-gimp-*.zip"))) as z:
        names = set(z.namelist())
        assert {"draggan/draggan.py", "draggan/draggan_logic.py", "draggan/draggan_watchdog.py"} <= names
        for name in CARRIED:  # the carried client side, unchanged
            assert z.read("draggan/" + name) == (REPO / name).read_bytes()
        assert (z.getinfo("draggan/draggan.py").external_attr >> 16) & 0o111
    if shutil.which("bash"):
        home = tmp_path / "home"
        p = subprocess.run(["bash", str(REPO / "scripts/install_gimp_plugin.sh")], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
        assert p.returncode == 0, p.stderr
        for version in ("3.0", "3.2"):
            dest = home / ".config" / "GIMP" / version / "plug-ins" / "draggan"
            assert os.access(dest / "draggan.py", os.X_OK)
            for name in CARRIED:
                assert (dest / name).read_bytes() == (REPO / name).read_bytes()


def test_the_images_session_is_only_used_after_the_daemon_compared_the_pixels():
    state = {"width": 64, "height": 64, "handles": [], "targets": []}
    client = FakeClient({"s1": state})
    assert logic.resolve_session(client, info_for([]), 64, 64, lambda: b"png", trusted=False) == "copy-of-s1"
    client = FakeClient({"s1": state}, refuse=("s1",))  # other pixels: no silent regeneration from the seed,
    assert logic.resolve_session(client, info_for([]), 64, 64, lambda: b"png", trusted=False) is None  # inversion
    assert not [c for c in client.calls if c[0] == "generate"]


# ----------------------------------------------------------------------------- real layers (GAN inversion)

def test_the_selection_box_holds_the_selection_and_every_drag():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 255
    mask[6, 4] = 20  # soft pixels count
    assert logic.mask_bbox(mask.tobytes(), 12, 10) == [3, 2, 4, 5]
    assert logic.mask_bbox(mask.tobytes(), 12, 10, [((4.0, 3.0), (9.4, 1.0))]) == [3, 1, 8, 6]
    assert logic.mask_bbox(None, 12, 10, [((4.0, 3.0), (9.4, 1.0))]) is None  # no selection: the whole layer
    assert logic.mask_bbox(bytes(120), 12, 10) is None
    with pytest.raises(ValueError):
        logic.mask_bbox(bytes(5), 12, 10)


def test_a_real_sessions_region_must_hold_the_drags_and_the_selection():
    region = {"x": 10, "y": 20, "width": 30, "height": 40}
    drag = [((10.0, 20.0), (39.0, 59.0))]
    assert logic.inside_region(drag, [12, 22, 5, 5], region, 100, 100)
    assert not logic.inside_region([((10.0, 20.0), (39.5, 59.0))], [12, 22, 5, 5], region, 100, 100)
    assert not logic.inside_region(drag, [12, 22, 30, 5], region, 100, 100)
    assert not logic.inside_region(drag, None, region, 100, 100)  # no selection: the whole layer may change
    assert logic.inside_region(drag, None, {"x": 0, "y": 0, "width": 100, "height": 100}, 100, 100)
    assert not logic.inside_region(drag, None, None, 100, 100)


def test_invert_settings_are_what_the_daemon_accepts():
    from backend.config import Limits
    from backend.validation import parse_session

    assert logic.invert_settings() == {"preview_every": 0}  # every step count: the daemon's default
    assert logic.invert_settings(20, 0, 10) == {"preview_every": 0, "steps_w": 20, "steps_wplus": 0, "steps_pti": 10}
    sent = {}

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.update(method=method, path=path, body=body)
            return {"session_id": "s"}

    png = encode_png(4, 3, 4, bytes(range(48)))
    Recorder("http://127.0.0.1:1").create_session(png, model="tiny", selection_bbox=[1, 0, 2, 2],
                                                  invert=logic.invert_settings(20, 0, 10))
    assert (sent["method"], sent["path"]) == ("POST", "/sessions")
    req = parse_session(json.loads(json.dumps(sent["body"])), Limits())
    assert (req.model, req.selection_bbox, req.region, req.from_session) == ("tiny", (1, 0, 2, 2), None, None)
    assert (req.invert.steps_w, req.invert.steps_wplus, req.invert.steps_pti, req.invert.preview_every) == \
        (20, 0, 10, 0)
    assert np.asarray(req.image).tobytes() == bytes(range(48))  # RGBA, alpha kept


def test_inversion_progress_shows_stage_step_and_psnr():
    status = {"kind": "invert", "state": "running", "step": 30, "max_steps": 120, "eta_seconds": 4.5,
              "inversion": {"stage": "w+", "stage_step": 10, "stage_steps": 40, "psnr": 23.456}}
    assert logic.progress(status) == (0.25, "DragGAN: fitting the model to the layer, W+ projection step 10/40, "
                                            "PSNR 23.5 dB, about 5 s left")
    status["inversion"] = {"stage": None, "stage_step": 0, "stage_steps": 0, "psnr": None}
    assert logic.progress(dict(status, step=0)) == (0.0, "DragGAN: fitting the model to the layer, about 5 s left")
    assert logic.progress({"kind": "invert", "state": "queued", "queue_position": 1})[1] == \
        "DragGAN: waiting for the daemon (place 1 in the queue) to fit the model to the layer"
    with pytest.raises(logic.PluginError, match="fitting of the model to the layer .GAN inversion. was cancelled"):
        logic.finished_job({"kind": "invert", "state": "cancelled"})
    with pytest.raises(logic.PluginError, match="inversion. failed on the daemon: bad"):
        logic.finished_job({"kind": "invert", "state": "failed", "error": {"message": "bad"}})
    assert logic.layer_name({"step": 3, "reason": "max_steps"}, 27.04) == \
        "DragGAN drag (3 steps, step limit, model fit 27.0 dB)"


class FakeDaemon(FakeClient):
    """FakeClient plus jobs: a real layer's session 'real' is inverted by job 'inv'; drags answer at once."""

    url = "http://fake"

    def __init__(self, sessions, reused=False, busy=0, invert_state="done"):
        super().__init__(sessions)
        self.reused, self.busy, self.invert_state = reused, busy, invert_state
        self.real = {"session_id": "real", "model": "tiny", "width": 200, "height": 150, "handles": [],
                     "targets": [], "region": {"x": 50, "y": 20, "width": 100, "height": 100}, "ready": True,
                     "invert_job": "inv"}

    def create_session(self, png, from_session=None, **real):
        made = super().create_session(png, from_session, **real)
        if from_session is None:
            self.sessions["real"] = self.real
            made.update(reused=self.reused, job_id=None if self.reused else "inv")
        return made

    def drag(self, sid, handles, targets, mask_png=None, **options):
        self.calls.append(("drag", sid, dict(options, handles=handles, targets=targets, mask=mask_png is not None)))
        if self.busy:
            self.busy -= 1
            raise DaemonError("session real already has job inv", 409, "session_busy")
        self.sessions[sid] = dict(self.sessions[sid], handles=[[12.0, 34.0]], targets=targets)
        return {"job_id": "drag-1", "kind": "drag", "state": "queued"}

    def wait(self, job_id, on_progress=None, **kw):
        self.calls.append(("wait", job_id))
        if job_id == "inv":
            final = {"job_id": "inv", "kind": "invert", "state": self.invert_state, "step": 30, "max_steps": 30,
                     "inversion": {"stage": "pti", "stage_step": 10, "stage_steps": 10, "psnr": 31.25}}
        else:
            final = {"job_id": job_id, "kind": "drag", "state": "done", "step": 7, "reason": "reached",
                     "changed": {"x": 60, "y": 30, "width": 20, "height": 10}}
        on_progress(final)
        return final

    def job(self, job_id):
        self.calls.append(("job", job_id))
        raise DaemonError("unknown job", 404, "unknown_job")

    def result(self, job_id):
        return encode_png(200, 150, 4, bytes(200 * 150 * 4))


def run_edit(client, info=None, trusted=True, mask=None, **kw):
    jobs, statuses = [], []
    rgba = bytes(range(256)) * (200 * 150 * 4 // 256) + bytes(200 * 150 * 4 % 256)
    out = logic.edit(client, info, trusted, 200, 150, rgba, [((70.0, 40.0), (80.0, 45.0))], mask,
                     logic.drag_options(7, 20.0), model=kw.pop("model", "tiny"),
                     invert=logic.invert_settings(20, 0, 10), feather=6, watch_job=jobs.append,
                     on_status=statuses.append, sleep=lambda s: None, **kw)
    return out, jobs, statuses


def test_a_real_layer_is_inverted_then_dragged():
    client = FakeDaemon({})
    mask = np.zeros((150, 200), np.uint8)
    mask[30:60, 60:100] = 255
    out, jobs, statuses = run_edit(client, mask=mask.tobytes())
    create = [c for c in client.calls if c[0] == "create_session"]
    assert create == [("create_session", None, {"model": "tiny", "selection_bbox": [60, 30, 40, 30],
                                                "invert": {"preview_every": 0, "steps_w": 20, "steps_wplus": 0,
                                                           "steps_pti": 10}})]
    assert jobs == ["inv", "drag-1"]  # the watchdog knows both jobs
    assert [s["kind"] for s in statuses] == ["invert", "drag", "drag"]
    drag = [c for c in client.calls if c[0] == "drag"][0]
    assert drag[1] == "real" and drag[2]["feather"] == 6 and drag[2]["mask"]
    assert drag[2]["handles"] == [[70.0, 40.0]] and drag[2]["targets"] == [[80.0, 45.0]]
    assert out["real"] and not out["reused"] and out["psnr"] == 31.25
    assert out["changed"] == {"x": 60, "y": 30, "width": 20, "height": 10}
    info = out["info"]
    assert (info["session_id"], info["origin"], info["region"], info["handles"]) == \
        ("real", "layer", client.real["region"], [[12.0, 34.0]])
    assert info["seed"] is None and logic.decode_info(logic.encode_info(info)) == info


def test_the_layer_png_sent_for_inversion_keeps_alpha():
    sent = []

    class Keep(FakeDaemon):
        def create_session(self, png, from_session=None, **real):
            sent.append(png)
            return super().create_session(png, from_session, **real)

    run_edit(Keep({}))
    w, h, channels, pixels = decode_png(sent[0])
    assert (w, h, channels) == (200, 150, 4) and pixels[:8] == bytes(range(8))


def test_a_reused_real_session_is_dragged_at_once():
    client = FakeDaemon({}, reused=True)
    out, jobs, statuses = run_edit(client)  # no selection: no selection_bbox (the whole layer)
    assert [c for c in client.calls if c[0] == "create_session"][0][2]["selection_bbox"] is None
    assert jobs == ["drag-1"] and ("wait", "inv") not in client.calls
    assert out["reused"] and out["real"] and out["psnr"] is None  # the daemon forgot the old invert job


def test_the_daemon_gets_a_moment_to_release_the_session_after_the_inversion():
    client = FakeDaemon({}, busy=2)
    out, jobs, _ = run_edit(client)
    assert len([c for c in client.calls if c[0] == "drag"]) == 3 and out["final"]["state"] == "done"
    client = FakeDaemon({}, reused=True, busy=1)  # not after an inversion of ours: another client's job
    with pytest.raises(DaemonError, match="already has job"):
        run_edit(client)


def test_a_cancelled_inversion_is_an_error_and_no_drag():
    client = FakeDaemon({}, invert_state="cancelled")
    with pytest.raises(logic.PluginError, match="cancelled on the daemon; the image is unchanged"):
        run_edit(client)
    assert not [c for c in client.calls if c[0] == "drag"]


def real_info(handles, region=None):
    return logic.session_info({"session_id": "real", "model": "tiny", "width": 200, "height": 150,
                               "handles": handles, "targets": handles,
                               "region": region or {"x": 50, "y": 20, "width": 100, "height": 100}},
                              "http://fake", origin="layer")


def test_a_real_layers_result_is_dragged_again_on_its_session():
    client = FakeDaemon({})
    client.sessions["real"] = dict(client.real, handles=[[1.0, 2.0]], targets=[[1.0, 2.0]])
    mask = np.zeros((150, 200), np.uint8)
    mask[30:60, 60:100] = 255
    out, jobs, _ = run_edit(client, real_info([[1.0, 2.0]]), mask=mask.tobytes(), model="")
    assert not [c for c in client.calls if c[0] == "create_session"] and jobs == ["drag-1"]
    assert out["real"] and out["reused"] and out["info"]["origin"] == "layer"


@pytest.mark.parametrize("change", ["moved_on", "untrusted", "outside", "no_selection", "other_model", "gone"])
def test_a_real_layer_goes_back_to_the_daemon_when_its_session_does_not_fit(change):
    """The layer is sent again (the daemon finds its session by the pixels, or inverts anew), never
    copied with from_session (which real layers' sessions refuse)."""
    client = FakeDaemon({})
    client.sessions["real"] = dict(client.real, handles=[[1.0, 2.0]], targets=[[1.0, 2.0]])
    mask = np.zeros((150, 200), np.uint8)
    mask[30:60, 60:100] = 255
    info, trusted, model = real_info([[1.0, 2.0]]), True, ""
    if change == "moved_on":
        info = real_info([[5.0, 5.0]])
    elif change == "untrusted":
        trusted = False
    elif change == "outside":
        mask[0:5, 0:5] = 255
    elif change == "no_selection":
        mask[:] = 255
    elif change == "other_model":
        model = "other"
    else:
        del client.sessions["real"]
    out, _, _ = run_edit(client, info, trusted, mask=mask.tobytes(), model=model)
    create = [c for c in client.calls if c[0] == "create_session"]
    assert len(create) == 1 and create[0][1] is None
    assert create[0][2]["model"] == (model or "tiny")  # the image's model unless one is given
    assert out["real"]


def test_a_generated_picture_is_dragged_as_before():
    client = FakeDaemon({"s1": {"session_id": "s1", "model": "tiny", "width": 64, "height": 64,
                                "handles": [[1.0, 2.0]], "targets": [[1.0, 2.0]], "region": None}})
    rgba = bytes(64 * 64 * 4)
    jobs = []
    out = logic.edit(client, info_for([[1.0, 2.0]]), True, 64, 64, rgba, [((10.0, 10.0), (20.0, 12.0))], None,
                     logic.drag_options(5, 20.0), model="other", invert={}, feather=8, watch_job=jobs.append)
    drag = [c for c in client.calls if c[0] == "drag"][0]
    assert drag[1] == "s1" and "feather" not in drag[2]  # nothing only real layers take
    assert not [c for c in client.calls if c[0] in ("create_session", "generate")] and jobs == ["drag-1"]
    assert not out["real"] and not out["reused"] and out["psnr"] is None
    assert (out["info"]["origin"], out["info"]["seed"], out["info"]["psi"]) == ("drag", 5, 0.7)
    assert "region" not in out["info"]


def test_the_drag_dialogs_mnemonics_are_unique():
    """GIMP warns about a mnemonic used twice in a procedure dialog (its own buttons included)."""
    import re

    source = (PLUGIN / "draggan.py").read_text()
    drag = source[source.index("def _daemon_arguments"):source.index("class DragGAN")] + \
        source[source.index("if name == DRAG_PROC:"):source.index("if name == NEW_PROC:")]
    labels = re.findall(r'add_\w+_argument\("[\w-]+", "([^"]*)"', drag)
    assert len(labels) == 16, labels
    letters = [label[label.index("_") + 1].lower() for label in labels if "_" in label]
    assert len(letters) == len(labels), [label for label in labels if "_" not in label]
    buttons = {"l", "s", "o", "c", "r", "h"}  # load/save defaults, OK, Cancel, Reset, Help
    assert len(set(letters)) == len(letters) and not set(letters) & buttons, sorted(letters)
