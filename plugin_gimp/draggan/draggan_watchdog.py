"""Cancels the plug-in's daemon job if the plug-in dies before it is done.

GIMP's Cancel button (next to the progress bar) ends a plug-in with SIGKILL, which no signal
handler can catch, so the plug-in starts this helper in its own session and talks to it over a
pipe: "job <id>" lines name running jobs and "done" says all is well. If the pipe closes without
"done" (the plug-in was killed or crashed), every named job is cancelled on the daemon: a drag's
session goes back as it was, a real layer's inversion (invert job) is dropped with its session.
Jobs that already ended answer 409 and are skipped. Standard library + the shared client only.

    python3 draggan_watchdog.py URL       (token, if any, in $DRAGGAN_WATCHDOG_TOKEN)
"""
import os
import subprocess
import sys


class Watchdog:
    """The plug-in's side: starts the helper (in its own session, so a kill of the plug-in's process
    group spares it), names jobs, and says "done" when the plug-in got its answer."""

    def __init__(self, url, token=None):
        self.proc = None
        env = dict(os.environ)
        env.pop("DRAGGAN_WATCHDOG_TOKEN", None)
        if token:
            env["DRAGGAN_WATCHDOG_TOKEN"] = token
        if os.name == "nt":
            kwargs = {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
        else:
            kwargs = {"start_new_session": True}
        try:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), url], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, **kwargs)
        except OSError:
            self.proc = None  # no helper: a Cancel in GIMP then lets the daemon finish the job unseen

    def _send(self, line):
        if self.proc is not None:
            try:
                self.proc.stdin.write((line + "\n").encode())
                self.proc.stdin.flush()
            except OSError:
                pass

    def job(self, job_id):
        self._send("job " + job_id)

    def done(self):
        if self.proc is not None:
            self._send("done")
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


def watch(lines, cancel) -> bool:
    """Read the plug-in's lines; cancel(job_id) for each named job unless "done" came. True if done."""
    jobs = []
    for line in lines:
        line = line.strip()
        if line == "done":
            return True
        if line.startswith("job "):
            jobs.append(line[4:])
    for job_id in jobs:
        try:
            cancel(job_id)
        except Exception:  # finished meanwhile, or the daemon is gone: nothing left to cancel
            pass
    return False


def main(argv) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from draggan_client.client import DaemonClient
    client = DaemonClient(argv[1], token=os.environ.get("DRAGGAN_WATCHDOG_TOKEN") or None, timeout=10.0)
    watch(sys.stdin, client.cancel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
