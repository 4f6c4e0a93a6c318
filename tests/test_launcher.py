"""draggan_client/launcher.py: the local daemon an editor starts, watches and stops, and its set-up.

Through the real `draggan serve` (the venv's own, serving the embedded demo model from an empty models
folder) where only a real daemon shows it: its ready line, a clean stop, the end with a killed editor.
Small bash scripts stand in for a daemon that fails, hangs or is killed, and for scripts/bootstrap.sh.
Every wait is for a condition, with a deadline generous enough for a slow, loaded machine.
"""
from __future__ import annotations

import ast
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, IO

import pytest

from draggan_client import launcher
from draggan_client.client import DaemonClient
from draggan_client.launcher import (PROJECT_ENV, SET_UP, Bootstrap, BootstrapCancelled, LauncherError, LocalDaemon,
                                     find_command)

REPO = Path(__file__).resolve().parents[1]
DRAGGAN = Path(sys.executable).parent / "draggan"  # the venv's console script, as an artist's .venv has it
DEADLINE_S = 180.0  # the longest any awaited condition may take: importing torch on a slow, busy machine
STDLIB = {"collections", "dataclasses", "os", "re", "shlex", "shutil", "signal", "subprocess", "threading", "time",
          "typing"}
READY = "draggan daemon listening on http://127.0.0.1:9/api/v1 (device fake, models none)"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")


# ----------------------------------------------------------------------------------------- helpers

def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a process, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, pgrp, ...
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    """Running (an exited process whose new parent has not reaped it yet is a zombie: not alive)."""
    state = process_state(pid)
    return state is not None and state[0] not in "ZX"


def live_group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = process_state(int(entry))
            if state is not None and state[1] == pgid and state[0] not in "ZX":
                found.append(int(entry))
    return found


def first_line(stream: IO[str], timeout: float = DEADLINE_S) -> str:
    """The next line a child prints, read on a thread so a child that prints nothing cannot hang the test."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"nothing printed within {timeout:g} s")


def fake_program(folder: Path, body: str, name: str = "draggan") -> Path:
    """An executable bash script standing in for a program."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def fake_project(folder: Path, bootstrap_body: str = "exit 0", name: str = "draggan-studio") -> Path:
    """A folder shaped like the unpacked project: pyproject.toml naming it, and scripts/bootstrap.sh."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[build-system]\nrequires = ["setuptools"]\n\n[project]\nname = "{name}"\n')
    fake_program(folder / "scripts", bootstrap_body, name="bootstrap.sh")
    return folder


@pytest.fixture
def one_thread(monkeypatch):
    """A real daemon with one torch thread (two shared cores), and no token from this environment."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.delenv("DRAGGAN_TOKEN", raising=False)


@pytest.fixture
def daemon():
    """A LocalDaemon stopped after the test, whatever happened."""
    made = LocalDaemon()
    yield made
    made.stop(timeout=5)


# ----------------------------------------------------------------------------------------- the source

def test_launcher_is_python_38_and_standard_library_only():
    """It runs inside the editors' Python (Krita 5.1: 3.8) from the plug-ins' copy of the package."""
    tree = ast.parse(Path(launcher.__file__).read_text(), feature_version=(3, 8))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name.split(".")[0] for a in node.names} <= STDLIB
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 1 or (node.level == 0 and node.module.split(".")[0] in STDLIB), node.module
        # list[int], dict[...] and X | Y fail at run time on 3.8.
        generic = ("list", "dict", "tuple", "set", "type", "frozenset", "deque")
        assert not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id in generic), ast.unparse(node)
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)), ast.unparse(node)


# ----------------------------------------------------------------------------------------- the real daemon

@pytest.mark.slow
def test_a_real_daemon_starts_answers_and_stops_cleanly(daemon, one_thread, tmp_path):
    url = daemon.start([str(DRAGGAN)], models_dir=str(tmp_path / "models"), extra_args=("--device", "cpu"))
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and daemon.url == url and daemon.running
    pid = daemon.pid
    assert "--exit-on-stdin-close" in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert DaemonClient(url).health()["api"] == "v1"
    assert daemon.died() is None

    assert daemon.stop() == 0
    assert not daemon.running and daemon.url is None and daemon.exit_code == 0 and daemon.died() is None
    assert live_group(pid) == []
    assert "draggan daemon stopped (SIGTERM)" in daemon.log_tail()
    assert daemon.stop() == 0  # again: the same answer, nothing to do


@pytest.mark.slow
def test_serve_winds_down_when_its_stdin_ends(one_thread, tmp_path):
    """`draggan serve --exit-on-stdin-close`: what is written is ignored; the end is a clean stop."""
    proc = subprocess.Popen([str(DRAGGAN), "serve", "--port", "0", "--device", "cpu", "--models", str(tmp_path),
                             "--exit-on-stdin-close"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ready = launcher.READY_LINE.match(first_line(proc.stdout))
        assert ready, "no ready line"
        proc.stdin.write("anything\n")
        proc.stdin.flush()
        assert DaemonClient(ready.group(1)).health()["api"] == "v1"
        assert proc.poll() is None
        proc.stdin.close()
        assert proc.wait(DEADLINE_S) == 0
        assert "draggan daemon stopped (stdin closed)" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


EDITOR = """
import sys, time
from draggan_client.launcher import LocalDaemon
daemon = LocalDaemon()
url = daemon.start([sys.argv[1]], models_dir=sys.argv[2], extra_args=("--device", "cpu"))
print(daemon.pid, url, flush=True)
time.sleep(3600)
"""


def python38() -> str | None:
    """Python 3.8, the editor's Python in Krita 5.1, when this machine has one that works."""
    for exe in sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8")) + [shutil.which("python3.8")]:
        if exe and subprocess.run([str(exe), "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                  capture_output=True).returncode == 0:
            return str(exe)
    return None


@pytest.mark.slow
def test_a_killed_editor_leaves_no_daemon_behind(one_thread, tmp_path):
    """The editor (Python 3.8 where there is one, with a copy of the package as the plug-ins carry it) starts
    a managed daemon and is SIGKILLed: the daemon sees its stdin end and exits by itself."""
    shutil.copytree(Path(launcher.__file__).parent, tmp_path / "plugin" / "draggan_client")
    editor = subprocess.Popen([python38() or sys.executable, "-c", EDITOR, str(DRAGGAN), str(tmp_path / "models")],
                              cwd=tmp_path / "plugin", stdout=subprocess.PIPE, text=True)
    daemon_pid = None
    try:
        printed = first_line(editor.stdout)
        assert printed, f"the editor ended with {editor.wait(DEADLINE_S)} before its daemon was ready"
        daemon_pid, url = int(printed.split()[0]), printed.split()[1]
        assert DaemonClient(url).health()["api"] == "v1"
        assert process_state(daemon_pid)[1] == daemon_pid  # its own process group: the editor's kill misses it

        editor.kill()
        editor.wait(DEADLINE_S)
        wait_until(lambda: not alive(daemon_pid), "the daemon exits after its editor was killed")
        wait_until(lambda: live_group(daemon_pid) == [], "nothing is left of the daemon's process group")
    finally:
        if editor.poll() is None:
            editor.kill()
            editor.wait()
        if daemon_pid is not None and alive(daemon_pid):
            os.killpg(daemon_pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_daemon_tied_to_the_editors_process_outlives_the_plugin_but_not_the_editor(one_thread, tmp_path):
    """GIMP's case: the plug-in process that starts the daemon ends at once (the daemon is kept: no pipe),
    the daemon ends by itself once the editor's process is gone, and stop_detached() finds it meanwhile."""
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    settings = launcher.DaemonSettings(command=str(DRAGGAN), extra_args=f"--models {tmp_path / 'models'}")
    plugin = LocalDaemon()
    try:
        url = launcher.start_local(plugin, settings, editor_pid=editor.pid, log_path=str(tmp_path / "daemon.log"))
        daemon_pid = plugin.pid
        assert plugin.kept
        plugin.detach()  # the plug-in process ends here; the daemon goes on
        assert DaemonClient(url).health()["api"] == "v1"
        assert not launcher.stop_detached(os.getpid())  # not a daemon: left alone
        editor.kill()
        editor.wait(DEADLINE_S)
        wait_until(lambda: not alive(daemon_pid), "the daemon exits once the editor's process is gone")
        assert not launcher.stop_detached(daemon_pid)  # gone: nothing to stop
    finally:
        if editor.poll() is None:
            editor.kill()
            editor.wait()


@pytest.mark.slow
def test_stop_detached_stops_a_daemon_an_earlier_plugin_process_started(one_thread, tmp_path):
    settings = launcher.DaemonSettings(command=str(DRAGGAN), extra_args=f"--models {tmp_path / 'models'}",
                                       keep_running=True)
    plugin = LocalDaemon()
    url = launcher.start_local(plugin, settings, editor_pid=os.getpid(), log_path=str(tmp_path / "daemon.log"))
    daemon_pid = plugin.pid
    plugin.detach()
    try:
        assert DaemonClient(url).health()["api"] == "v1"
        assert launcher.stop_detached(daemon_pid, timeout=DEADLINE_S)  # the clean way, however loaded the machine
        assert not alive(daemon_pid)
        wait_until(lambda: "stopped (SIGTERM)" in (tmp_path / "daemon.log").read_text(), "the daemon says it stopped")
    finally:
        if alive(daemon_pid):
            os.killpg(daemon_pid, signal.SIGKILL)


def test_the_end_of_a_kept_daemons_log_file(tmp_path):
    log = tmp_path / "daemon.log"
    assert launcher.log_file_tail(str(log)) == []  # none yet
    log.write_text("".join("line %d\n" % i for i in range(5000)) + "\n\n")
    assert launcher.log_file_tail(str(log), 3) == ["line 4997", "line 4998", "line 4999"]
    assert not launcher.daemon_running(os.getpid())  # pytest is no `serve`


def test_unreadable_extra_arguments_are_a_launcher_error(daemon, tmp_path):
    draggan = fake_program(tmp_path, "exit 0")
    with pytest.raises(LauncherError, match="extra arguments"):
        launcher.start_local(daemon, launcher.DaemonSettings(command=str(draggan), extra_args='--models "unclosed'))


def test_a_watched_process_is_passed_to_a_kept_daemon_only(daemon, tmp_path):
    draggan = fake_program(tmp_path, 'echo "args: $*"; exit 3')
    for keep_running, expected in ((False, "--exit-with-process 4242"), (True, None)):
        settings = launcher.DaemonSettings(command=str(draggan), keep_running=keep_running)
        with pytest.raises(LauncherError) as failed:
            launcher.start_local(daemon, settings, editor_pid=4242, log_path=str(tmp_path / "daemon.log"))
        assert "--exit-on-stdin-close" not in str(failed.value)
        assert (expected in str(failed.value)) if expected else ("--exit-with-process" not in str(failed.value))


# ----------------------------------------------------------------------------------------- stand-ins

def test_a_daemon_that_exits_at_once_reports_its_output(daemon, tmp_path):
    draggan = fake_program(tmp_path, 'echo "args: $*"\necho "error: the models folder is broken" >&2\nexit 3')
    with pytest.raises(LauncherError) as failed:
        daemon.start([str(draggan)], models_dir="/m", extra_args=("--device", "cpu"))
    message = str(failed.value)
    assert "stopped while starting (exit code 3)" in message
    assert "error: the models folder is broken" in message
    assert "args: serve --host 127.0.0.1 --port 0 --models /m --exit-on-stdin-close --device cpu" in message
    assert not daemon.running and daemon.exit_code == 3 and daemon.url is None
    assert daemon.died() is None  # the error was the report


def test_a_daemon_that_never_gets_ready_is_stopped_at_the_timeout(daemon, tmp_path):
    draggan = fake_program(tmp_path, 'echo "loading the model"\nsleep 1000')  # sleep: a child in its group
    with pytest.raises(LauncherError) as failed:
        daemon.start([str(draggan)], ready_timeout=1)
    message = str(failed.value)
    assert "did not get ready within 1 s, so it was stopped." in message
    # What it printed before it was stopped (on a slow machine maybe nothing yet) ends the message.
    tail = daemon.log_tail()
    assert message.endswith("Its last output:\n" + "\n".join(tail) if tail else "It printed nothing.")
    assert tail in ([], ["loading the model"])
    assert not daemon.running and daemon.died() is None
    wait_until(lambda: live_group(daemon.pid) == [], "no process of the daemon's group is left")


def test_a_daemon_that_closes_its_output_before_it_is_ready_is_stopped(daemon, tmp_path):
    draggan = fake_program(tmp_path, 'echo "loading the model"\nexec >&- 2>&-\nexec sleep 1000')
    with pytest.raises(LauncherError, match="closed its output before it was ready, so it was stopped") as failed:
        daemon.start([str(draggan)])
    assert "loading the model" in str(failed.value)
    wait_until(lambda: live_group(daemon.pid) == [], "no process of the daemon's group is left")


def test_a_daemon_that_prints_nothing_says_so(daemon, tmp_path):
    with pytest.raises(LauncherError, match="It printed nothing"):
        daemon.start([str(fake_program(tmp_path, "exit 1"))])


def test_a_missing_program_is_a_launcher_error(daemon, tmp_path):
    with pytest.raises(LauncherError, match="could not be started: .*nothing-here"):
        daemon.start([str(tmp_path / "nothing-here")])


def test_a_crash_after_start_is_reported_by_died(daemon, tmp_path):
    draggan = fake_program(tmp_path, f'echo "{READY}"\necho "serving"\nexec sleep 1000')
    url = daemon.start([str(draggan)])
    assert url == "http://127.0.0.1:9" and daemon.running and daemon.died() is None
    wait_until(lambda: "serving" in daemon.log_tail(), "the line after the ready line is read")
    with pytest.raises(LauncherError, match="already running"):
        daemon.start([str(draggan)])
    with pytest.raises(LauncherError, match="keep running"):
        daemon.detach()  # a managed daemon cannot outlive the editor

    os.kill(daemon.pid, signal.SIGKILL)  # a crash, from outside
    wait_until(lambda: daemon.died() is not None, "died() notices the end")
    assert "stopped unexpectedly (ended by SIGKILL)" in daemon.died() and "serving" in daemon.died()
    assert daemon.url is None and daemon.exit_code == -signal.SIGKILL
    assert daemon.stop() == -signal.SIGKILL and daemon.died() is None


def test_stop_while_starting_ends_the_start(daemon, tmp_path):
    draggan = fake_program(tmp_path, 'echo "loading the model"\nexec sleep 1000')
    failures: list[Exception] = []

    def start() -> None:
        try:
            daemon.start([str(draggan)])
        except LauncherError as e:
            failures.append(e)

    starting = threading.Thread(target=start)
    starting.start()
    wait_until(lambda: "loading the model" in daemon.log_tail(), "the stand-in prints")
    pid = daemon.pid
    assert daemon.stop() == -signal.SIGTERM
    starting.join(DEADLINE_S)
    assert not starting.is_alive() and "stopped while it was starting" in str(failures[0])
    wait_until(lambda: live_group(pid) == [], "no process of the daemon's group is left")


def test_a_kept_daemon_has_no_stdin_writes_a_log_and_outlives_detach(daemon, tmp_path):
    old = "an earlier daemon's line"
    log = tmp_path / "state" / "daemon.log"
    log.parent.mkdir()
    log.write_text(old + "\n")
    draggan = fake_program(tmp_path, f'echo "{READY}"\necho "args: $*"\necho "stdin: $(readlink /proc/self/fd/0)"\n'
                                     f'exec sleep 1000')
    assert daemon.start([str(draggan)], keep=True, log_path=str(log), port=8765) == "http://127.0.0.1:9"
    assert daemon.kept and daemon.log_path == str(log)
    wait_until(lambda: "stdin: /dev/null" in daemon.log_tail(), "the kept daemon's log is followed")
    assert "args: serve --host 127.0.0.1 --port 8765" in daemon.log_tail()
    assert old not in daemon.log_tail()  # this daemon's lines only
    assert log.read_text().startswith(old + "\n" + READY)  # appended

    pid = daemon.pid
    daemon.detach()
    assert not daemon.running and daemon.pid is None and daemon.stop() is None and daemon.died() is None
    try:
        assert alive(pid)
    finally:
        os.killpg(pid, signal.SIGKILL)  # the test's own stand-in: a kept daemon outlives its LocalDaemon


def test_the_child_gets_no_editor_python_settings_or_token(daemon, tmp_path, monkeypatch):
    """Krita's AppImage points PYTHONHOME and its own folders at its Python 3.8: not for ours."""
    appdir = tmp_path / "krita.AppDir"
    monkeypatch.setenv("APPDIR", str(appdir))
    monkeypatch.setenv("PATH", f"{appdir}/usr/bin{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONHOME", str(appdir / "usr"))
    monkeypatch.setenv("PYTHONPATH", str(appdir / "usr" / "lib"))
    monkeypatch.setenv("DRAGGAN_TOKEN", "a-token-the-plug-in-does-not-know")
    draggan = fake_program(tmp_path, 'echo "home=${PYTHONHOME-none} path=${PYTHONPATH-none} '
                                     'token=${DRAGGAN_TOKEN-none} PATH=$PATH"\nexit 3')
    with pytest.raises(LauncherError) as failed:
        daemon.start([str(draggan)])
    assert "home=none path=none token=none PATH=" in str(failed.value)
    assert str(appdir) not in str(failed.value)


# ----------------------------------------------------------------------------------------- finding the program

def test_find_command_prefers_the_setting_then_the_project_venv_then_path(tmp_path, monkeypatch):
    configured = fake_program(tmp_path / "my tools", "exit 0")  # a path with a space, given whole
    project = fake_project(tmp_path / "project")
    venv = fake_program(project / ".venv" / "bin", "exit 0")
    on_path = fake_program(tmp_path / "bin", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv(PROJECT_ENV, raising=False)

    assert find_command(str(project), str(configured)) == [str(configured)]
    assert find_command(str(project), f'"{configured}" --verbose') == [str(configured), "--verbose"]
    assert find_command(str(project), "draggan") == [str(on_path)]  # a bare name is looked up on PATH
    assert find_command(str(project), "  ") == [str(venv)]  # an empty setting is no setting
    assert find_command(str(project)) == [str(venv)]
    assert find_command(str(tmp_path / "not-set-up")) == [str(on_path)]
    assert find_command() == [str(on_path)]
    monkeypatch.setenv(PROJECT_ENV, str(project))
    assert find_command() == [str(venv)]


def test_find_command_says_what_to_set_up(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv(PROJECT_ENV, raising=False)
    with pytest.raises(LauncherError, match=f'Use "{SET_UP}"') as failed:
        find_command()
    assert "plug-in's settings" in str(failed.value)
    project = fake_project(tmp_path / "project")
    with pytest.raises(LauncherError, match=f"{project} is not set up yet. Use \"{SET_UP}\""):
        find_command(str(project))

    monkeypatch.setenv(PROJECT_ENV, str(tmp_path))
    with pytest.raises(LauncherError, match=rf"\${PROJECT_ENV} is set, but: .* is not the DragGAN project folder"):
        find_command()


def test_a_bad_setting_is_a_launcher_error(tmp_path):
    plain = tmp_path / "draggan.txt"
    plain.write_text("not a program")
    for setting, words in [(str(tmp_path / "missing" / "draggan"), "was not found"),
                           ("no-such-draggan-program", "was not found"),
                           (str(tmp_path), "is a folder"),
                           (str(plain), "cannot be run"),
                           ('"unclosed', "cannot be read")]:
        with pytest.raises(LauncherError, match=words):
            find_command(configured=setting)


# ----------------------------------------------------------------------------------------- set-up

def test_bootstrap_streams_its_lines_from_the_project_folder(tmp_path):
    project = fake_project(tmp_path / "project", 'echo "creating .venv in $(pwd)"\necho "installing torch" >&2')
    lines: list[str] = []
    Bootstrap(str(project)).run(lines.append)
    assert lines == [f"creating .venv in {project}", "installing torch"]


def test_a_failed_bootstrap_quotes_its_output(tmp_path):
    project = fake_project(tmp_path / "project", 'echo "pip: no space left on device"\nexit 1')
    with pytest.raises(LauncherError) as failed:
        Bootstrap(str(project)).run(lambda line: None)
    assert not isinstance(failed.value, BootstrapCancelled)
    assert "failed (exit code 1)" in str(failed.value) and "pip: no space left on device" in str(failed.value)


def test_bootstrap_refuses_a_folder_that_is_not_the_project(tmp_path):
    with pytest.raises(LauncherError, match="is not the DragGAN project folder"):
        Bootstrap(str(tmp_path))
    other = fake_project(tmp_path / "other", name="some-other-project")
    with pytest.raises(LauncherError, match="is not the DragGAN project folder"):
        Bootstrap(str(other))


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["ends-on-sigterm", "killed-after-grace"])
def test_cancel_ends_a_bootstrap_that_blocks(tmp_path, ignores_sigterm):
    trap = "trap '' TERM\n" if ignores_sigterm else ""
    project = fake_project(tmp_path / "project", f'{trap}echo "pid $$"\nsleep 1000\necho "not reached"')
    setup = Bootstrap(str(project))
    lines: list[str] = []
    ended: list[BaseException] = []

    def run() -> None:
        try:
            setup.run(lines.append)
        except BaseException as e:
            ended.append(e)

    running = threading.Thread(target=run)
    running.start()
    wait_until(lambda: lines, "the set-up prints")
    pid = int(lines[0].split()[1])
    setup.cancel()  # returns at once: SIGTERM now, SIGKILL after the grace
    running.join(DEADLINE_S)
    assert not running.is_alive() and isinstance(ended[0], BootstrapCancelled) and setup.cancelled
    assert "not reached" not in lines
    wait_until(lambda: live_group(pid) == [], "no process of the set-up's group is left")


def test_cancel_before_run_starts_nothing(tmp_path):
    project = fake_project(tmp_path / "project", f'touch "{tmp_path}/ran"')
    setup = Bootstrap(str(project))
    setup.cancel()
    with pytest.raises(BootstrapCancelled):
        setup.run(lambda line: None)
    assert not (tmp_path / "ran").exists()


def test_a_failing_line_handler_stops_the_bootstrap(tmp_path):
    project = fake_project(tmp_path / "project", 'echo "pid $$"\nsleep 1000')
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line.split()[1]))
        raise RuntimeError("the dialog is gone")

    with pytest.raises(RuntimeError, match="the dialog is gone"):
        Bootstrap(str(project)).run(on_line)
    wait_until(lambda: live_group(pids[0]) == [], "no process of the set-up's group is left")
