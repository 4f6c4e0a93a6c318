"""The artist's local daemon, managed from the docker: start, stop, "Set up local daemon…", its log, a
crash noticed by a timer, and what happens to it when Krita quits.

The launcher (draggan_client/launcher.py, shared with the GIMP plug-in) does the work; this QObject only
runs its blocking calls (process start and stop, the set-up script) on the worker thread and reports on
the GUI thread through the controller (its connection state and message area).
"""
import threading
from collections import deque

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import daemon as daemon_calls
from .draggan_client import launcher

WATCH_MS = 1000  # how often a running daemon is checked for a crash (LocalDaemon.died() is cheap)
LOG_VIEW_LINES = 200  # lines the docker's Log view shows
QUIT_WAIT_S = 6.0  # at quit: time for the daemon to wind down; past it, Krita's exit closes its stdin pipe,
# which ends a managed daemon by itself (--exit-on-stdin-close)


class LocalDaemonControl(QObject):
    changed = pyqtSignal()  # running / busy / set-up state
    _line = pyqtSignal(str)  # a set-up output line, from the worker thread to the GUI thread

    IDLE, STARTING, STOPPING, SETTING_UP = "", "starting", "stopping", "setting up"

    def __init__(self, controller):
        super(LocalDaemonControl, self).__init__(controller)
        self.ctl = controller
        self.daemon = launcher.LocalDaemon()
        self.busy = self.IDLE
        self.bootstrap = None
        self.setup_lines = deque(maxlen=LOG_VIEW_LINES)
        self.quit_done = None  # what at_quit() did ("stop", "detach" or None), for the log and tests
        self._line.connect(self.setup_lines.append)
        self._watch = QTimer(self)
        self._watch.setInterval(WATCH_MS)
        self._watch.timeout.connect(self._check_alive)

    # -- state for the docker ------------------------------------------------------------------------
    @property
    def running(self):
        return self.daemon.running

    def status_text(self):
        if self.busy == self.SETTING_UP:
            return "Setting up the local daemon (installing; this can take several minutes)..."
        if self.busy == self.STARTING:
            return "Starting the local daemon..."
        if self.busy == self.STOPPING:
            return "Stopping the local daemon..."
        if self.daemon.running:
            url = self.daemon.url
            return "Running (process %s)%s%s" % (self.daemon.pid, " at " + url if url else "",
                                                 ", kept after Krita quits" if self.daemon.kept else "")
        return "Not running"

    def log_lines(self):
        """What the Log view shows: the set-up's output while it runs or failed last, else the daemon's."""
        if self.busy == self.SETTING_UP or (self.setup_lines and not self.daemon.log_tail(1)):
            return list(self.setup_lines)
        return self.daemon.log_tail(LOG_VIEW_LINES)

    # -- start / stop ------------------------------------------------------------------------------------
    def start(self):
        if self.busy or self.daemon.running:
            return False
        self.ctl.save_settings()
        self.busy = self.STARTING
        self.changed.emit()
        self.ctl.local_daemon_starting()
        self.ctl.worker.submit(launcher.start_local, (self.daemon, self.ctl.settings.daemon_settings()),
                               self._started, self._start_failed)
        return True

    def _started(self, url):
        self.busy = self.IDLE
        self._watch.start()
        self.changed.emit()
        self.ctl.use_local_daemon(url)

    def _start_failed(self, exc):
        self.busy = self.IDLE
        self.changed.emit()
        self.ctl.local_daemon_failed(_describe(exc))

    def stop(self):
        if self.busy in (self.STOPPING, self.SETTING_UP) or not self.daemon.running:
            return False
        self.busy = self.STOPPING
        self.changed.emit()
        self.ctl.worker.submit(self.daemon.stop, (), self._stopped, self._stop_failed)
        return True

    def _stopped(self, _code):
        self.busy = self.IDLE
        self._watch.stop()
        self.changed.emit()
        self.ctl.local_daemon_stopped()

    def _stop_failed(self, exc):
        self.busy = self.IDLE
        self.changed.emit()
        self.ctl.say(_describe(exc), True)

    def _check_alive(self):
        if self.daemon.running:
            return
        self._watch.stop()
        died = self.daemon.died()
        self.changed.emit()
        if died:
            self.ctl.local_daemon_failed(died)

    # -- set-up ------------------------------------------------------------------------------------------
    def set_up(self, folder):
        """Run the project's set-up in `folder` (the artist chose it), then start the daemon."""
        if self.busy or self.daemon.running:
            self.ctl.say("Stop the local daemon before setting it up again.", True)
            return False
        try:
            boot = launcher.Bootstrap(folder)
        except launcher.LauncherError as exc:
            self.ctl.say(str(exc), True)
            return False
        self.ctl.settings.project_dir = boot.project_dir
        self.ctl.save_settings()
        self.bootstrap = boot
        self.setup_lines.clear()
        self.busy = self.SETTING_UP
        self.changed.emit()
        self.ctl.say("Setting up the local daemon in %s..." % boot.project_dir)
        self.ctl.worker.submit(boot.run, (self._line.emit,), self._set_up, self._set_up_failed)
        return True

    def cancel_set_up(self):
        if self.bootstrap is not None:
            self.bootstrap.cancel()
            self.ctl.say("Cancelling the set-up...")

    def _set_up(self, _result):
        self.bootstrap, self.busy = None, self.IDLE
        self.changed.emit()
        self.ctl.say("The local daemon is set up.")
        self.start()

    def _set_up_failed(self, exc):
        self.bootstrap, self.busy = None, self.IDLE
        self.changed.emit()
        self.ctl.say(_describe(exc), not isinstance(exc, launcher.BootstrapCancelled))

    # -- Krita starts and quits --------------------------------------------------------------------------
    def start_with_krita(self):
        """"Start with Krita": start the local daemon unless a daemon already answers at the configured URL."""
        if not self.ctl.settings.start_with_krita:
            return
        self.ctl.worker.submit(_answers, (self.ctl.client(),), self._probed, None)

    def _probed(self, answers):
        if answers:
            self.ctl.connect_daemon()
        else:
            self.start()

    def at_quit(self):
        """Krita is quitting: stop the daemon, or keep it if the artist asked to and it can outlive Krita.
        Runs on the GUI thread as Krita closes; the bounded wait lets the daemon end cleanly."""
        action = self.ctl.settings.quit_action(self.daemon.running, self.daemon.kept)
        self.quit_done = action
        self._watch.stop()
        if self.bootstrap is not None:
            self.bootstrap.cancel()
        if action == "detach":
            _log("Krita is quitting; the local daemon (process %s) keeps running" % self.daemon.pid)
            self.daemon.detach()
        elif action == "stop":
            _log("Krita is quitting; stopping the local daemon (process %s)" % self.daemon.pid)
            t = threading.Thread(target=self.daemon.stop, name="draggan-daemon-stop", daemon=True)
            t.start()
            t.join(QUIT_WAIT_S)


def _log(text):
    """A line on Krita's output (its terminal or log): what happened to the daemon as Krita ended."""
    print("DragGAN: " + text, flush=True)


def _answers(client):
    try:
        client.health()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no daemon there"
        return False


def _describe(exc):
    if isinstance(exc, launcher.LauncherError):
        return str(exc)
    return daemon_calls.describe_error(exc)
