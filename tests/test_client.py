"""The plug-ins' stdlib client: Python 3.8 and standard library only, one exception with usable
messages for every failure, proxies ignored, and wait() with progress, stop and cancel."""
from __future__ import annotations

import ast
import glob
import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from draggan_client import client as client_module
from draggan_client.client import DaemonClient, DaemonError
from test_daemon_support import TINY, client, models_dir, server, steps  # noqa: F401

SOURCE = Path(client_module.__file__)
STDLIB = {"base64", "http", "json", "socket", "threading", "time", "typing", "urllib"}
FAR = dict(handles=[[20, 20]], targets=[[50, 44]])


def test_source_is_python_38_and_stdlib_only():
    tree = ast.parse(SOURCE.read_text(), feature_version=(3, 8))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name.split(".")[0] for a in node.names} <= STDLIB
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in STDLIB, node.module
        # list[int], dict[...] and X | Y fail at run time on 3.8; dict | dict too.
        assert not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id in ("list", "dict", "tuple", "set", "type", "frozenset")), ast.unparse(node)
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)), ast.unparse(node)


def python38() -> str | None:
    """A working Python 3.8 interpreter (pyenv shims may exist without one), if there is any."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates += [shutil.which("python3.8") or ""]
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"], capture_output=True,
                               text=True)
        if probe.stdout.strip() == "True":
            return exe
    return None


PYTHON38 = python38()


@pytest.mark.skipif(PYTHON38 is None, reason="no Python 3.8 on this machine")
def test_a_copy_of_the_file_works_under_python_38(server, tmp_path):
    copy = tmp_path / "draggan_client.py"
    shutil.copy(SOURCE, copy)  # as the plug-ins carry it: alone, outside the project
    script = (f"import draggan_client as c\nclient = c.DaemonClient({server.url!r})\n"
              f"made = client.generate(seed=3, model={TINY!r})\n"
              f"job = client.drag(made['session_id'], handles=[[30, 30]], targets=[[33, 31]], steps=3)\n"
              f"print(client.wait(job['job_id'], poll_interval=0.05)['state'], len(client.result(job['job_id'])) > 0)")
    out = subprocess.run([PYTHON38, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["done", "True"], out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_urls_as_users_type_them_become_the_daemons_base_url():
    normalize = client_module.normalize_url
    assert normalize("") == normalize(None) == normalize("  ") == client_module.DEFAULT_URL
    assert normalize(" 127.0.0.1:9000/ ") == "http://127.0.0.1:9000"
    assert normalize("gpu-box:8765/") == "http://gpu-box:8765"
    assert normalize("https://h/api/v1/") == "https://h"
    assert DaemonClient("h:1/api/v1").url == "http://h:1"


def test_daemon_not_running():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DaemonError) as e:
        DaemonClient(url, timeout=5).health()
    assert e.value.code == "unreachable"
    assert str(e.value).startswith(f"cannot reach the DragGAN daemon at {url}") and "`draggan serve`" in str(e.value)


def test_daemon_not_answering():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(DaemonError, match=r"did not answer within 1 s") as e:
            DaemonClient(url, timeout=1).health()
    assert e.value.code == "timeout"


class NotTheDaemon(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        status = 500 if self.path.endswith("/models") else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")


def test_something_else_on_the_port():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheDaemon)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = DaemonClient(f"http://127.0.0.1:{httpd.server_port}")
        with pytest.raises(DaemonError, match="did not answer like the DragGAN daemon"):
            c.health()
        with pytest.raises(DaemonError, match="answered HTTP 500") as e:
            c.models()
        assert e.value.status == 500
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_proxies_in_the_environment_are_ignored(server, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert DaemonClient(server.url).health()["api"] == "v1"


def test_daemon_errors_carry_its_message(client):
    with pytest.raises(DaemonError) as e:
        client.generate(seed=1, model="../../etc/passwd")
    assert e.value.status == 400 and e.value.code == "unknown_model"
    assert "is not available on this daemon; available:" in str(e.value)


def test_wait_forwards_cancel_and_stop(client, steps):
    steps.delay = 0.05  # slow enough that the job cannot end by itself before the stop arrives
    made = client.generate(seed=31, model=TINY)
    cancel = threading.Event()
    cancel.set()
    job = client.drag(made["session_id"], steps=400, **FAR)
    assert client.wait(job["job_id"], cancel_event=cancel, poll_interval=0.02)["state"] == "cancelled"

    stop = threading.Event()

    def stop_once_running(status):
        if status["state"] == "running" and status["step"] >= 1:
            stop.set()

    job = client.drag(made["session_id"], steps=400, **FAR)
    final = client.wait(job["job_id"], on_progress=stop_once_running, stop_event=stop, poll_interval=0.02)
    assert final["state"] == "done" and final["reason"] == "stopped"


def test_wait_gives_up_after_its_timeout(client):
    made = client.generate(seed=32, model=TINY)
    job = client.drag(made["session_id"], steps=400, **FAR)
    try:
        with pytest.raises(DaemonError, match="did not finish within") as e:
            client.wait(job["job_id"], timeout=0.05, poll_interval=0.02)
        assert e.value.code == "timeout"
    finally:
        client.cancel(job["job_id"])
        client.wait(job["job_id"])


def test_the_presets_the_editors_offer_are_the_daemons():
    from draggan_client.workflow import PRESETS as OFFERED
    from draggan_core.presets import PRESETS
    from draggan_core.presets import DEFAULT
    assert [name for name, _label in OFFERED] == list(PRESETS) and OFFERED[0][0] == DEFAULT == "paper"
