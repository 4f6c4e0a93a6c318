"""End-to-end: the packaged DragGAN plug-in in a real Krita under Xvfb, driven by real X input.

(a) Debian's Krita 5.1 on the host, (b) Krita 5.2 in the Debian 13 chroot made by
scripts/install_test_editors.sh. The scenario covers a generated document (New image from model)
and a plain painted document, which the daemon inverts before the drag. Both use the real daemon
(`draggan serve`) with a tiny random model on a free loopback port. The plug-in zip is built by scripts/package_krita.py and installed
with Krita's own importer; the test-only harness plug-in (tests/krita/harness) runs the scenario
inside Krita and writes report.json (see tests/krita/run_krita.sh); where it acts while a job runs,
it holds the job at the daemon's test gate (tests/editor_gate.py, copied into the harness). Artifacts (report, logs,
screenshots) go to out/krita-e2e/<version>/. Warm Krita profiles are cached in
/var/tmp/draggan-krita-profile-5.1 and /var/tmp/draggan-krita-e2e-5.2/profile.
Needs root (chroot) and the editors; skipped otherwise.
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import editor_gate as gate

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "krita"
ARTIFACTS = ROOT / "out" / "krita-e2e"
TRIXIE = Path(os.environ.get("DRAGGAN_TRIXIE_ROOT", "/var/tmp/draggan-trixie"))
PROFILE_51 = Path("/var/tmp/draggan-krita-profile-5.1")
WORK_52 = Path("/var/tmp/draggan-krita-e2e-5.2")
CLEAN_ENV = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]

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
    """draggan_krita.zip (the release zip), the harness plug-in (with editor_gate.py) and run_krita.sh in run_dir."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    _package_module().build_zip(str(run_dir / "draggan_krita.zip"))
    shutil.copytree(HARNESS / "harness", run_dir / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "editor_gate.py", run_dir / "harness" / "draggan_krita_e2e" / "editor_gate.py")
    shutil.copy(HARNESS / "run_krita.sh", run_dir / "run_krita.sh")


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


def _scenario_env(url: str) -> list[str]:
    return ["DRAGGAN_URL=" + url, "DRAGGAN_E2E_DEAD=http://127.0.0.1:%d" % _free_port(), "KRITA_TIMEOUT=280",
            "DRAGGAN_E2E_WATCHDOG=260"]


@pytest.mark.skipif(shutil.which("krita") is None or shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
                    reason="host Krita/Xvfb/xdotool missing (scripts/install_test_editors.sh)")
def test_krita51_host(daemon_url, tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    _stage_run(run_dir)
    env = CLEAN_ENV + ["E2E_RUN=%s" % run_dir, "PROFILE=%s" % PROFILE_51, "OUT=%s" % out_dir] + _scenario_env(daemon_url)
    t0 = time.monotonic()
    try:
        p = subprocess.run(env + ["bash", str(run_dir / "run_krita.sh")], capture_output=True, text=True,
                           timeout=360)
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
        for m in ("e2e", "dev/shm", "proc"):
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
          ["bash", "/e2e/run/run_krita.sh"]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=480)
    finally:
        gate.hold_at(daemon_url, None)
        _unmount_chroot()
    # debian_chroot.sh's own exit status is unreliable (its EXIT trap fails); run_krita.sh records its own
    code = WORK_52 / "out" / "exit_code"
    rc = int(code.read_text().strip() or 99) if code.exists() else 99
    report = _collect(WORK_52 / "out", "5.2", rc, p.stdout + p.stderr)
    assert report["krita"].startswith("5.2"), report["krita"]
    print("Krita %s e2e: %.1f s" % (report["krita"], time.monotonic() - t0))
