"""The GIMP plug-in in a real GIMP (3.0 from Debian 13, 3.2 from Debian forky, each in a chroot),
driven headless by tests/gimp/driver.py against a real daemon serving a tiny random model.

Needs root (chroot, mounts). A chroot that is not there is built only with DRAGGAN_GIMP_E2E_BUILD=1
(about 2 minutes and 1 GB each, network needed); otherwise that GIMP version is skipped with the
command that builds it. DRAGGAN_GIMP_E2E=0 skips these tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "gimp"))
import editor_gate as gate  # noqa: E402
from daemon_process import MODEL, REPO, dead_url, running_daemon, write_tiny_model  # noqa: E402
from demo_layers import tilted_cat  # noqa: E402

PLUGIN = REPO / "plugin_gimp" / "draggan"
TOKEN = "gimp-e2e-token-0123456789"
PACKAGES = ["gimp", "python3-gi", "gir1.2-gimp-3.0"]
SUITES = {
    "3.0": ("trixie", os.environ.get("DRAGGAN_TRIXIE_ROOT", "/var/tmp/draggan-trixie")),
    "3.2": ("forky", os.environ.get("DRAGGAN_FORKY_ROOT", "/var/tmp/draggan-forky")),
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DRAGGAN_GIMP_E2E") == "0", reason="DRAGGAN_GIMP_E2E=0"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("chroot"),
                       reason="the GIMP end-to-end test needs root and chroot (it runs GIMP in a Debian chroot)"),
]


def ensure_chroot(version: str) -> str:
    suite, root = SUITES[version]
    built = Path(root, ".packages").exists()
    if not built and os.environ.get("DRAGGAN_GIMP_E2E_BUILD") != "1":
        pytest.skip(f"no GIMP {version} chroot at {root}; build it with `scripts/debian_chroot.sh ensure {suite} "
                    f"{root} {' '.join(PACKAGES)}` or run with DRAGGAN_GIMP_E2E_BUILD=1")
    p = subprocess.run(["bash", str(REPO / "scripts/debian_chroot.sh"), "ensure", suite, root, *PACKAGES],
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        pytest.skip(f"could not build/extend the GIMP {version} chroot at {root}: {p.stderr.strip()[-500:]}")
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    write_tiny_model(models)
    log = tmp_path_factory.mktemp("daemon") / "daemon.log"
    with running_daemon(models, token=TOKEN, log_path=log) as url:
        yield url


def install_plugin(work: Path) -> None:
    """The plug-in as an artist installs it: by the install script (the folder with its copy of the
    client side, executable)."""
    subprocess.run(["bash", str(REPO / "scripts" / "install_gimp_plugin.sh"), str(work / "profile" / "plug-ins")],
                   check=True, capture_output=True)


@pytest.mark.parametrize("version", ["3.0", "3.2"])
def test_gimp_plugin_end_to_end(version, daemon, tmp_path):
    root = ensure_chroot(version)
    sys.path.insert(0, str(PLUGIN))
    from draggan_client.client import DaemonClient

    client = DaemonClient(daemon, token=TOKEN)
    work = tmp_path / "work"
    work.mkdir()
    write_plain_picture(client, work / "plain.png", version)
    tilted = write_tilted_cat(client, work / "tilted.png", version)
    sessions_before = client.health()["sessions"]
    install_plugin(work)
    shutil.copy(REPO / "tests/gimp/driver.py", work / "driver.py")
    shutil.copy(REPO / "tests/gimp/pdb_run.py", work / "pdb_run.py")
    started = time.monotonic()
    p = subprocess.run(["bash", str(REPO / "tests/gimp/gimp_chroot_run.sh"), root, str(work),
                        f"DRAGGAN_URL={daemon}", f"DRAGGAN_TOKEN={TOKEN}", f"DEAD_URL={dead_url()}",
                        f"DRAGGAN_MODEL={MODEL}", "TILTED=" + json.dumps(tilted)], capture_output=True, text=True,
                       timeout=420)
    elapsed = time.monotonic() - started
    log = (work / "gimp.log").read_text(errors="replace") if (work / "gimp.log").exists() else ""
    print(f"GIMP {version}: gimp-console run took {elapsed:.1f} s")
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stderr}\n{log[-4000:]}"
    rep = json.loads((work / "report.json").read_text())
    assert rep["gimp"].startswith(version + "."), rep["gimp"]
    calls = rep["calls"]

    # New image: errors are messages that say what to do, and create nothing
    assert calls["new_dead"]["status"] == "execution_error"
    assert "cannot reach the DragGAN daemon" in calls["new_dead"]["message"]
    assert "draggan serve" in calls["new_dead"]["message"]
    assert calls["new_bad_token"]["status"] == "execution_error"
    assert "refused the token" in calls["new_bad_token"]["message"]
    assert rep["images_after_errors"] == 0
    assert calls["new"]["status"] == "success"
    new = rep["new"]
    assert new["size"] == [64, 64] and len(new["layers"]) == 1
    session = new["image_parasite"]["session_id"]
    assert new["layer_parasite"]["session_id"] == session
    assert (new["image_parasite"]["seed"], new["image_parasite"]["model"]) == (5, MODEL)

    # Drag errors: messages, and the image is untouched
    assert calls["drag_no_path"]["status"] == "calling_error"
    assert "no drags" in calls["drag_no_path"]["message"] and "Paths tool" in calls["drag_no_path"]["message"]
    assert calls["drag_one_anchor"]["status"] == "calling_error"
    assert "only one anchor" in calls["drag_one_anchor"]["message"]
    assert calls["drag_dead"]["status"] == "execution_error"
    assert "cannot reach the DragGAN daemon" in calls["drag_dead"]["message"]
    assert rep["layers_after_errors"] == new["layers"]

    # The drag: a new layer above the source, edited inside the selection, source untouched
    assert calls["drag"]["status"] == "success"
    drag = rep["drag"]
    assert drag["returned_is_top"]
    assert len(drag["layers"]) == 2 and drag["layers"][1] == new["layers"][0]
    assert drag["layers"][0].startswith("DragGAN drag (15 steps")
    assert drag["source_unchanged"]
    assert drag["selection_soft_values"] > 0
    assert drag["mask"] == {"centre": 255, "corner": 0, "equals_selection": True}  # soft edges kept
    assert drag["diff_inside"] > 5 and drag["flat_diff_inside"] > 5, drag
    assert drag["flat_diff_outside"] == 0, drag  # the visible picture keeps the source outside the selection
    assert drag["parasite"]["session_id"] == session  # the generated session was used: no inversion
    assert drag["parasite"]["origin"] == "drag" and drag["image_parasite"] == drag["parasite"]
    # ... and the path "DragGAN handles (tracked)", selected: from the daemon's tracked handles to the targets
    pairs = lambda record: [[h, t] for h, t in zip(record["handles"], record["targets"])]  # noqa: E731
    assert drag["tracked"]["strokes"] == pairs(drag["parasite"]) and drag["tracked"]["selected"], drag["tracked"]
    assert drag["parasite"]["targets"] == [[34.0, 30.0]]

    # A second drag on the result from the "points" argument continues the same session
    assert calls["drag_points"]["status"] == "success"
    assert len(rep["drag_points"]["layers"]) == 3 and not rep["drag_points"]["mask"]
    assert rep["drag_points"]["parasite"]["session_id"] == session
    # ... a second edit on top of the first: its own state and picture, the tracked path replaced
    assert rep["drag_points"]["differs_from_first"]
    assert rep["drag_points"]["parasite"]["state_id"] not in (None, drag["parasite"]["state_id"])
    assert rep["drag_points"]["tracked"]["count"] == 1
    assert rep["drag_points"]["tracked"]["strokes"] == pairs(rep["drag_points"]["parasite"])

    # ... run with the "studio" preset the script named; the drags naming none ran the default, "paper"
    # (GIMP's default for the argument, not the last run's value), the first result again included
    assert job_of(client, rep["drag_points"]["parasite"])["preset"] == "studio"
    assert job_of(client, drag["parasite"])["preset"] == "paper"

    # Both results taken away, the same drag on the source: the first result again, pixel-equal
    assert calls["drag_repeat"]["status"] == "success", calls["drag_repeat"]
    assert rep["drag_repeat"]["equal_to_first"] and rep["drag_repeat"]["layers"] == drag["layers"]
    assert job_of(client, rep["drag_repeat"]["parasite"])["preset"] == "paper"
    # Reset to original: the image's note names the original picture, no tracked path is left
    assert calls["reset"]["status"] == "success", calls["reset"]
    assert "Reset to the original picture" in rep["reset"]["message"] and rep["reset"]["tracked"] is None
    reset_record = rep["reset"]["image_parasite"]
    assert reset_record["state_id"] == new["layer_parasite"]["state_id"] and reset_record["handles"] == []

    # The source again, on a grown canvas (layer offsets 8, 4): a fresh session, result at the offsets
    assert calls["drag_offset"]["status"] == "success"
    off = rep["drag_offset"]
    assert off["above_offsets"] == [8, 4] == off["source_offsets"] and off["source_unchanged"]
    assert off["mask"] == {"at_0_0": 255, "at_40_40": 0}
    # the same session, started from the source's own state (not from the two drags made since)
    assert off["parasite"]["session_id"] == session and off["parasite"]["state_id"] not in (None, drag["parasite"]["state_id"])
    assert job_of(client, off["parasite"])["preset"] == "paper"  # the unknown name never reached the daemon

    # Parasites survive saving as XCF
    assert rep["xcf"]["image_parasite"]["session_id"] == off["parasite"]["session_id"]
    assert all(p and p["session_id"] for p in rep["xcf"]["layer_parasites"])

    # A plain picture the daemon did not make: its selected part is inverted, then dragged
    assert calls["real"]["status"] == "success", calls["real"]
    real = rep["real"]
    assert real["returned_is_top"] and len(real["layers"]) == 2 and real["source_unchanged"]
    assert real["layers"][0].startswith("DragGAN drag (8 steps") and "model fit" in real["layers"][0]
    assert real["size_of_new"] == real["size"] == [200, 150] and real["offsets"] == [0, 0]  # the full layer
    assert real["source_parasite"] is None  # the source is not touched, not even its parasites
    assert real["outside_unchanged"] and real["mask"], real  # bit-exact outside the selection
    assert real["changed_pixels"] > 100 and real["diff_inside"] > 1, real
    x0, y0, x1, y1 = real["changed_box"]
    assert 80 <= x0 and 50 <= y0 and x1 <= 124 and y1 <= 94, real  # changes only inside the selection
    sid = real["parasite"]["session_id"]
    assert real["parasite"]["origin"] == "layer" and real["image_parasite"] == real["parasite"]
    described = client.session(sid)
    assert described["region"] is not None and described["model"] == MODEL and described["invert_job"]
    region = described["region"]
    assert region["x"] <= 80 and region["y"] <= 50 and region["x"] + region["width"] >= 125 and \
        region["y"] + region["height"] >= 95
    # ... a second drag of the source reuses the session (the daemon knows the layer), as does one of the result
    assert calls["real_again"]["status"] == "success", calls["real_again"]
    assert len(rep["real_again"]["layers"]) == 3 and rep["real_again"]["source_unchanged"]
    assert rep["real_again"]["parasite"]["session_id"] == sid
    assert calls["real_result"]["status"] == "success", calls["real_result"]
    assert len(rep["real_result"]["layers"]) == 4 and rep["real_result"]["parasite"]["session_id"] == sid

    # The plain picture framed by an oriented box (the 'align' argument): a session of its own, aligned
    assert calls["real_box"]["status"] == "success", calls["real_box"]
    boxed = client.session(rep["real_box"]["parasite"]["session_id"])
    assert boxed["align"]["framing"] == "box" and boxed["align"]["box"]["angle"] == 15 and boxed["session_id"] != sid
    assert rep["real_box"]["source_unchanged"] and rep["real_box"]["changed_pixels"] > 0

    # A tilted cat framed by the path "DragGAN align" (eyes and mouth corners): the demo model's recipe
    assert calls["tilted"]["status"] == "success", calls["tilted"]
    aligned = client.session(rep["tilted"]["parasite"]["session_id"])
    assert aligned["align"]["framing"] == "demo" and aligned["model"] == "demo"
    sent = dict(zip(("left_eye", "right_eye", "mouth_left", "mouth_right"), tilted["landmarks"]))
    assert aligned["align"]["landmarks"] == sent and rep["tilted"]["parasite"]["align"] == sent
    assert rep["tilted"]["source_unchanged"] and rep["tilted"]["changed_pixels"] > 20
    assert rep["tilted"]["drags_from_the_drags_path"], rep["tilted"]

    # One undo group per insertion, closed by the plug-in itself; no plug-in crashed
    assert "inconsistent state" not in log and "Traceback" not in log, log[-4000:]
    health = client.health()  # the generated session, the real layer's, the boxed one and the tilted cat's
    assert health["sessions"] - sessions_before == 4 and health["queue_length"] == 0 and health["jobs_running"] == 0


def job_of(client, record: dict) -> dict:
    """The daemon's status of the drag job that made the picture a layer's parasite names: the session
    keeps each state with the job that made it (the daemon keeps the last 32 finished jobs)."""
    states = client.session(record["session_id"])["states"]
    made_by = [state["job_id"] for state in states if state["state_id"] == record["state_id"]]
    assert len(made_by) == 1 and made_by[0], (record["state_id"], states)
    return client.job(made_by[0])


def write_plain_picture(client, path: Path, version: str) -> None:
    """A picture the daemon did not make: 200x150 grey with the tiny model's seed-3 picture at (70, 40).
    The grey differs per GIMP version: the daemon (shared by the tests) would reuse the other's session."""
    import io

    from PIL import Image

    made = client.generate(seed=3, model=MODEL)
    grey = {"3.0": 200, "3.2": 180, "gui 3.0": 160, "gui 3.2": 140}[version]
    picture = Image.new("RGB", (200, 150), (grey, grey, grey))
    picture.paste(Image.open(io.BytesIO(made["image"])).convert("RGB"), (70, 40))
    picture.save(path)


def write_tilted_cat(client, path: Path, version: str) -> dict:
    """The tilted demo cat for the alignment drag: turned 20 degrees, scaled 1.3x, off-centre on 240x200."""
    colour = {"3.0": (120, 170, 120), "3.2": (110, 160, 130)}[version]
    return tilted_cat(client.generate(seed=0, model="demo", psi=1.0)["image"], path, (240, 200), 20.0, 1.3,
                      (130.0, 95.0), colour, mode="RGB")


def demo_drag() -> dict:
    """The README's main drag (scripts/demo.sh: right_ear_up on seed 0 of the built-in demo model, psi 1),
    as strokes of a GIMP path: the pictures of the real workflow in docs/ come from this run."""
    from draggan_core import registry
    from draggan_core.checkpoint import load_generator
    from draggan_core.demo.scenarios import make_drag

    G = load_generator(registry.DEMO_FILE, device="cpu")
    drag = make_drag("right_ear_up", 0, G.z_dim, G.img_resolution)
    strokes = [[[round(h[0], 2), round(h[1], 2)], [round(t[0], 2), round(t[1], 2)]]
               for h, t in zip(drag.handles, drag.targets)]
    return {"model": registry.DEMO_MODEL, "seed": 0, "psi": 1.0, "strokes": strokes}


GIMP_SUCCESS = 3  # Gimp.PDBStatusType.SUCCESS, as the GUI driver reports it
GUI_PACKAGES = ["xvfb", "xauth", "xdotool", "imagemagick", "fonts-dejavu-core", "dbus-bin"]
# screenshots kept in out/gimp-e2e/<version>/ (cut to GIMP's window) for docs/img (scripts/docs_pictures.py):
# the README's drag on the demo model, as an artist sees it
SCREENSHOTS = {"dialog.png": "gimp-workflow-1-dialog.png", "preview.png": "gimp-workflow-2-preview.png",
               "after_drag.png": "gimp-workflow-3-result.png", "stopped.png": "gimp-stopped.png",
               "fit_preview.png": "gimp-fit-preview.png"}


def keep_screenshots(work: Path, version: str) -> None:
    from PIL import Image

    shots = REPO / "out" / "gimp-e2e" / version
    shots.mkdir(parents=True, exist_ok=True)
    for name, kept in SCREENSHOTS.items():
        if (work / name).exists():
            screen = Image.open(work / name).convert("RGB")
            screen.crop(screen.getbbox() or (0, 0) + screen.size).save(shots / kept)


@pytest.mark.parametrize("version", ["3.0", "3.2"])
def test_gimp_dialog_undo_and_cancel(version, daemon, tmp_path):
    """The real GUI under Xvfb: DragGAN Drag's dialog opens (INTERACTIVE, values from the plug-in's
    defaults: $DRAGGAN_URL and $DRAGGAN_TOKEN), OK runs the drag, and one Ctrl+Z in the image window
    takes away the whole insertion (the layer and the session parasite). A drag held at the gate shows
    its preview layer and Stop and keep ends it; a plain layer's drag held during its inversion shows the
    fit so far, and "Drag now with this fit" drags from it. Then GIMP's Cancel button,
    clicked during a drag, stops the job on the daemon, and clicked during a plain layer's
    inversion, stops the invert job (the daemon drops that session). Both jobs are held at the
    daemon's test gate until Cancel has been clicked (tests/editor_gate.py)."""
    root = ensure_chroot(version)
    sys.path.insert(0, str(PLUGIN))
    from draggan_client.client import DaemonClient

    suite, _ = SUITES[version]
    p = subprocess.run(["bash", str(REPO / "scripts/debian_chroot.sh"), "ensure", suite, root, *PACKAGES,
                        *GUI_PACKAGES], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        pytest.skip(f"could not add Xvfb/xdotool to the GIMP {version} chroot: {p.stderr.strip()[-500:]}")
    work = tmp_path / "work"
    work.mkdir()
    install_plugin(work)
    for name in ("gui_driver.py", "gui_inside.sh", "gui_observer.py", "pdb_run.py"):
        shutil.copy(REPO / "tests/gimp" / name, work / name)
    shutil.copy(REPO / "tests/editor_gate.py", work / "editor_gate.py")
    write_plain_picture(DaemonClient(daemon, token=TOKEN), work / "plain.png", "gui " + version)
    started = time.monotonic()
    try:
        p = subprocess.run(["bash", str(REPO / "tests/gimp/gimp_chroot_run.sh"), "--gui", root, str(work),
                            f"DRAGGAN_URL={daemon}", f"DRAGGAN_TOKEN={TOKEN}", f"DRAGGAN_MODEL={MODEL}",
                            "DEMO_DRAG=" + json.dumps(demo_drag())],
                           capture_output=True, text=True, timeout=420)
    finally:
        gate.hold_at(daemon, None, TOKEN)  # a run that died holding the gate must not hold the next test's jobs
    print(f"GIMP {version}: GUI run took {time.monotonic() - started:.1f} s")
    logs = "".join((work / n).read_text(errors="replace")[-3000:] for n in ("gui.log", "gimp.log")
                   if (work / n).exists())
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stderr}\n{logs}"
    keep_screenshots(work, version)
    rep = json.loads((work / "gui_report.json").read_text())
    assert rep["gimp"].startswith(version + ".")
    assert rep["success"], rep
    assert len(rep["layers_after_drag"]) == 2 and rep["layers_after_drag"][0].startswith("DragGAN drag")
    assert rep["no_preview_left"] and rep["tracked_after_drag"], rep
    assert rep["parasite_changed"] and rep["undo_pressed"]
    assert rep["layers_after_undo"] == rep["layers_after_drag"][1:], rep  # one undo: the layer is gone ...
    assert rep["parasite_restored"] and rep["tracked_after_undo"] is None, rep  # ... its path and note too
    # the same drag on the source again: the first result, pixel-equal (not a doubled edit)
    assert rep["repeat_status"] == "success" and rep["repeat_equal"], rep
    # The interactive drag held at the gate: its preview layer stood above the source while it waited ...
    seen = json.loads((work / "stop_observed.json").read_text())["seen"]
    assert seen is not None, (work / "stop_observed.json").read_text()
    assert seen["preview"] == "DragGAN preview (step 5)" and seen["position"] == 0 and seen["visible"], seen
    assert seen["size"] == seen["size_below"] and seen["offsets"] == seen["offsets_below"], seen
    assert seen["differs_from_below"] > 0, seen  # five steps of the drag
    # ... and Stop and keep added the drag so far, with the tracked handles as a path, and no preview left
    assert rep["stop_status"] == GIMP_SUCCESS and rep["stop_job_released"], rep
    assert len(rep["stop_layers"]) == 2 and "stopped" in rep["stop_layers"][0], rep
    assert rep["stop_layers"][1] == seen["below"]
    stopped_session = DaemonClient(daemon, token=TOKEN).session(rep["stop_parasite"]["session_id"])
    assert rep["stop_parasite"]["state_id"] == stopped_session["state_id"]
    assert rep["stop_tracked"] == [[h, t] for h, t in zip(stopped_session["handles"], stopped_session["targets"])]
    # The plain layer's drag held during its inversion: the fit so far stood above the layer as the preview,
    # and "Drag now with this fit" ended the fitting there; the drag then ran from that fit
    fit_seen = json.loads((work / "fit_observed.json").read_text())["seen"]
    assert fit_seen is not None, (work / "fit_observed.json").read_text()
    assert fit_seen["preview"] == "DragGAN preview (fit)" and fit_seen["visible"], fit_seen
    assert fit_seen["size"] == fit_seen["size_below"] and fit_seen["offsets"] == fit_seen["offsets_below"], fit_seen
    assert fit_seen["differs_from_below"] > 0, fit_seen
    assert rep["fit_status"] == GIMP_SUCCESS, rep
    assert len(rep["fit_layers"]) == 2 and rep["fit_layers"][0].startswith("DragGAN drag"), rep
    fit_client = DaemonClient(daemon, token=TOKEN)
    inversion = fit_client.job(fit_client.session(rep["fit_parasite"]["session_id"])["invert_job"])
    assert inversion["reason"] == "stopped" and inversion["step"] < inversion["max_steps"], inversion
    # GIMP's Cancel button killed the plug-in mid-drag: nothing added, and its watchdog cancelled the
    # job on the daemon (a finished job would have moved the session's handles)
    assert rep["cancelled"], rep
    assert len(rep["layers_after_cancel"]) == 1, rep
    client = DaemonClient(daemon, token=TOKEN)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and client.health()["jobs_running"]:
        time.sleep(0.2)
    assert client.health()["jobs_running"] == 0
    assert client.session(rep["cancel_session"])["handles"] == [], "the daemon finished the cancelled drag"
    # Cancel during a plain layer's inversion: nothing added, and the daemon dropped the half-inverted
    # session (asking for the same layer and settings again starts a new inversion instead of reusing it)
    assert rep["invert_cancelled"], rep
    assert len(rep["layers_after_invert_cancel"]) == 1, rep
    probe = client.create_session((work / "plain.png").read_bytes(), model=MODEL,
                                  invert={"steps_w": 2000, "steps_wplus": 0, "steps_pti": 0, "preview_every": 0})
    try:
        assert not probe["reused"], "the cancelled inversion was not cancelled on the daemon"
    finally:
        if probe["job_id"]:
            client.cancel(probe["job_id"])
    gimp_log = (work / "gimp.log").read_text(errors="replace")
    assert "dialog without the Advanced section" not in gimp_log
    assert "duplicate mnemonic" not in gimp_log and "Traceback" not in gimp_log, gimp_log[-3000:]


def daemons_using(marker: str) -> list[int]:
    """Pids of processes whose command line holds `marker` (the test's unique models folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("version", ["3.0", "3.2"])
def test_gimp_daemon_procedure_without_a_terminal(version, tmp_path):
    """Filters > DragGAN > Daemon... in a real GIMP with no daemon running: it stores the local daemon's
    settings, starts the project's own `draggan serve` inside the chroot, downloads a model from a real
    loopback zoo (held part-way, so the download is seen running whatever the machine's speed), New image
    and Drag then use the stored address without being told it, Stop ends the daemon, and the daemon
    started again ends by itself when GIMP quits (--exit-with-process)."""
    import hashlib
    import json as _json
    import threading
    import uuid

    from model_zoo import ModelZoo

    root = ensure_chroot(version)
    program = REPO / ".venv" / "bin" / "draggan"
    if not os.access(program, os.X_OK):
        pytest.skip(f"no {program}: the chroot runs the project's own daemon program")
    work = tmp_path / "work"
    work.mkdir()
    install_plugin(work)
    shutil.copy(REPO / "tests/gimp/daemon_driver.py", work / "driver.py")
    shutil.copy(REPO / "tests/gimp/pdb_run.py", work / "pdb_run.py")
    unique = f"models-{uuid.uuid4().hex}"  # in the daemon's command line: how its process is found
    (work / unique).mkdir()
    write_tiny_model(tmp_path / "zoo")
    data = (tmp_path / "zoo" / f"{MODEL}.safetensors").read_bytes()
    held = 2 * (1 << 16)  # whole download chunks (draggan_core.download.CHUNK)
    assert len(data) > 2 * held
    watched: dict = {}
    with ModelZoo({"zoo-tiny.safetensors": data}) as zoo:
        (work / "catalogue.json").write_text(_json.dumps([{
            "name": "zoo-tiny", "url": zoo.url_of("zoo-tiny.safetensors"), "resolution": 64,
            "domain": "test shapes", "licence": "test licence", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}]))
        zoo.hold(after=held)

        def watch_the_download():
            """While the zoo holds the download: the daemon has the held bytes and says it is downloading."""
            try:
                if not zoo.wait_held(timeout=400):
                    return
                part = work / unique / "zoo-tiny.safetensors.part"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (part.exists() and part.stat().st_size == held):
                    time.sleep(0.1)
                watched["part_bytes"] = part.stat().st_size if part.exists() else None
                stored = _json.loads((work / "home/.config/draggan/gimp.json").read_text())
                from draggan_client.client import DaemonClient
                entry = {m["name"]: m for m in DaemonClient(stored["url"]).catalogue()}["zoo-tiny"]
                watched["downloading"], watched["downloaded"] = entry["downloading"], entry["downloaded"]
            except Exception as e:  # reported by the assertions below
                watched["error"] = repr(e)
            finally:
                zoo.release()

        sys.path.insert(0, str(PLUGIN))
        watcher = threading.Thread(target=watch_the_download, daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            p = subprocess.run(["bash", str(REPO / "tests/gimp/gimp_chroot_run.sh"), root, str(work),
                                f"DRAGGAN_PROGRAM={program}",
                                f"EXTRA_ARGS=--catalogue /e2e-gimp/catalogue.json --models /e2e-gimp/{unique} "
                                "--device cpu"],
                               capture_output=True, text=True, timeout=560, env={**os.environ, "GIMP_TIMEOUT": "500"})
        finally:
            zoo.release()
            watcher.join(30)
        zoo_gets = zoo.ranges("zoo-tiny.safetensors")
    print(f"GIMP {version}: gimp-console run took {time.monotonic() - started:.1f} s")
    # GIMP has quit: the daemon it left running winds down by itself
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and daemons_using(unique):
        time.sleep(0.2)
    left = daemons_using(unique)
    log = (work / "gimp.log").read_text(errors="replace") if (work / "gimp.log").exists() else ""
    daemon_log = work / "home/.local/state/draggan/daemon.log"
    daemon_log = daemon_log.read_text(errors="replace")[-3000:] if daemon_log.exists() else "(no daemon log)"
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stderr}\n{log[-4000:]}\n{daemon_log}"
    assert not left, f"daemon processes left after GIMP quit: {left}\n{daemon_log}"
    rep = _json.loads((work / "report.json").read_text())
    assert rep["gimp"].startswith(version + "."), rep["gimp"]
    calls = {c["label"]: c for c in rep["calls"]}

    assert calls["status_before"]["status"] == "success" and not calls["status_before"]["answers"]
    assert calls["status_before"]["message"].startswith("No DragGAN daemon answers at http://127.0.0.1:8765")
    # an action GIMP's choice does not know is refused by GIMP itself (with a warning); "status" is kept
    assert calls["bad_action"]["status"] == "success" and not calls["bad_action"]["answers"]
    assert calls["bad_action"]["message"] == calls["status_before"]["message"]
    assert calls["new_without_daemon"]["status"] == "execution_error"
    assert "Filters > DragGAN > Daemon..." in calls["new_without_daemon"]["message"]

    start = calls["start"]
    assert start["status"] == "success" and start["answers"], start
    assert start["message"].startswith("Started the local DragGAN daemon at " + start["url"])
    assert "it stops when GIMP quits" in start["message"]
    assert calls["status_running"]["answers"] and "started from GIMP" in calls["status_running"]["message"]
    assert calls["status_running"]["url"] == start["url"]

    # the download: seen running at the zoo's hold, then done; the file is the zoo's
    assert watched.get("part_bytes") == held and watched.get("downloading") is True, watched
    assert watched.get("downloaded") is False, watched
    assert calls["download"]["status"] == "success", calls["download"]
    assert calls["download"]["message"].startswith("Downloaded zoo-tiny ("), calls["download"]
    assert (work / unique / "zoo-tiny.safetensors").read_bytes() == data
    assert zoo_gets == [None], zoo_gets  # one transfer
    assert calls["download_again"]["status"] == "execution_error"
    assert "already" in calls["download_again"]["message"], calls["download_again"]

    # New image and Drag named no daemon: they used the stored address
    assert calls["new"]["status"] == "success", calls["new"]
    assert rep["new"]["size"] == [64, 64] and rep["new"]["parasite"]["model"] == "zoo-tiny"
    assert rep["new"]["parasite"]["url"] == start["url"]
    assert calls["drag"]["status"] == "success", calls["drag"]
    assert len(rep["drag_layers"]) == 2 and rep["drag_layers"][0].startswith("DragGAN drag (")

    # Stop, and a second Stop that finds nothing; Start again works
    assert calls["stop"]["status"] == "success" and calls["stop"]["message"].startswith("Stopped the local")
    assert not calls["status_stopped"]["answers"]
    assert calls["stop_again"]["message"] == "No local DragGAN daemon was started from GIMP."
    again = calls["start_again"]
    assert again["status"] == "success" and again["answers"] and calls["status_end"]["answers"], again

    stored = work / "home/.config/draggan/gimp.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    settings = _json.loads(stored.read_text())
    assert settings["url"] == again["url"] and settings["command"] == str(program)
    assert f"--models /e2e-gimp/{unique}" in settings["extra_args"] and not settings["keep_running"]
    assert "Traceback" not in log, log[-4000:]
