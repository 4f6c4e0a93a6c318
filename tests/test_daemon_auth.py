"""Who may use the daemon: token rules at start-up, bearer tokens on every request, the loopback
Host check, the balancer whose X-Forwarded-For is believed, and `draggan serve` itself as a
subprocess (free port, token printed once)."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading

import pytest

from draggan_client.client import DaemonClient, DaemonError
from backend.server import StartupError, add_serve_args, check_token, config_from_args
from test_daemon_support import http_session, models_dir, running_daemon, server  # noqa: F401

TOKEN = "correct-horse-battery-staple"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    check_token(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com", "10.0.0.1"])
def test_other_addresses_need_a_token(host):
    with pytest.raises(StartupError, match="without a token"):
        check_token(host, None)
    check_token(host, TOKEN)


def test_short_tokens_are_refused():
    with pytest.raises(StartupError, match="at least 16"):
        check_token("127.0.0.1", "short")


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_args(parser)
    return parser.parse_args(argv)


def test_generated_tokens_are_random_and_allow_remote_binding(tmp_path):
    first, generated = config_from_args(serve_args("--host", "0.0.0.0", "--generate-token", "--models", str(tmp_path)))
    second, _ = config_from_args(serve_args("--host", "0.0.0.0", "--generate-token"))
    assert generated and len(first.token) >= 32 and first.token != second.token
    given, generated = config_from_args(serve_args("--token", TOKEN, "--generate-token"))
    assert given.token == TOKEN and not generated
    with pytest.raises(StartupError):
        config_from_args(serve_args("--host", "0.0.0.0"))


@pytest.fixture(scope="module")
def token_server(models_dir):
    with running_daemon(models_dir, token=TOKEN) as s:
        yield s


def test_every_request_needs_the_token(token_server):
    url = token_server.url + "/api/v1"
    for path in ("/health", "/models", "/openapi.json", "/jobs/x", "/nope"):
        missing = http_session().get(url + path, timeout=10)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "unauthorized"
    wrong = http_session().get(url + "/health", headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"}, timeout=10)
    assert wrong.status_code == 401 and "refused the token" in wrong.json()["error"]["message"]
    right = http_session().get(url + "/health", headers={"Authorization": "Bearer " + TOKEN, "Host": "my-pc.lan"},
                         timeout=10)
    assert right.status_code == 200  # with a token, any Host may be used (remote access)


def test_client_messages_for_tokens(token_server):
    with pytest.raises(DaemonError, match="needs a token") as e:
        DaemonClient(token_server.url).health()
    assert e.value.status == 401
    with pytest.raises(DaemonError, match="the daemon refused the token"):
        DaemonClient(token_server.url, token="wrong-token-wrong-token").health()
    assert DaemonClient(token_server.url, token=TOKEN).health()["api"] == "v1"


def test_without_token_only_loopback_host_names_are_answered(server):
    url = server.url + "/api/v1/health"
    port = server.port
    refused = http_session().get(url, headers={"Host": f"attacker.example:{port}"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_host"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert http_session().get(url, headers={"Host": host}, timeout=10).status_code == 200


def read_lines_until(proc: subprocess.Popen, pattern: str, timeout: float) -> list[str]:
    """stdout lines up to the first matching `pattern` (a reader thread, as pipes block)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no line matching {pattern!r} from draggan serve; got {lines!r}"
    return lines


def test_draggan_serve_picks_a_free_port_and_prints_the_token_once(models_dir):
    env = {k: v for k, v in os.environ.items() if k != "DRAGGAN_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--generate-token",
                             "--device", "cpu", "--models", str(models_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = read_lines_until(proc, r"access token", timeout=60)
        url = re.search(r"listening on (http://127\.0\.0\.1:(\d+))/api/v1", "".join(lines))
        token = lines[-1].rsplit(" ", 1)[1].strip()
        assert url and int(url.group(2)) > 0
        c = DaemonClient(url.group(1), token=token)
        assert c.health()["device"] == "cpu" and {m["name"] for m in c.models()} >= {"tiny", "small"}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert ("".join(lines) + out + err).count(token) == 1
    assert re.search(r"GET /api/v1/health 200", err)  # one log line per request



def test_the_trusted_proxy_is_an_address():
    assert config_from_args(serve_args("--trusted-proxy", "0:0::1"))[0].trusted_proxy == "::1"
    with pytest.raises(StartupError, match="--trusted-proxy takes an IP address"):
        config_from_args(serve_args("--trusted-proxy", "balancer.example"))
