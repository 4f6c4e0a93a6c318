"""Start, watch and stop a local `draggan serve` from inside an editor, so an artist never opens a terminal.

Standard library only and Python 3.8 syntax, like the rest of this package (each plug-in carries a copy;
Krita 5.1 ships Python 3.8), and no Qt or GIMP: the plug-ins call it from their own threads and timers.

- find_command(): which `draggan` to run: the one set in the plug-in's settings, else the project's
  .venv/bin/draggan, else `draggan` on PATH. The project folder is the plug-in's setting or, when the
  plug-in knows none, $DRAGGAN_PROJECT (find_project()).
- LocalDaemon: one daemon process. start() waits for its "listening on" line and returns its URL; its last
  LOG_LINES lines of output are kept; died() tells a crash from a stop(); stop() ends it. A managed daemon
  runs with --exit-on-stdin-close and a stdin pipe that only the editor holds, so it winds down by itself
  when the editor quits or is killed. A kept one (keep=True) has no such pipe, writes its output to a log
  file and outlives the editor once detach()ed.
- DaemonSettings and start_local(): how the artist's local daemon is started, the same for both plug-ins
  (each stores the settings its own way); stop_detached() stops one started by an earlier plug-in process
  (GIMP runs each procedure in a new process, so its daemon is kept and tied to GIMP's own process).
- Bootstrap: "Set up local daemon…": runs the project's scripts/bootstrap.sh (creates .venv, installs torch
  and the project) with its output streamed line by line; cancel() ends it.

Every LauncherError's message is meant to be shown to the artist as it is.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import IO, Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

PROJECT_ENV = "DRAGGAN_PROJECT"  # names the project folder for a plug-in that has no setting for it
HOST = "127.0.0.1"  # a managed daemon is for this machine's editors only, so it needs no token
SET_UP = "Set up local daemon…"  # the plug-ins' menu entry that runs Bootstrap, named in messages

LOG_LINES = 400  # output lines kept per process (the daemon logs one line per request)
MESSAGE_LINES = 20  # output lines quoted in an error message: a traceback's end, short enough for a dialog
MAX_LINE_BYTES = 8192  # a longer line is kept in pieces, so output without newlines cannot fill memory
TAIL_BYTES = 64 * 1024  # read from a log file's end for its last lines: enough for MESSAGE_LINES long lines
MAX_LOG_BYTES = 10 * 1024 * 1024  # a kept daemon's log file is moved to <name>.1 at start past this size
READY_TIMEOUT_S = 180.0  # a first start imports torch from a cold disk, maybe on a slow, busy machine
STOP_TIMEOUT_S = 10.0  # on SIGTERM the daemon answers requests in flight for up to 5 s (docs/api.md)
KILL_WAIT_S = 10.0  # how long a SIGKILLed process may take to be gone before we give up waiting
CANCEL_GRACE_S = 5.0  # a cancelled set-up has this long to end on SIGTERM before it is killed
FOLLOW_POLL_S = 0.1  # how often a kept daemon's log file is read for new lines
READER_JOIN_S = 5.0  # how long to wait for the last output after a process ended
EXIT_AFTER_OUTPUT_S = 5.0  # how long after its output ends a process may take to be seen to exit

# backend/server.py prints this once the daemon answers: "draggan daemon listening on
# http://127.0.0.1:PORT/api/v1 (device ..., models ...)".
READY_LINE = re.compile(r"^draggan daemon listening on (http://\S+?)/api/v1\b")
PROJECT_NAME_LINE = re.compile(r'^\s*name\s*=\s*"draggan-studio"\s*$', re.MULTILINE)
MAX_PYPROJECT_BYTES = 64 * 1024  # the name is near the top; no need to read a huge file to find it

# What belongs to the editor's own Python and must not reach ours: Krita's and GIMP's bundles point these at
# their Python (3.8 for Krita 5.1), which would make the project's Python load the wrong standard library.
EDITOR_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH")
# Inside an AppImage (Krita's), $APPDIR is its mount point and its folders come first in these lists.
APPIMAGE_PATH_VARS = ("PATH", "LD_LIBRARY_PATH")

POSIX = os.name == "posix"


class LauncherError(Exception):
    """A daemon or set-up that could not be started, found or finished; str() is the message for the artist."""


class BootstrapCancelled(LauncherError):
    """The artist cancelled "Set up local daemon…": nothing failed, so a plug-in need not show an error."""


# ----------------------------------------------------------------------------------------- finding things

def check_project(project_dir: str) -> str:
    """The absolute path of `project_dir` if it is the DragGAN project, else LauncherError.

    Set-up runs the folder's scripts/bootstrap.sh, so the folder must be ours: it needs that script and a
    pyproject.toml naming draggan-studio.
    """
    folder = os.path.abspath(os.path.expanduser(project_dir))
    try:
        with open(os.path.join(folder, "pyproject.toml"), encoding="utf-8") as f:
            named = PROJECT_NAME_LINE.search(f.read(MAX_PYPROJECT_BYTES)) is not None
    except (OSError, UnicodeDecodeError):
        named = False
    if not (named and os.path.isfile(os.path.join(folder, "scripts", "bootstrap.sh"))):
        raise LauncherError("{} is not the DragGAN project folder. Choose the folder you unpacked the project "
                            "into (it holds pyproject.toml and scripts/bootstrap.sh).".format(folder))
    return folder


def find_project() -> Optional[str]:
    """The project folder named by $DRAGGAN_PROJECT, for a plug-in that was not told one; None when unset.

    A variable naming a folder that is not the project raises LauncherError, so a typo is not silently
    replaced by some other `draggan`.
    """
    named = os.environ.get(PROJECT_ENV, "").strip()
    if not named:
        return None
    try:
        return check_project(named)
    except LauncherError as e:
        raise LauncherError("${} is set, but: {}".format(PROJECT_ENV, e)) from None


def venv_command(project_dir: str) -> Optional[str]:
    """The project's own `draggan` (what scripts/bootstrap.sh installs), or None before set-up."""
    if POSIX:
        path = os.path.join(project_dir, ".venv", "bin", "draggan")
    else:
        path = os.path.join(project_dir, ".venv", "Scripts", "draggan.exe")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def find_command(project_dir: Optional[str] = None, configured: Optional[str] = None) -> List[str]:
    """The command that runs the daemon (`serve` and its options are added by LocalDaemon.start).

    In this order: `configured` (the plug-in's setting: a path to `draggan`, optionally followed by options;
    a path with spaces may be given whole, unquoted), else the project's .venv/bin/draggan (project_dir, or
    $DRAGGAN_PROJECT when None), else `draggan` on PATH. Finding none raises LauncherError saying what to set
    up: the artist chose "local daemon" and has to be told how to get one.
    """
    if configured and configured.strip():
        return _configured_command(configured.strip())
    if project_dir is None:
        project_dir = find_project()
    if project_dir:
        found = venv_command(os.path.abspath(os.path.expanduser(project_dir)))
        if found:
            return [found]
    found = shutil.which("draggan")
    if found:
        return [found]
    if project_dir:
        raise LauncherError('The DragGAN project in {} is not set up yet. Use "{}" to install it (a few minutes, '
                            "and a large download: torch).".format(project_dir, SET_UP))
    raise LauncherError('No DragGAN daemon program was found. Use "{}" and choose the folder you unpacked the '
                        "project into, or set the daemon program in the plug-in's settings (the draggan program: "
                        "<project folder>/.venv/bin/draggan).".format(SET_UP))


def _configured_command(text: str) -> List[str]:
    whole = os.path.expanduser(text)
    if os.path.isfile(whole):
        words = [whole]  # a path with spaces in it, not quoted
    else:
        try:
            words = shlex.split(text, posix=POSIX)
        except ValueError as e:
            raise LauncherError("The daemon program in the plug-in's settings cannot be read ({}): {}".format(
                e, text)) from None
        if not POSIX:
            words = [w[1:-1] if len(w) > 1 and w[0] == w[-1] == '"' else w for w in words]
        words[0] = os.path.expanduser(words[0])
    program = words[0]
    if os.path.isdir(program):
        raise LauncherError("The daemon program in the plug-in's settings, {}, is a folder. Choose the draggan "
                            "program in it (.venv/bin/draggan in the project folder).".format(program))
    named_by_path = os.sep in program or (os.altsep is not None and os.altsep in program)
    resolved = program if named_by_path else shutil.which(program)
    if not resolved or not os.path.isfile(resolved):
        raise LauncherError("The daemon program in the plug-in's settings was not found: {}. Choose the draggan "
                            "program (.venv/bin/draggan in the project folder), or clear the setting to use the "
                            "project's own.".format(program))
    if not os.access(resolved, os.X_OK):
        raise LauncherError("The daemon program in the plug-in's settings, {}, cannot be run (it is not "
                            "executable).".format(resolved))
    return [resolved] + words[1:]


def default_log_path() -> str:
    """Where a kept daemon writes its output: $XDG_STATE_HOME/draggan/daemon.log (~/.local/state/draggan/...),
    or %LOCALAPPDATA%\\draggan\\daemon.log on Windows. It outlives the editor, so its log must too."""
    if POSIX:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    else:
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
    return os.path.join(base, "draggan", "daemon.log")


# ----------------------------------------------------------------------------------------- the daemon

class LocalDaemon:
    """One `draggan serve` process on this machine, started and watched for an editor.

    Thread-safe: start() may block a worker thread while the plug-in's main thread calls stop(), died() or
    log_tail(). Once started, an instance keeps the process's exit code and last output until the next start.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a line was read, or the output ended
        self._lines: Deque[str] = deque(maxlen=LOG_LINES)
        self._proc: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None
        self._url: Optional[str] = None
        self._output_ended = False
        self._expected_end = False  # stop() was called or start() failed: an exit is not a death to report
        self._stop_following = threading.Event()  # detach(): stop reading a kept daemon's log file
        self._kept = False
        self._log_path: Optional[str] = None

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """The process is alive (it may still be starting: url is None until it is ready)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def url(self) -> Optional[str]:
        """The daemon's base URL ("http://127.0.0.1:PORT", what DaemonClient takes) while it runs and is ready."""
        return self._url if self.running else None

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def exit_code(self) -> Optional[int]:
        """The last process's exit status (negative: the signal that ended it); None while it runs or before."""
        proc = self._proc
        return proc.poll() if proc is not None else None

    @property
    def kept(self) -> bool:
        """Started with keep=True: it does not end with the editor."""
        return self._kept

    @property
    def log_path(self) -> Optional[str]:
        """The log file of a kept daemon (None for a managed one, whose output only this object holds)."""
        return self._log_path

    def log_tail(self, n: int = MESSAGE_LINES) -> List[str]:
        """The last n lines of the process's output (stdout and its log on stderr, in order)."""
        with self._lock:
            lines = list(self._lines)
        return lines[-n:] if n > 0 else []

    def died(self) -> Optional[str]:
        """A message for the artist when the process ended without stop() (a crash, or killed from outside);
        None while it runs, after stop() or a failed start (which raised already), or when there was none.
        Cheap while the process runs, so a plug-in may call it from a timer."""
        with self._lock:
            proc, expected = self._proc, self._expected_end
        if proc is None or expected:
            return None
        code = proc.poll()
        if code is None:
            return None
        self._join_reader()
        return "The local DragGAN daemon stopped unexpectedly ({}).{}".format(describe_exit(code), self._quoted_tail())

    # ------------------------------------------------------------------ life

    def start(self, command: Sequence[str], models_dir: Optional[str] = None, extra_args: Sequence[str] = (),
              ready_timeout: float = READY_TIMEOUT_S, keep: bool = False, log_path: Optional[str] = None,
              port: int = 0, watch_pid: Optional[int] = None) -> str:
        """Run `<command> serve --host 127.0.0.1 --port PORT [--models DIR] [...]` and wait until it listens;
        returns its base URL.

        A managed daemon (keep=False) gets --exit-on-stdin-close and a stdin pipe only this process holds, so
        it ends with the editor however the editor ends; its output is read through a pipe. A kept daemon
        (keep=True) gets no pipe at all, so it outlives the editor, and writes its output to log_path
        (default_log_path() when None), which is followed from there; the file is appended to (one line per
        request while it runs) and moved to <log_path>.1 at a start once past MAX_LOG_BYTES.

        watch_pid: a kept daemon ends cleanly once that process is gone (--exit-with-process): GIMP keeps its
        daemon past the plug-in process that started it, but not past GIMP.

        port 0 picks a free port; a kept daemon may want a fixed one, so that the next editor session finds
        it. $DRAGGAN_TOKEN is not passed on: a loopback daemon needs no token, and one the plug-in does not
        know would refuse it.

        Raises LauncherError, quoting the end of its output, when the process cannot be started, exits
        before it is ready, or is not ready within ready_timeout seconds (it is then stopped).
        """
        if not command:
            raise LauncherError("No daemon program was given to start.")
        self._join_reader()  # the last process's output, complete
        args = list(command) + ["serve", "--host", HOST, "--port", str(port)]
        if models_dir:
            args += ["--models", models_dir]
        if not keep:
            args.append("--exit-on-stdin-close")
        if watch_pid is not None:
            args += ["--exit-with-process", str(int(watch_pid))]
        args += list(extra_args)
        env = child_environment(drop=("DRAGGAN_TOKEN",))
        # Started under the lock, so that a stop() from another thread finds the process, and two starts
        # cannot both run one.
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                raise LauncherError("The local DragGAN daemon is already running.")
            self._lines.clear()
            self._url = None
            self._output_ended = False
            self._expected_end = False
            self._stop_following = threading.Event()
            self._kept = keep
            self._log_path = None
            if keep:
                proc, stream = self._start_kept(args, env, log_path or default_log_path())
            else:
                proc = _popen(args, "The local DragGAN daemon", env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                stream = proc.stdout
            self._proc = proc
            self._reader = threading.Thread(target=self._read_output, args=(proc, stream, keep, self._stop_following),
                                            name="draggan-daemon-output", daemon=True)
            self._reader.start()
        return self._wait_ready(proc, ready_timeout)

    def _start_kept(self, args: List[str], env: Dict[str, str], log_path: str
                    ) -> Tuple[subprocess.Popen, IO[bytes]]:
        log_path = os.path.abspath(os.path.expanduser(log_path))
        try:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            if os.path.isfile(log_path) and os.path.getsize(log_path) > MAX_LOG_BYTES:
                os.replace(log_path, log_path + ".1")
            # Appended, not truncated: a daemon kept from an earlier session may still be writing to it.
            with open(log_path, "ab") as out:
                stream = open(log_path, "rb")
                stream.seek(0, os.SEEK_END)  # this daemon's lines only
                try:
                    proc = _popen(args, "The local DragGAN daemon", env, stdin=subprocess.DEVNULL, stdout=out)
                except BaseException:
                    stream.close()
                    raise
        except OSError as e:
            raise LauncherError("The local DragGAN daemon's log file {} cannot be written ({}).".format(
                log_path, e.strerror or e)) from None
        self._log_path = log_path
        return proc, stream

    def _wait_ready(self, proc: subprocess.Popen, ready_timeout: float) -> str:
        deadline = time.monotonic() + ready_timeout
        with self._lock:
            while self._url is None and not self._output_ended and not self._expected_end:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:  # exited (a leftover child may still hold the pipe)
                    break
                self._changed.wait(min(left, 1.0))  # 1 s: the exit test above needs no line to wake it
            url, stopped, silent = self._url, self._expected_end, self._output_ended
            if url is None:
                self._expected_end = True  # the error raised below is the report: died() stays quiet
        if url is not None:
            return url
        if stopped:
            self._end(proc, STOP_TIMEOUT_S)
            raise LauncherError("The local DragGAN daemon was stopped while it was starting.")
        if silent:
            try:  # the end of its output is usually its exit, which the system reports a moment later
                proc.wait(EXIT_AFTER_OUTPUT_S)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is not None:
            self._join_reader()
            raise LauncherError("The local DragGAN daemon stopped while starting ({}).{}".format(
                describe_exit(proc.returncode), self._quoted_tail()))
        self._end(proc, STOP_TIMEOUT_S)
        if silent:  # alive, but it can no longer print that it is ready
            raise LauncherError("The local DragGAN daemon closed its output before it was ready, so it was stopped."
                                "{}".format(self._quoted_tail()))
        raise LauncherError("The local DragGAN daemon did not get ready within {:g} s, so it was stopped.{}".format(
            ready_timeout, self._quoted_tail()))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> Optional[int]:
        """End the daemon and return its exit status (0: it wound down cleanly), or None when there was none.

        SIGTERM to its process group, which the daemon answers by finishing the requests in flight and
        exiting 0; after `timeout` seconds, SIGKILL. Calling it again returns the same status.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return None
            self._expected_end = True
            self._changed.notify_all()
        self._end(proc, timeout)
        return proc.returncode

    def detach(self) -> None:
        """Keep the daemon running after the editor quits: forget the process without stopping it.

        Only a daemon started with keep=True can be kept; a managed one ends when the editor's end of its
        stdin pipe closes, so detaching it raises LauncherError (start it again with keep=True). Nothing
        to do when no process runs.
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            if not self._kept:
                raise LauncherError("This local daemon was started to stop when the editor quits. Stop it and start "
                                    "it again with \"keep running\" to keep it after the editor quits.")
            self._stop_following.set()
            self._proc, self._url, self._expected_end = None, None, True
        self._join_reader()

    def _end(self, proc: subprocess.Popen, timeout: float) -> None:
        """SIGTERM, then SIGKILL after timeout; then our end of its pipes is closed and its output read."""
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL if POSIX else signal.SIGTERM)
                try:
                    proc.wait(KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    raise LauncherError("The local DragGAN daemon (process {}) does not end even when killed."
                                        .format(proc.pid)) from None
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:  # a broken pipe: the daemon is gone, which is all we wanted
                pass
        self._join_reader()

    def _join_reader(self) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(READER_JOIN_S)

    # ------------------------------------------------------------------ output

    def _read_output(self, proc: subprocess.Popen, stream: IO[bytes], follow: bool,
                     stop_following: threading.Event) -> None:
        """Keep the output's lines and spot the ready line, until the output ends: for a pipe, once every
        process holding it has exited; for a kept daemon's log file, once it exited or detach() was called."""
        try:
            exited = False
            for line in _lines(stream, follow):
                if line is not None:
                    self._add_line(line)
                    continue
                # A followed file has no more for now.
                if exited or stop_following.is_set():
                    break
                exited = proc.poll() is not None  # one more pass then reads what it wrote before exiting
                if not exited:
                    stop_following.wait(FOLLOW_POLL_S)
        except (OSError, ValueError):  # the stream was closed under us: the output has ended either way
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass
            with self._lock:
                self._output_ended = True
                self._changed.notify_all()

    def _add_line(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            if self._url is None:
                ready = READY_LINE.match(line)
                if ready:
                    self._url = ready.group(1)
            self._changed.notify_all()

    def _quoted_tail(self) -> str:
        tail = self.log_tail(MESSAGE_LINES)
        if not tail:
            return " It printed nothing."
        return " Its last output:\n" + "\n".join(tail)


# ----------------------------------------------------------------------------------------- set-up

@dataclass
class DaemonSettings:
    """How the artist's local daemon is started; both plug-ins keep these in their own settings."""
    command: str = ""  # the `draggan` program; empty: the project's .venv, else PATH (find_command)
    project_dir: str = ""  # the unpacked project ("Set up local daemon…" fills it); empty: $DRAGGAN_PROJECT
    extra_args: str = ""  # more `draggan serve` arguments, e.g. --catalogue studio.json --models DIR --device cuda
    keep_running: bool = False  # the daemon outlives the editor
    start_with_editor: bool = False  # the plug-in starts it when the editor starts


def start_local(daemon: LocalDaemon, settings: DaemonSettings, editor_pid: Optional[int] = None,
                ready_timeout: float = READY_TIMEOUT_S, log_path: Optional[str] = None) -> str:
    """Start the artist's local daemon as the settings say; returns its URL.

    editor_pid: for a plug-in whose process ends before the editor does (GIMP): the daemon is kept (no
    stdin pipe) but ends with the editor's process, unless the artist asked to keep it running. Without
    it (Krita) the daemon is managed: it ends when this process ends, unless kept running. log_path: a
    kept daemon's log file (default_log_path() when None)."""
    try:
        extra = shlex.split(settings.extra_args or "")
    except ValueError as e:
        raise LauncherError("The daemon's extra arguments cannot be read ({}): {}".format(e, settings.extra_args)) \
            from None
    command = find_command(settings.project_dir or None, settings.command or None)
    keep = settings.keep_running or editor_pid is not None
    watch = editor_pid if editor_pid is not None and not settings.keep_running else None
    return daemon.start(command, extra_args=extra, ready_timeout=ready_timeout, keep=keep, log_path=log_path,
                        watch_pid=watch)


def stop_detached(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop a local daemon started by an earlier plug-in process (SIGTERM, then SIGKILL after timeout).
    True when it is gone (also after the SIGKILL, once the system has ended it); False when no such daemon
    runs (the pid is gone, or now names another program, which is left alone) or it outlived the SIGKILL."""
    if not POSIX or not daemon_running(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    if _gone_within(pid, timeout):
        return True
    try:
        os.killpg(pid, signal.SIGKILL)  # its own session's group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
    return _gone_within(pid, KILL_WAIT_S)


def log_file_tail(log_path: Optional[str] = None, n: int = MESSAGE_LINES) -> List[str]:
    """The last n lines of a kept daemon's log file (default_log_path() when None); [] when there is none.
    For a plug-in that did not start the daemon itself and must say why it ended."""
    try:
        with open(os.path.expanduser(log_path or default_log_path()), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-n:]


def _gone_within(pid: int, timeout: float) -> bool:
    """Whether process pid ended (gone, or a zombie) within timeout. Its command line is not looked at:
    an exiting process shows an empty one before it has ended."""
    deadline = time.monotonic() + timeout
    while _process_state(pid) not in (None, b"Z", b"X"):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _process_state(pid: int) -> Optional[bytes]:
    """The state letter of process pid from /proc (b"R", b"S", b"Z", ...), None when there is no such process."""
    try:
        with open("/proc/{}/stat".format(int(pid)), "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def daemon_running(pid: int) -> bool:
    """Whether pid is a running `... serve` (not a zombie): read from /proc, so a reused pid is not taken
    for the daemon (and not stopped)."""
    try:
        with open("/proc/{}/cmdline".format(int(pid)), "rb") as f:
            args = f.read().split(b"\0")
    except (OSError, ValueError):
        return False
    return b"serve" in args and _process_state(pid) not in (None, b"Z", b"X")


class Bootstrap:
    """"Set up local daemon…": the project's own scripts/bootstrap.sh, which creates .venv and installs torch
    and the project into it (the README's set-up), for an artist who only unpacked the project.

    run() blocks (pip may download gigabytes, so there is no time limit) and passes each output line to
    on_line on its own thread; cancel() may be called from any thread and returns at once. Building one for
    a folder that is not the project raises LauncherError.
    """

    def __init__(self, project_dir: str):
        self.project_dir = check_project(project_dir)
        self.script = os.path.join(self.project_dir, "scripts", "bootstrap.sh")
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._read_all = threading.Event()  # run() read the output to its end: nothing holds the pipe any more
        self._lines: Deque[str] = deque(maxlen=LOG_LINES)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def log_tail(self, n: int = MESSAGE_LINES) -> List[str]:
        lines = list(self._lines)
        return lines[-n:] if n > 0 else []

    def run(self, on_line: Callable[[str], None]) -> None:
        """Run the set-up script, calling on_line(line) for each line it prints (without the newline).

        Raises BootstrapCancelled after cancel(), and LauncherError quoting the end of the output when the
        script fails. If on_line raises, the script is stopped and the exception goes on.
        """
        bash = shutil.which("bash")
        if bash is None:
            raise LauncherError("Setting up the local daemon needs bash, which was not found on this system.")
        with self._lock:
            if self._cancelled:
                raise BootstrapCancelled("Setting up the local daemon was cancelled.")
            if self._proc is not None:
                raise LauncherError("The local daemon is already being set up.")
            self._proc = proc = _popen([bash, self.script], "Setting up the local daemon", child_environment(),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=self.project_dir)
        try:
            for line in _lines(proc.stdout, follow=False):
                if line is not None:
                    self._lines.append(line)
                    on_line(line)
            self._read_all.set()
            proc.wait()
        finally:
            self._read_all.set()
            if proc.poll() is None:  # on_line raised: leave nothing running
                signal_group(proc, signal.SIGKILL if POSIX else signal.SIGTERM)
                proc.wait()
            proc.stdout.close()
        if self._cancelled:
            raise BootstrapCancelled("Setting up the local daemon was cancelled.")
        if proc.returncode != 0:
            tail = self.log_tail(MESSAGE_LINES)
            raise LauncherError("Setting up the local daemon failed ({}).{}".format(
                describe_exit(proc.returncode), " Its last output:\n" + "\n".join(tail) if tail else ""))

    def cancel(self) -> None:
        """Stop the set-up: SIGTERM to the script and everything it started (pip), SIGKILL after
        CANCEL_GRACE_S if they are still there. Returns at once; run() then raises BootstrapCancelled."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is None or self._read_all.is_set():
            return
        signal_group(proc, signal.SIGTERM)
        killer = threading.Timer(CANCEL_GRACE_S, self._kill_if_still_there, args=(proc,))
        killer.daemon = True
        killer.start()

    def _kill_if_still_there(self, proc: subprocess.Popen) -> None:
        # While run() has not read the output to its end, some process of the group still holds the pipe,
        # so the group (and its id) still exists and cannot be some other program's.
        if not self._read_all.is_set():
            signal_group(proc, signal.SIGKILL if POSIX else signal.SIGTERM, leader_reaped_ok=True)


# ----------------------------------------------------------------------------------------- processes

def child_environment(drop: Sequence[str] = ()) -> Dict[str, str]:
    """This process's environment for a child, without the editor's own Python settings (EDITOR_PYTHON_VARS,
    and inside an AppImage the AppImage's folders in PATH and LD_LIBRARY_PATH) and without `drop`."""
    env = {k: v for k, v in os.environ.items() if k not in EDITOR_PYTHON_VARS and k not in drop}
    appdir = os.environ.get("APPDIR")
    if appdir:
        inside = os.path.join(os.path.abspath(appdir), "")
        for name in APPIMAGE_PATH_VARS:
            if name in env:
                kept = [p for p in env[name].split(os.pathsep)
                        if p and not os.path.join(os.path.abspath(p), "").startswith(inside)]
                env[name] = os.pathsep.join(kept)
    env["PYTHONUNBUFFERED"] = "1"  # output as it happens, for the log tail and the ready line
    return env


def _popen(args: List[str], what: str, env: Dict[str, str], **options: Any) -> subprocess.Popen:
    """A child in a process group of its own (so stopping it reaches whatever it started), no shell, its
    stderr merged into its stdout."""
    if POSIX:
        options["start_new_session"] = True
    else:
        options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        return subprocess.Popen(args, stderr=subprocess.STDOUT, env=env, **options)
    except OSError as e:
        raise LauncherError("{} could not be started: {} ({}).".format(what, args[0], e.strerror or e)) from None


def signal_group(proc: subprocess.Popen, sig: int, leader_reaped_ok: bool = False) -> None:
    """Send sig to proc's process group (POSIX; elsewhere SIGTERM closes the stdin pipe if any, so a daemon
    with --exit-on-stdin-close winds down, else ends the process).

    The group's id is the leader's pid, so it is only signalled while the leader is not yet reaped (the id
    cannot be reused then); leader_reaped_ok is for a caller that knows another member still exists.
    """
    if not POSIX:
        if sig == signal.SIGTERM and proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        else:
            proc.kill()
        return
    if proc.returncode is not None and not leader_reaped_ok:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # already gone
        pass


def describe_exit(code: int) -> str:
    """'exit code 3' or 'ended by SIGKILL': how a process ended, in words."""
    if code < 0:
        try:
            return "ended by {}".format(signal.Signals(-code).name)
        except ValueError:
            return "ended by signal {}".format(-code)
    return "exit code {}".format(code)


def _lines(stream: IO[bytes], follow: bool) -> Iterator[Optional[str]]:
    """The stream's lines, decoded, without their newline, at most MAX_LINE_BYTES each. With follow (a file
    another process writes), None whenever there is nothing more for now; the caller decides when to stop."""
    pending = b""
    while True:
        chunk = stream.readline(MAX_LINE_BYTES - len(pending))
        if chunk:
            pending += chunk
            if pending.endswith(b"\n") or len(pending) >= MAX_LINE_BYTES:
                yield pending.decode("utf-8", "replace").rstrip("\r\n")
                pending = b""
            continue
        if not follow:
            break
        yield None
    if pending:
        yield pending.decode("utf-8", "replace").rstrip("\r\n")
