"""Holds a daemon job in progress for the editor end-to-end tests, through the daemon's test gate.

A test that acts while a job runs (looks for a preview, presses Stop or Cancel) must not hope the
job lasts long enough: on a fast machine a small job ends before the editor's next poll. So it
arms the gate before it starts the job (every job then waits after HOLD_STEP steps), waits until
the job is held, acts, and opens the gate where the job must go on (backend/testgate.py; the
daemon must run with DRAGGAN_TEST_GATE=1). Stop and cancel end a held job's wait at once.

Standard library only: it runs on the host, inside Krita and GIMP, and as a command in the
editors' chroots, where the token (if any) comes from $DRAGGAN_TOKEN:

    python3 editor_gate.py URL open | wait-held [SECONDS] | wait-released [SECONDS]

(the waits exit 1 when the time runs out).
"""
import contextlib
import json
import os
import sys
import time
import urllib.request

HOLD_STEP = 2  # with preview_every=2 the held job's preview at this step is already stored
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a proxy must not capture loopback


def _call(url, token, method, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/test/gate", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with _OPENER.open(request, timeout=10) as answer:
        return json.loads(answer.read().decode())


def hold_at(url, step, token=None):
    """Hold every job once it has done `step` steps; None opens the gate (held jobs go on)."""
    return _call(url, token, "PUT", {"hold_at_step": step})


def held(url, token=None):
    """How many jobs wait at the gate now."""
    return _call(url, token, "GET")["held"]


@contextlib.contextmanager
def holding(url, token=None, step=HOLD_STEP):
    """Jobs started in the block are held after `step` steps; the gate opens when the block ends,
    also when a check in it fails (a gate left armed would hold the next test's jobs)."""
    hold_at(url, step, token)
    try:
        yield
    finally:
        hold_at(url, None, token)


def wait_held(url, token=None, timeout_s=60.0):
    """True once a job waits at the gate (it is running, at the gate's step)."""
    return _wait(lambda: held(url, token) >= 1, timeout_s)


def wait_released(url, token=None, timeout_s=60.0):
    """True once no job waits at the gate (a held job was stopped or cancelled)."""
    return _wait(lambda: held(url, token) == 0, timeout_s)


def _wait(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv):
    url, command, rest = argv[1], argv[2], argv[3:]
    token = os.environ.get("DRAGGAN_TOKEN") or None
    if command == "open":
        hold_at(url, None, token)
    elif command in ("wait-held", "wait-released"):
        wait = wait_held if command == "wait-held" else wait_released
        return 0 if wait(url, token, float(rest[0]) if rest else 60.0) else 1
    else:
        raise SystemExit("unknown command %r (open, wait-held, wait-released)" % command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
