"""End-to-end: the packaged DragGAN plug-in in a real Krita under Xvfb, driven by real X input.

(a) Debian's Krita 5.1 on the host, (b) Krita 5.2 in the Debian 13 chroot made by
scripts/install_test_editors.sh. The scenario covers a generated document (New image from model)
and a plain painted document, which the daemon inverts before the drag. Both use the real daemon
(`draggan serve`) with a tiny random model on a free loopback port. Then the artist's history on
the demo model (tests/krita/harness/draggan_krita_e2e/history_scenario.py): undo then the same drag
gives the first result pixel for pixel, a drag on a result layer continues it, Reset to original
goes back to the original, a lost session is regenerated; it photographs the workflow for the docs
(scripts/docs_pictures.py). Last, Align mode (align_scenario.py): a tilted demo cat the daemon did
not generate, its landmarks clicked through the tool, a drag framed by the demo recipe. The plug-in
zip is built by scripts/package_krita.py and installed with Krita's own importer; the test-only harness plug-in (tests/krita/harness) runs the scenario
inside Krita and writes report.json (see tests/krita/run_krita.sh); where it acts while a job runs,
it holds the job at the daemon's test gate (tests/editor_gate.py, copied into the harness). Artifacts (report, logs,
screenshots) go to out/krita-e2e/<version>/. Warm Krita profiles are cached in
/var/tmp/draggan-krita-profile-5.1 and /var/tmp/draggan-krita-e2e-5.2/profile.
Needs root (chroot) and the editors; skipped otherwise.

The local-daemon tests (test_krita51_local_daemon, test_krita52_local_daemon) start Krita with no daemon
at all: the scenario (tests/krita/harness/draggan_krita_e2e/local_scenario.py) sets up a fake project,
starts this repository's `draggan` from the docker, downloads a model from a loopback zoo (held part-way,
cancelled, resumed), drags with it and quits Krita; the test then checks that the daemon is gone. In the
chroot the daemon runs inside it: scripts/debian_chroot.sh binds this repository and the Python its
.venv points to (DRAGGAN_CHROOT_BINDS).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import editor_gate as gate
from demo_layers import tilted_cat
from model_zoo import ModelZoo

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "krita"
ARTIFACTS = ROOT / "out" / "krita-e2e"
TRIXIE = Path(os.environ.get("DRAGGAN_TRIXIE_ROOT", "/var/tmp/draggan-trixie"))
PROFILE_51 = Path("/var/tmp/draggan-krita-profile-5.1")
WORK_52 = Path("/var/tmp/draggan-krita-e2e-5.2")
CLEAN_ENV = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
# what the chroot needs of the host to run this repository's .venv/bin/draggan (read-only binds)
CHROOT_BINDS = (str(ROOT), sys.base_prefix)
ZOO_MODEL, ZOO_FILE = "zoo-tiny", "zoo-tiny.safetensors"
ZOO_HELD = 2 * (1 << 16)  # the zoo holds the first download here: whole download chunks (draggan_core CHUNK)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, profiles in /var/tmp)")]


def _package_module():
    spec = importlib.util.spec_from_file_location("package_krita", ROOT / "scripts" / "package_krita.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_generator
    from draggan_core.formats import native
    models = tmp_path_factory.mktemp("krita-models")
    native.write(make_generator(img_resolution=64, channel_base=2048, channel_max=48, z_dim=32, w_dim=32),
                 str(models / "tiny.safetensors"))
    log = open(models / "daemon.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--models", str(models)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, DRAGGAN_TEST_GATE="1"))
    url = None
    for _ in range(300):
        log.seek(0)
        text = log.read()
        if "listening on " in text:
            url = text.split("listening on ", 1)[1].split()[0].rsplit("/api/v1", 1)[0]
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if url is None:
        proc.kill()
        log.seek(0)
        pytest.fail("the daemon did not start:\n" + log.read()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _stage_run(run_dir: Path) -> None:
    """draggan_krita.zip (the release zip), the harness plug-in (with editor_gate.py), run_krita.sh and
    x_handshake.py in run_dir."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    _package_module().build_zip(str(run_dir / "draggan_krita.zip"))
    shutil.copytree(HARNESS / "harness", run_dir / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "editor_gate.py", run_dir / "harness" / "draggan_krita_e2e" / "editor_gate.py")
    shutil.copy(HARNESS / "run_krita.sh", run_dir / "run_krita.sh")
    shutil.copy(HARNESS / "x_handshake.py", run_dir / "x_handshake.py")


def _collect(out_dir: Path, version: str, rc: int, output: str) -> dict:
    dest = ARTIFACTS / version
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in out_dir.iterdir():
        if f.is_file() and f.suffix in (".json", ".png", ".log", ".txt", ".partial", ".stacks"):
            shutil.copy(f, dest / f.name)
    (dest / "run_output.txt").write_text(output)
    report = {}
    if (out_dir / "report.json").exists():
        report = json.loads((out_dir / "report.json").read_text())
    elif (out_dir / "report.json.partial").exists():
        report = json.loads((out_dir / "report.json.partial").read_text())
    assert rc == 0 and report.get("ok"), (
        "Krita e2e (%s) failed, rc=%s; artifacts in %s\n%s\nlast steps: %s\nerror: %s" % (
            version, rc, dest, output[-2000:], json.dumps(report.get("steps", [])[-3:], default=str)[:3000],
            report.get("error") or report.get("uncaught")))
    return report


def write_tilted_cat(url: str, path: Path, version: str) -> dict:
    """The tilted demo cat for Align mode (issue 16): turned -25 degrees, scaled 1.25x, off-centre on 230x190."""
    from draggan_client.client import DaemonClient

    colour = {"5.1": (150, 120, 170), "5.2": (140, 130, 180)}[version]
    return tilted_cat(DaemonClient(url).generate(seed=0, model="demo", psi=1.0)["image"], path, (230, 190), -25.0,
                      1.25, (110.0, 100.0), colour)


def _tilted_env(url: str, run_dir: Path, inside: str, version: str) -> list[str]:
    """The tilted cat in run_dir (seen by Krita as `inside`) for the Align part of the scenario."""
    tilted = write_tilted_cat(url, run_dir / "tilted.png", version)
    return ["DRAGGAN_E2E_TILTED=" + json.dumps(dict(tilted, path=inside + "/tilted.png"))]


def _scenario_env(url: str) -> list[str]:
    # the history part drags the demo model five times on the CPU: 2 minutes on two idle cores, 5 when
    # they are loaded (a 16-step drag took 57 s at a load of 4); the Align part inverts and drags it once more
    return ["DRAGGAN_URL=" + url, "DRAGGAN_E2E_DEAD=http://127.0.0.1:%d" % _free_port(), "KRITA_TIMEOUT=1200",
            "DRAGGAN_E2E_WATCHDOG=1180"]


@pytest.mark.skipif(shutil.which("krita") is None or shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
                    reason="host Krita/Xvfb/xdotool missing (scripts/install_test_editors.sh)")
def test_krita51_host(daemon_url, tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    _stage_run(run_dir)
    env = CLEAN_ENV + ["E2E_RUN=%s" % run_dir, "PROFILE=%s" % PROFILE_51, "OUT=%s" % out_dir] + \
        _scenario_env(daemon_url) + _tilted_env(daemon_url, run_dir, str(run_dir), "5.1")
    t0 = time.monotonic()
    try:
        p = subprocess.run(env + ["bash", str(run_dir / "run_krita.sh")], capture_output=True, text=True,
                           timeout=1300)
    finally:
        gate.hold_at(daemon_url, None)  # a scenario that died holding the gate must not hold the next run's jobs
    report = _collect(out_dir, "5.1", p.returncode, p.stdout + p.stderr)
    assert report["krita"].startswith("5.1"), report["krita"]
    print("Krita %s e2e: %.1f s" % (report["krita"], time.monotonic() - t0))


def _unmount_chroot() -> None:
    """scripts/debian_chroot.sh leaves its mounts behind (its EXIT trap fails); clean them up when no
    other run holds the chroot's run lock."""
    with open(str(TRIXIE) + ".run.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        for m in ("e2e", "dev/shm", "proc"):  # (the binds of DRAGGAN_CHROOT_BINDS go with the script's own exit)
            for _ in range(8):
                if subprocess.run(["mountpoint", "-q", str(TRIXIE / m)]).returncode != 0:
                    break
                subprocess.run(["umount", "-l", str(TRIXIE / m)])


@pytest.mark.skipif(not (TRIXIE / "usr" / "bin" / "krita").exists(),
                    reason="no Krita 5.2 chroot (scripts/install_test_editors.sh)")
def test_krita52_chroot(daemon_url):
    WORK_52.mkdir(parents=True, exist_ok=True)
    _stage_run(WORK_52 / "run")
    shutil.rmtree(WORK_52 / "out", ignore_errors=True)
    cmd = [str(ROOT / "scripts" / "debian_chroot.sh"), "run", str(TRIXIE), str(WORK_52),
           "E2E_RUN=/e2e/run", "PROFILE=/e2e/profile", "OUT=/e2e/out"] + _scenario_env(daemon_url) + \
          _tilted_env(daemon_url, WORK_52 / "run", "/e2e/run", "5.2") + ["bash", "/e2e/run/run_krita.sh"]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1400)
    finally:
        gate.hold_at(daemon_url, None)
        _unmount_chroot()
    # debian_chroot.sh's own exit status is unreliable (its EXIT trap fails); run_krita.sh records its own
    code = WORK_52 / "out" / "exit_code"
    rc = int(code.read_text().strip() or 99) if code.exists() else 99
    report = _collect(WORK_52 / "out", "5.2", rc, p.stdout + p.stderr)
    assert report["krita"].startswith("5.2"), report["krita"]
    print("Krita %s e2e: %.1f s" % (report["krita"], time.monotonic() - t0))


# -- no daemon running: the docker starts, uses and (at quit) stops a local one -----------------------------

@pytest.fixture(scope="module")
def zoo_checkpoint(tmp_path_factory) -> bytes:
    """The tiny model of the other tests as a checkpoint file's bytes (about 2 MB: many download chunks)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_generator
    from draggan_core.formats import native
    path = tmp_path_factory.mktemp("zoo") / ZOO_FILE
    native.write(make_generator(img_resolution=64, channel_base=2048, channel_max=48, z_dim=32, w_dim=32), str(path))
    return path.read_bytes()


@pytest.fixture
def zoo(zoo_checkpoint):
    with ModelZoo({ZOO_FILE: zoo_checkpoint}) as z:
        z.hold(after=ZOO_HELD)  # until the scenario has seen (and cancelled) the download part-way
        yield z


def _local_files(base: Path, inside: str, zoo: ModelZoo, data: bytes) -> tuple[list[str], str]:
    """The catalogue, an empty models folder and a fake project in base, which Krita sees as `inside`;
    returns the scenario's environment and the models folder's unique name (to find the daemon by)."""
    shutil.rmtree(base, ignore_errors=True)
    tag = "models-e2e-" + secrets.token_hex(6)
    (base / tag).mkdir(parents=True)
    (base / "catalogue.json").write_text(json.dumps([{
        "name": ZOO_MODEL, "url": zoo.url_of(ZOO_FILE), "resolution": 64, "domain": "e2e test shapes",
        "licence": "e2e test licence", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]))
    project = base / "project"
    (project / "scripts").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "draggan-studio"\n')
    # prints, then waits for a file "go" in the project (so Cancel meets it running), then ends
    (project / "scripts" / "bootstrap.sh").write_text(
        '#!/bin/bash\necho "fake set-up: installing"\necho "fake set-up: waiting"\n'
        'while [ ! -e go ]; do sleep 0.1; done\necho "fake set-up: done"\n')
    env = ["DRAGGAN_E2E_SCENARIO=local", "DRAGGAN_E2E_PROGRAM=%s" % (ROOT / ".venv" / "bin" / "draggan"),
           "DRAGGAN_E2E_ARGS=--catalogue %s/catalogue.json --models %s/%s --device cpu" % (inside, inside, tag),
           "DRAGGAN_E2E_PROJECT=%s/project" % inside, "DRAGGAN_E2E_ZOO_MODEL=" + ZOO_MODEL,
           "KRITA_TIMEOUT=420", "DRAGGAN_E2E_WATCHDOG=400"]
    return env, tag


def _daemons_with(tag: str) -> list[int]:
    """Live processes (not zombies) whose command line names `tag`: the local daemon of this run."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
            state = Path("/proc", pid, "stat").read_bytes().rsplit(b")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if tag.encode() in cmdline and b"serve" in cmdline and state != b"Z":
            found.append(int(pid))
    return found


def _run_releasing_zoo(cmd: list[str], out_dir: Path, zoo: ModelZoo, timeout: float, env=None) -> tuple[int, str]:
    """Run cmd; release the zoo once the scenario asks (the file release-zoo in out_dir)."""
    log = out_dir.parent / (out_dir.name + "-runner.txt")
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while p.poll() is None:
                if (out_dir / "release-zoo").exists():
                    zoo.release()
                if time.monotonic() > deadline:
                    p.kill()
                time.sleep(0.2)
        finally:
            zoo.release()
            if p.poll() is None:
                p.kill()
            p.wait()
    return p.returncode, log.read_text()


def _check_local_run(report: dict, out_dir: Path, tag: str, zoo: ModelZoo) -> None:
    deadline = time.monotonic() + 60  # the daemon winds down after Krita quit: a slow machine may take a while
    while _daemons_with(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _daemons_with(tag), "the local daemon outlived Krita: %s" % _daemons_with(tag)
    assert zoo.ranges(ZOO_FILE) == [None, "bytes=%d-" % ZOO_HELD], zoo.ranges(ZOO_FILE)  # cancelled, then resumed
    krita_log = (out_dir / "krita.log").read_text(errors="replace")
    assert "DragGAN: Krita is quitting; stopping the local daemon (process %s)" % report["daemon_pid"] in krita_log, \
        "the plug-in did not stop the daemon as Krita quit:\n" + krita_log[-2000:]


def _run_local(version: str, scenario: str, zoo: ModelZoo, data: bytes, tmp_path: Path,
               settings: dict | None = None) -> tuple[dict, Path, str]:
    """Run a local-daemon scenario in Krita 5.1 (host) or 5.2 (chroot); settings: the plug-in's settings to
    start with (written into kritarc), where {"daemon_command", "extra_args"} are filled in."""
    if version == "5.1":
        base, inside, out_dir, run_dir = tmp_path / "local", str(tmp_path / "local"), tmp_path / "out", tmp_path / "run"
        _stage_run(run_dir)
        wrap = CLEAN_ENV + ["E2E_RUN=%s" % run_dir, "PROFILE=%s" % PROFILE_51, "OUT=%s" % out_dir]
        tail, env, limit = ["bash", str(run_dir / "run_krita.sh")], None, 480
    else:
        WORK_52.mkdir(parents=True, exist_ok=True)
        _stage_run(WORK_52 / "run")
        base, inside, out_dir = WORK_52 / "local", "/e2e/local", WORK_52 / "out"
        wrap = [str(ROOT / "scripts" / "debian_chroot.sh"), "run", str(TRIXIE), str(WORK_52),
                "E2E_RUN=/e2e/run", "PROFILE=/e2e/profile", "OUT=/e2e/out"]
        tail, limit = ["bash", "/e2e/run/run_krita.sh"], 540
        env = dict(os.environ, DRAGGAN_CHROOT_BINDS=":".join(CHROOT_BINDS))
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    scenario_env, tag = _local_files(base, inside, zoo, data)
    scenario_env = [e if not e.startswith("DRAGGAN_E2E_SCENARIO=") else "DRAGGAN_E2E_SCENARIO=" + scenario
                    for e in scenario_env]
    if settings is not None:
        given = dict((e.split("=", 1) for e in scenario_env))
        settings = dict(settings, daemon_command=given["DRAGGAN_E2E_PROGRAM"], extra_args=given["DRAGGAN_E2E_ARGS"])
        (base / "kritarc").write_text("[draggan]\nsettings=%s\n" % json.dumps(settings))
        scenario_env.append("KRITARC_EXTRA=%s/kritarc" % inside)
    t0 = time.monotonic()
    try:
        rc, output = _run_releasing_zoo(wrap + scenario_env + tail, out_dir, zoo, limit, env=env)
    finally:
        if version != "5.1":
            _unmount_chroot()
    if version != "5.1":  # debian_chroot.sh's own exit status is unreliable; run_krita.sh records its own
        code = out_dir / "exit_code"
        rc = int(code.read_text().strip() or 99) if code.exists() else 99
    report = _collect(out_dir, "%s-%s" % (version, scenario), rc, output)
    assert report["krita"].startswith(version), report["krita"]
    print("Krita %s %s e2e: %.1f s" % (report["krita"], scenario, time.monotonic() - t0))
    return report, out_dir, tag


def _check_kept(report: dict, out_dir: Path, tag: str) -> None:
    """The daemon started with Krita and kept outlived it; then it is stopped as a later session would."""
    from draggan_client.launcher import stop_detached
    pid = report["daemon_pid"]
    try:
        assert _daemons_with(tag) == [pid], "the kept daemon did not outlive Krita: %s" % _daemons_with(tag)
        krita_log = (out_dir / "krita.log").read_text(errors="replace")
        assert "DragGAN: Krita is quitting; the local daemon (process %s) keeps running" % pid in krita_log, \
            krita_log[-2000:]
    finally:
        stop_detached(pid)
    deadline = time.monotonic() + 60
    while _daemons_with(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _daemons_with(tag)


HOST_KRITA = pytest.mark.skipif(shutil.which("krita") is None or shutil.which("Xvfb") is None
                                or shutil.which("xdotool") is None,
                                reason="host Krita/Xvfb/xdotool missing (scripts/install_test_editors.sh)")
CHROOT_KRITA = pytest.mark.skipif(not (TRIXIE / "usr" / "bin" / "krita").exists(),
                                  reason="no Krita 5.2 chroot (scripts/install_test_editors.sh)")


@HOST_KRITA
def test_krita51_local_daemon(zoo, zoo_checkpoint, tmp_path):
    report, out_dir, tag = _run_local("5.1", "local", zoo, zoo_checkpoint, tmp_path)
    _check_local_run(report, out_dir, tag, zoo)


@CHROOT_KRITA
def test_krita52_local_daemon(zoo, zoo_checkpoint, tmp_path):
    report, out_dir, tag = _run_local("5.2", "local", zoo, zoo_checkpoint, tmp_path)
    _check_local_run(report, out_dir, tag, zoo)


@HOST_KRITA
def test_krita51_daemon_starts_with_krita_and_is_kept(zoo, zoo_checkpoint, tmp_path):
    report, out_dir, tag = _run_local("5.1", "autostart", zoo, zoo_checkpoint, tmp_path,
                                      {"start_with_krita": True, "keep_running": True})
    _check_kept(report, out_dir, tag)


@CHROOT_KRITA
def test_krita52_daemon_starts_with_krita_and_is_kept(zoo, zoo_checkpoint, tmp_path):
    report, out_dir, tag = _run_local("5.2", "autostart", zoo, zoo_checkpoint, tmp_path,
                                      {"start_with_krita": True, "keep_running": True})
    _check_kept(report, out_dir, tag)
