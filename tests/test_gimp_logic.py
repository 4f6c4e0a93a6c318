"""The GIMP plug-in's own logic, outside GIMP: points from paths, the selection's cut at layer offsets,
the dialog's settings as the shared workflow takes them, its words, the watchdog, and the plug-in
folder's rules. The conversation with the daemon is the shared draggan_client/workflow.py
(tests/test_workflow.py), its PNG codec draggan_client/pngcodec.py (tests/test_pngcodec.py)."""
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
sys.path.insert(0, str(REPO))  # draggan_client from the repository, not the plug-in folder's copy (maybe stale)
import draggan_logic as logic  # noqa: E402
import draggan_settings as store  # noqa: E402
import draggan_watchdog  # noqa: E402
from draggan_client import launcher, workflow  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402


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


# ----------------------------------------------------------------------------- the dialog's settings and words

def test_the_dialogs_drag_settings_are_what_the_daemon_accepts():
    from backend.config import Limits
    from backend.geometry import Mapping
    from backend.validation import parse_drag

    settings = logic.drag_settings(40, 12.5, learning_rate=0.01, r1=3.0, r2=0, w_layers=4, feather=5)
    assert settings == workflow.DragSettings(steps=40, mask_lambda=12.5, preview_every=0, learning_rate=0.01,
                                             r1=3.0, r2=None, w_layers=4, feather=5)
    assert logic.drag_settings(5, 20.0, r2=7).options() == {"steps": 5, "mask_lambda": 20.0, "preview_every": 0,
                                                            "w_layers": 6, "r2": 7}  # 0: the daemon's default
    edit = workflow.Edit(4, 6, bytes(96), 4, [((1.0, 2.0), (3.0, 4.0))], settings=settings)
    sent = {}

    class Recorder(DaemonClient):
        def _call(self, method, path, body=None, timeout=None, raw=False):
            sent.update(body=body)
            return {"job_id": "j"}

    Recorder("http://127.0.0.1:1").drag("sid", **workflow.drag_request(edit))
    parsed = parse_drag(json.loads(json.dumps(sent["body"])), Limits(), Mapping(4, 6, 64, 64))
    assert (parsed.steps, parsed.mask_lambda, parsed.learning_rate, parsed.r1, parsed.r2, parsed.w_layers,
            parsed.preview_every, parsed.feather) == (40, 12.5, 0.01, 3.0, None, 4, 0, 5)


def test_the_preset_choice_reaches_the_daemon_as_chosen():
    """The Preset choice's nick reaches the daemon as chosen (the daemon knows every name of
    workflow.PRESETS); an empty one and the default are not sent at all (an older daemon without
    presets still takes the request, workflow.DragSettings.options); the choice's default is the
    daemon's own."""
    from backend.config import Limits
    from backend.geometry import Mapping
    from backend.validation import parse_drag, preset_name

    assert logic.drag_settings(5, 20.0).preset is None
    assert "preset" not in logic.drag_settings(5, 20.0, preset="").options()
    assert "preset" not in logic.drag_settings(5, 20.0, preset=None).options()
    assert logic.DEFAULT_PRESET == preset_name({}) and logic.DEFAULT_PRESET in dict(workflow.PRESETS)
    for name, _label in workflow.PRESETS:
        settings = logic.drag_settings(5, 20.0, preset=name)
        assert settings.options().get("preset", logic.DEFAULT_PRESET) == name
        edit = workflow.Edit(4, 6, bytes(96), 4, [((1.0, 2.0), (3.0, 4.0))], settings=settings)
        sent = json.loads(json.dumps(workflow.drag_request(edit)))
        assert parse_drag(sent, Limits(), Mapping(4, 6, 64, 64)).preset == name


def test_the_dialogs_inversion_settings():
    """0 (W) or -1 (W+, tuning) in the dialog is the daemon's default, 0 skips W+ or the tuning;
    previews are off (the plug-in shows none). What the daemon accepts: tests/test_workflow.py."""
    assert logic.invert_settings() == {"preview_every": 0}
    assert logic.invert_settings(0, -1, -1) == {"preview_every": 0}
    assert logic.invert_settings(20, 0, 10) == {"preview_every": 0, "steps_w": 20, "steps_wplus": 0, "steps_pti": 10}
    assert logic.invert_settings(5, 7, 0) == {"preview_every": 0, "steps_w": 5, "steps_wplus": 7, "steps_pti": 0}


def test_messages_say_what_to_do():
    unreachable = logic.friendly("cannot reach the DragGAN daemon at x", "unreachable")
    assert "Filters > DragGAN > Daemon..." in unreachable and "`draggan serve`" in unreachable
    assert "Daemon..." in logic.friendly("the daemon refused the token", "unauthorized")
    assert "update draggan-studio" in logic.friendly("no", "inversion_unavailable")  # a daemon from before inversion
    assert "Model list" in logic.friendly("model 'x' is not available on this daemon", "unknown_model")
    assert "download it in" in logic.friendly("model 'x' is not downloaded", "model_not_downloaded")
    assert "Select > None" in logic.friendly("the region is fully transparent", "bad_region")
    assert logic.friendly("session x already has job y", "session_busy") == "Session x already has job y"
    assert logic.friendly("model 'x' is not installed", "unknown_model").startswith("Model 'x' is not installed (")


# ----------------------------------------------------------------------------- model lists, the Daemon... panel

CATALOGUE = [
    {"name": "demo", "resolution": 64, "domain": "demo shapes", "licence": "MIT", "downloaded": True,
     "downloading": False, "downloadable": False, "size": None, "note": ""},
    {"name": "zoo-tiny", "resolution": 64, "domain": "test animals", "licence": "test licence", "downloaded": False,
     "downloading": False, "downloadable": True, "size": 1234567, "note": "a test model"},
    {"name": "busy", "resolution": 64, "domain": "x", "licence": "y", "downloaded": False, "downloading": True,
     "downloadable": True, "size": 10, "note": ""},
    {"name": "elsewhere", "resolution": 64, "domain": "x", "licence": "y", "downloaded": False,
     "downloading": False, "downloadable": False, "size": None, "note": "ask the studio"},
    {"name": "mine", "resolution": None, "domain": None, "licence": None, "downloaded": True, "size": 10},
]


def test_model_lists_offer_downloaded_models_after_the_default():
    choices = logic.model_choices(CATALOGUE, "The daemon's default model")
    assert [c[0] for c in choices] == [logic.DEFAULT_MODEL, "demo", "mine"]
    assert choices[0][1] == "The daemon's default model"
    assert choices[1][1] == "demo (64x64, demo shapes)"
    assert logic.model_choices([], "d") == [(logic.DEFAULT_MODEL, "d", "")]  # an unreachable daemon
    assert logic.model_argument(logic.DEFAULT_MODEL) == "" and logic.model_argument(" demo ") == "demo"
    assert all("(" not in c[0] for c in choices[1:])  # model names never look like the default's nick


def test_download_list_shows_size_and_licence_of_what_can_be_downloaded():
    choices = logic.download_choices(CATALOGUE)
    assert [c[0] for c in choices] == ["zoo-tiny"]  # not the downloaded, downloading or URL-less ones
    assert choices[0][1] == "zoo-tiny (64x64, test animals, not downloaded, 1.2 MB), licence: test licence"
    assert choices[0][2] == "a test model"


def test_actions_are_checked():
    assert logic.check_action(" Start ") == "start"
    with pytest.raises(logic.PluginError) as e:
        logic.check_action("reboot")
    assert e.value.calling and "status, save, start, stop, download, setup" in e.value.message


def test_daemon_status_in_words():
    assert logic.daemon_status("http://h:1", None) == "No DragGAN daemon answers at http://h:1."
    assert logic.daemon_status("http://h:1", None, "refused the token") == \
        "No DragGAN daemon answers at http://h:1 (refused the token)."
    assert logic.daemon_status("http://h:1", {"device": "cpu"}, local_pid=42) == \
        "The DragGAN daemon at http://h:1 answers (started from GIMP, process 42), device cpu."
    ended = logic.daemon_status("http://h:1", None, "connection refused", 42, ["Traceback", "MemoryError"])
    assert ended == ("No DragGAN daemon answers at http://h:1 (connection refused). The local daemon started from "
                     "GIMP (process 42) has ended; the end of its log:\nTraceback\nMemoryError")
    assert logic.daemon_status("http://h:1", None, None, 42, []).endswith("(process 42) has ended.")


# ----------------------------------------------------------------------------- stored settings

def test_settings_round_trip_with_mode_0600(tmp_path):
    path = str(tmp_path / "cfg" / "draggan" / "gimp.json")
    settings = store.Settings(url="http://127.0.0.1:9000", token="t0k3n", command="/p/draggan",
                              project_dir="/p", extra_args="--device cpu", keep_running=True, local_pid=123,
                              local_url="http://127.0.0.1:9000")
    assert store.save(settings, path) == path
    assert store.load(path) == (settings, None)
    if os.name == "posix":
        assert os.stat(path).st_mode & 0o777 == 0o600  # it holds the token
        assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0
    settings.token = ""
    store.save(settings, path)  # replaced atomically: no temporary file left behind
    assert store.load(path)[0].token == "" and os.listdir(os.path.dirname(path)) == ["gimp.json"]
    assert settings.daemon_settings() == launcher.DaemonSettings("/p/draggan", "/p", "--device cpu", True, False)


def test_a_missing_settings_file_reads_as_defaults(tmp_path):
    assert store.load(str(tmp_path / "none.json")) == (store.Settings(), None)


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "Expecting property name"),
    (b"[1, 2]", "does not hold a JSON object"),
    (b'{"url": 5}', "'url' must be text"),
    (b'{"keep_running": "yes"}', "'keep_running' must be true or false"),
    (b'{"local_pid": -1}', "'local_pid' must be a process id"),
    (b"\xff\xfe", "utf-8"),
    (b" " * (store.MAX_FILE_BYTES + 1), "larger than"),
])
def test_a_damaged_settings_file_reads_as_defaults_with_a_message(tmp_path, content, reason):
    path = tmp_path / "gimp.json"
    path.write_bytes(content)
    settings, message = store.load(str(path))
    assert settings == store.Settings()
    assert message.startswith("The DragGAN settings file {} is damaged (".format(path)) and reason in message
    assert "Daemon..." in message


def test_unknown_fields_of_a_newer_plugin_are_ignored(tmp_path):
    path = tmp_path / "gimp.json"
    path.write_text(json.dumps({"url": "http://h:1", "future": [1]}))
    assert store.load(str(path)) == (store.Settings(url="http://h:1"), None)


def test_settings_path_follows_xdg_config_home(tmp_path):
    if os.name == "posix":
        assert store.config_path({"XDG_CONFIG_HOME": "/x/cfg"}) == "/x/cfg/draggan/gimp.json"
        assert store.config_path({}).endswith("/.config/draggan/gimp.json")


def test_the_address_and_token_come_from_the_argument_else_the_stored_ones_else_the_environment():
    stored = store.Settings(url="http://stored:1", token="stored-token")
    env = {"DRAGGAN_URL": "http://env:2", "DRAGGAN_TOKEN": "env-token"}
    assert store.effective_url("arg:3", stored, env) == "http://arg:3"
    assert store.effective_url("", stored, env) == "http://stored:1"
    assert store.effective_url(" ", store.Settings(), env) == "http://env:2"
    assert store.effective_url("", store.Settings(), {}) == "http://127.0.0.1:8765"
    assert store.effective_token("a", stored, env) == "a"
    assert store.effective_token("", stored, env) == "stored-token"
    assert store.effective_token("", store.Settings(), env) == "env-token"
    assert store.effective_token("", store.Settings(), {}) is None


@pytest.mark.parametrize("typed, url", [("127.0.0.1:8765", "http://127.0.0.1:8765"),
                                        ("https://gpu.example/api/v1/", "https://gpu.example"), ("", "")])
def test_typed_addresses_are_checked(typed, url):
    assert store.check_url(typed) == url


@pytest.mark.parametrize("typed", ["http://a b", "ftp://host", "http://", "http://:80"])
def test_bad_addresses_are_refused_in_words(typed):
    with pytest.raises(ValueError) as e:
        store.check_url(typed)
    assert "daemon address" in str(e.value)


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
           "gi", "gi.repository", "draggan_logic", "draggan_live", "draggan_settings", "draggan_watchdog",
           "draggan_gimp", "draggan_daemon_panel", "base64", "http.client", "socket", "time",
           "urllib.error", "urllib.parse", "urllib.request", "dataclasses", "collections", "re", "shlex", "shutil",
           "signal"}
CARRIED = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "draggan_client").glob("*.py"))


@pytest.mark.parametrize("name", ["plugin_gimp/draggan/draggan.py", "plugin_gimp/draggan/draggan_logic.py",
                                  "plugin_gimp/draggan/draggan_live.py", "plugin_gimp/draggan/draggan_gimp.py",
                                  "plugin_gimp/draggan/draggan_daemon_panel.py",
                                  "plugin_gimp/draggan/draggan_settings.py", "plugin_gimp/draggan/draggan_watchdog.py",
                                  *CARRIED])
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
    modules = ", ".join(["draggan_logic", "draggan_settings", "draggan_watchdog"] + ["draggan_client." + Path(n).stem for n in CARRIED])
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
        assert {"draggan/draggan.py", "draggan/draggan_logic.py", "draggan/draggan_live.py",
                "draggan/draggan_gimp.py", "draggan/draggan_daemon_panel.py",
                "draggan/draggan_settings.py", "draggan/draggan_watchdog.py"} <= names
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


def dialog_labels(source: str, start: str, end: str | None) -> dict:
    import re
    part = source[source.index(start):source.index(end) if end else None]
    return dict(re.findall(r'add_\w+_argument\("([\w-]+)", "([^"]*)"', part))


@pytest.mark.parametrize("fields, sections, ok_button", [
    (["model-choice", "preset", "steps", "mask-lambda", "keep-outside", "path", "learning-rate", "r1", "r2", "w-layers",
      "points", "inversion-w-steps", "inversion-wplus-steps", "inversion-tuning-steps", "feather", "align",
      "preview-every"],
     [("draggan.py", "def _model_choice_argument", "class DragGAN"),
      ("draggan.py", "if name == DRAG_PROC:", "if name == NEW_PROC:")], ""),  # _preset_argument is in the first
    (["model-choice", "seed", "psi"],
     [("draggan.py", "def _model_choice_argument", "class DragGAN"),
      ("draggan.py", "if name == NEW_PROC:", "if name == DAEMON_PROC:")], ""),
    (["action", "server-url", "token", "program", "project-folder", "extra-args", "keep-running", "download-choice"],
     [("draggan_daemon_panel.py", "def daemon_procedure", None)], "a"),  # its OK button says _Apply
])
def test_the_dialogs_mnemonics_are_unique(fields, sections, ok_button):
    """GIMP warns about a mnemonic used twice in a procedure dialog (its own buttons included)."""
    labels = {}
    for name, start, end in sections:
        labels.update(dialog_labels((PLUGIN / name).read_text(), start, end))
    shown = [labels[name] for name in fields]
    letters = [label[label.index("_") + 1].lower() for label in shown if "_" in label]
    assert len(letters) == len(shown), [label for label in shown if "_" not in label]
    buttons = {"l", "s", "o", "c", "r", "h"} | set(ok_button)  # load/save defaults, OK, Cancel, Reset, Help
    assert len(set(letters)) == len(letters) and not set(letters) & buttons, sorted(letters)


def test_tracked_strokes_read_back_as_the_drags_from_the_tracked_handles():
    """The path written after a drag is one the next drag reads: from each tracked handle to its target,
    in image coordinates (layer pixels + offsets)."""
    strokes = logic.tracked_strokes([[10.5, 20.25], [3.0, 4.0]], [[30.0, 40.0], [5.0, 6.0]], 8, 4)
    assert logic.drags_from_strokes(strokes) == [((18.5, 24.25), (38.0, 44.0)), ((11.0, 8.0), (13.0, 10.0))]
    assert logic.tracked_strokes([], [], 0, 0) == []


def test_the_align_path_gives_the_four_landmarks_in_order():
    stroke = [v for x, y in [(10, 20), (30, 21), (14, 40), (28, 41)] for v in [x, y] * 3]
    assert logic.align_from_strokes([stroke]) == {"left_eye": [10.0, 20.0], "right_eye": [30.0, 21.0],
                                                  "mouth_left": [14.0, 40.0], "mouth_right": [28.0, 41.0]}
    with pytest.raises(logic.PluginError, match="exactly four anchors.*1 stroke of 3 anchors"):
        logic.align_from_strokes([stroke[:18]])
    with pytest.raises(logic.PluginError, match="2 strokes of 4 \\+ 4 anchors"):
        logic.align_from_strokes([stroke, stroke])


def test_the_align_argument_takes_landmarks_or_a_box_and_moves_to_the_layer():
    marks = logic.align_from_json('{"left_eye": [10, 20], "right_eye": [30, 21], "mouth_left": [14, 40], '
                                  '"mouth_right": [28, 41]}')
    assert logic.align_to_layer(marks, 8, 4)["mouth_right"] == [20.0, 37.0]
    box = logic.align_from_json('{"box": {"center": [50, 60], "width": 40, "angle": -12.5}}')
    assert logic.align_to_layer(box, 8, 4) == {"box": {"center": [42.0, 56.0], "width": 40, "angle": -12.5}}
    for bad in ['[1, 2]', '{"left_eye": [1, 2]}', '{"box": {"width": 4}}', '{"box": {"center": [1, 2], "width": 4, '
                '"spin": 3}}', '{"box": {"center": [1, 2], "width": true}}', 'nope']:
        with pytest.raises(logic.PluginError, match="align"):
            logic.align_from_json(bad)
