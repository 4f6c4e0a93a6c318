"""`draggan serve` as a process, probed through raw sockets: slow clients, refusals before the body,
JSON for every error, SIGTERM/SIGINT while a job runs, the log and `--token-file`.

Each test prints the figure it measured (run with -s to see them)."""
from __future__ import annotations

import json
import logging
import re
import select
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from backend import cli
from backend.config import ConnectionLimits, Limits
from backend.server import OneLineFormatter
from daemon_process import serve_process, write_model

TOKEN = "process-test-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}
CONNECTIONS = ConnectionLimits()
MAX_BODY = Limits().max_body_bytes


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def guarded(models_dir, token_file, tmp_path_factory):
    """A daemon on all addresses with a token (from a file), as a remote GPU box would run it."""
    with serve_process(models_dir, tmp_path_factory.mktemp("guarded"), "--host", "0.0.0.0",
                       "--token-file", str(token_file)) as daemon:
        yield daemon


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no system proxy for loopback
    return session


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the one answer on `sock`, read until the daemon closes."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def closed_by_daemon(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


def json_error(status: int, headers: dict[str, str], body: bytes) -> str:
    """The error code of a daemon JSON error answer (asserting its form)."""
    assert headers["content-type"] == "application/json", (status, headers, body)
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return error["code"]


# ----------------------------------------------------------------------------------------- slow clients

def test_health_answers_at_once_with_200_slow_sockets_open(guarded):
    slow = []
    try:
        for i in range(200):  # half say nothing, half start a request and never finish its headers
            sock = connect(guarded.port)
            if i % 2:
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        started = time.perf_counter()
        answer = http().get(guarded.api + "/health", headers=AUTH, timeout=30)
        latency = time.perf_counter() - started
        started = time.perf_counter()
        refused = http().get(guarded.api + "/health", timeout=30)
        refused_latency = time.perf_counter() - started
        kept = sum(not closed_by_daemon(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
    print(f"\n/health with 200 slow sockets open: {latency * 1000:.0f} ms (without the token, 401 in "
          f"{refused_latency * 1000:.0f} ms); the daemon kept {kept} of the 200 slow sockets open")
    assert answer.status_code == 200 and refused.status_code == 401
    assert latency < 1.0 and refused_latency < 1.0
    assert kept <= CONNECTIONS.max_connections_per_client


def test_slow_headers_slow_bodies_and_idle_connections_are_closed(guarded):
    idle = connect(guarded.port)
    slow_headers = connect(guarded.port)
    slow_headers.sendall(b"GET /api/v1/health HTTP/1.1\r\n")
    slow_body = connect(guarded.port)
    slow_body.sendall(f"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{".encode())
    started = time.monotonic()
    names = {idle: "idle", slow_headers: "headers", slow_body: "body"}
    closed_after: dict[str, float] = {}
    try:
        while names and time.monotonic() - started < 60:
            for sock in select.select(list(names), [], [], 1)[0]:
                if closed_by_daemon(sock):
                    closed_after[names.pop(sock)] = time.monotonic() - started
    finally:
        for sock in (idle, slow_headers, slow_body):
            sock.close()
    # A connection made as they go is answered: the daemon once closed them in the middle of a pass over its
    # poll results, and a connection accepted in that pass took a freed descriptor and was closed in its place.
    status, _, _ = refused_request(guarded.port)
    print(f"\nclosed after (s): {', '.join(f'{k} {v:.1f}' for k, v in sorted(closed_after.items()))}")
    assert status == 401
    assert set(closed_after) == {"idle", "headers", "body"}
    assert min(closed_after.values()) >= CONNECTIONS.header_timeout_s - 0.5  # never early
    assert max(closed_after.values()) < 40  # deadlines of 10 s, checked every second, on a loaded machine


# ------------------------------------------------------------------------------- refusals before the body

def refused_request(port: int) -> tuple[int, dict[str, str], bytes]:
    """The answer to the headers of a 100 MiB POST without the token (none of its body is sent)."""
    sock = connect(port)
    try:
        sock.sendall(b"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 104857600\r\n\r\n")
        return read_answer(sock)
    finally:
        sock.close()


def test_a_body_without_the_token_is_refused_before_it_is_sent(guarded):
    started = time.perf_counter()
    status, headers, body = refused_request(guarded.port)
    elapsed = time.perf_counter() - started
    print(f"\n100 MiB POST without the token: {status} after the headers alone (0 body bytes sent), in "
          f"{elapsed * 1000:.0f} ms; then the daemon closed the connection")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json_error(status, headers, body) == "unauthorized"


def test_a_client_that_sends_the_whole_body_still_reads_the_refusal(guarded):
    """Most clients send the whole body before reading: they get the 401, not a reset, as the daemon drops
    what they send after its answer."""
    started = time.perf_counter()
    answer = http().post(guarded.api + "/generate", data=b"x" * (100 * 2 ** 20), timeout=60,
                         headers={"Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    print(f"\nrequests.post of 100 MiB without the token: {answer.status_code} in {elapsed:.2f} s")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("length", [MAX_BODY + 1, 2 * MAX_BODY + 1])
def test_a_body_over_the_limit_is_refused_as_json_before_it_is_sent(guarded, length):
    sock = connect(guarded.port)
    try:
        sock.sendall(f"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
        status, headers, body = read_answer(sock)
    finally:
        sock.close()
    print(f"\nContent-Length {length}: {status} {json.loads(body)['error']['code']} after the headers alone")
    assert status == 413 and json_error(status, headers, body) == "too_large"


def test_errors_waitress_answers_itself_are_json(guarded):
    cases = {
        "bad request line": b"NOT HTTP AT ALL\r\n\r\n",
        "headers too large": b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
                             + b"a" * CONNECTIONS.max_header_bytes + b"\r\n\r\n",
        "transfer encoding": f"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
                             f"\r\nTransfer-Encoding: gzip\r\n\r\n".encode(),
    }
    answers = {}
    for name, request in cases.items():
        sock = connect(guarded.port)
        try:
            sock.sendall(request)
            status, headers, body = read_answer(sock)
        finally:
            sock.close()
        answers[name] = (status, json_error(status, headers, body))
    print(f"\n{answers}")
    assert answers == {"bad request line": (400, "bad_request"), "headers too large": (431, "headers_too_large"),
                       "transfer encoding": (501, "not_implemented")}


def test_a_chunked_body_over_the_limit_is_refused_as_json(guarded):
    sock = connect(guarded.port)
    chunk = b"x" * (1024 * 1024)
    sent = 0
    try:
        sock.sendall(f"POST /api/v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        while True:  # until the daemon answers: its 413 arrives before it closes
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            assert sent <= 2 * MAX_BODY, "the daemon went on reading a chunked body past its limit"
        status, headers, body = read_answer(sock)
    finally:
        sock.close()
    print(f"\nchunked body: {status} after {sent // 2 ** 20} MiB sent")
    assert status == 413 and json_error(status, headers, body) == "too_large"


# ----------------------------------------------------------------------------------------------- signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_running_job_and_exits_0(models_dir, tmp_path, sig):
    with serve_process(models_dir, tmp_path, env={"DRAGGAN_TEST_GATE": "1"}) as daemon:
        client = http()
        assert client.put(daemon.api + "/test/gate", json={"hold_at_step": 2}, timeout=30).ok
        session = client.post(daemon.api + "/generate", json={"seed": 3, "model": "tiny"}, timeout=60).json()
        job = client.post(f"{daemon.api}/sessions/{session['session_id']}/drag", timeout=30,
                          json={"handles": [[20, 20]], "targets": [[40, 40]], "steps": 500}).json()
        deadline = time.monotonic() + 60
        while client.get(daemon.api + "/test/gate", timeout=30).json()["held"] < 1:
            assert time.monotonic() < deadline, "the job never reached the gate"
            time.sleep(0.05)
        seen: list[dict] = []  # what a client polling over its open connection saw after the signal
        polling = threading.Event()

        def poll() -> None:
            polling.set()
            while daemon.proc.poll() is None:
                try:
                    seen.append(client.get(f"{daemon.api}/jobs/{job['job_id']}", timeout=10).json())
                except requests.RequestException:
                    return
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        polling.wait(10)
        started = time.monotonic()
        daemon.proc.send_signal(sig)
        code = daemon.proc.wait(30)
        elapsed = time.monotonic() - started
        poller.join(10)
        output = daemon.output()
    final = seen[-1] if seen else None
    print(f"\n{sig.name}: exit {code} after {elapsed:.2f} s; the poller last saw "
          f"{final and (final['state'], final['reason'], final['step'])}")
    assert code == 0 and elapsed < 15
    assert f"draggan daemon stopped ({sig.name})" in output and "Traceback" not in output
    assert all(s.get("state") in ("running", "done", "cancelled") for s in seen), seen
    for s in seen:
        if s["state"] == "done":
            assert s["reason"] == "stopped"


# ------------------------------------------------------------------------------------------------ the log

def test_client_text_cannot_forge_log_lines_or_flood_answers(models_dir, tmp_path):
    with serve_process(models_dir, tmp_path) as daemon:
        client = http()
        forged = client.get(daemon.api + "/x%0a2099-01-01 00:00:00,000 INFO draggan.daemon: FORGED", timeout=30)
        long = client.get(daemon.api + "/" + "a" * 50_000, timeout=30)
        huge = client.get(daemon.api + "/" + "a" * 200_000, timeout=30)
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(30)
        log = daemon.output()
    print(f"\n404 message for a 50 KB path: {len(long.json()['error']['message'])} characters; a 200 KB path: "
          f"{huge.status_code} {huge.json()['error']['code']}")
    assert forged.status_code == 404 and "\n" not in forged.json()["error"]["message"]
    assert not any(line.startswith("2099") for line in log.splitlines())
    assert re.search(r"GET /api/v1/x\\n2099-01-01 .*FORGED 404", log)
    assert long.status_code == 404 and len(long.json()["error"]["message"]) < 300
    assert huge.status_code == 431 and huge.json()["error"]["code"] == "headers_too_large"
    assert max(len(line) for line in log.splitlines()) < 1000


def test_every_log_message_is_one_line():
    """waitress's own log lines quote paths too: the serve command's formatter escapes every message."""
    record = logging.LogRecord("waitress", logging.INFO, __file__, 1, "Client disconnected while serving %s",
                               ("/x\r\n2099-01-01 FORGED",), None)
    assert OneLineFormatter("%(message)s").format(record) == \
        "Client disconnected while serving /x\\r\\n2099-01-01 FORGED"


# ---------------------------------------------------------------------------------------------- the token

def test_a_token_file_keeps_the_token_out_of_the_command_line(guarded, token_file):
    cmdline = Path(f"/proc/{guarded.proc.pid}/cmdline").read_bytes()  # what `ps` shows every user
    assert str(token_file).encode() in cmdline and TOKEN.encode() not in cmdline
    assert http().get(guarded.api + "/health", timeout=30).status_code == 401
    assert http().get(guarded.api + "/health", headers=AUTH, timeout=30).status_code == 200


def test_unreadable_or_short_token_files_are_refused(tmp_path, capsys):
    short = tmp_path / "short"
    short.write_text("too-short\n")
    assert cli.main(["serve", "--token-file", str(tmp_path / "missing"), "--models", str(tmp_path)]) == 1
    assert "cannot read the token file" in capsys.readouterr().err
    assert cli.main(["serve", "--token-file", str(short), "--models", str(tmp_path)]) == 1
    assert "at least 16 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one way to give the token, not two
        cli.main(["serve", "--token", TOKEN, "--token-file", str(short)])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "can see a token given here in `ps`" in " ".join(capsys.readouterr().out.split())
