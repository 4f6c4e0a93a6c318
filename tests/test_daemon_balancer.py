"""Several daemons behind the real HAProxy (Debian's package) with the shipped deploy/haproxy.cfg, on loopback:
every request of a session or job reaches the daemon that made it; when a daemon dies, the plug-ins' client
gets a clear error for its running job and its next drag recovers on the other daemon (regenerated from the
seed, or the layer inverted anew). Two real `draggan serve --node` processes with tokens; jobs are held with
the daemons' test gates (tests/editor_gate.py), never timed."""
from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import http.client
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import editor_gate
from daemon_process import MODEL, ServeProcess, serve_process, write_tiny_model
from draggan_client import workflow
from draggan_client.client import DaemonClient, DaemonError
from draggan_client.pngcodec import decode_png, encode_png
from test_daemon_support import http_session, wait_for

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
TOKEN = "balancer-test-token-0123456789"
NODES = ("box1", "box2")  # the shipped config's example servers: the test's daemons take their names
START_TIMEOUT_S = 30

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    HAPROXY is None, reason="HAProxy is not installed (apt-get install haproxy; scripts/install_test_editors.sh "
                            "installs it as root)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(text: str, pattern: str, replacement: str) -> str:
    """One substitution the test needs; a config that no longer has the line fails here, not in a timeout."""
    found, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"deploy/haproxy.cfg: expected one line matching {pattern!r}, found {count}"
    return found


def loopback_config(port: int, daemons: dict[str, int], admin_socket: Path) -> str:
    """The shipped config with the test's addresses: the frontend on 127.0.0.1:port without TLS, each example
    server at its daemon's port, the stats socket in the test's folder (and no user switch unless root)."""
    text = substitute(SHIPPED.read_text(), r"^(\s*)bind \S+ ssl .*$", rf"\g<1>bind 127.0.0.1:{port}")
    text = substitute(text, r"stats socket \S+", f"stats socket {admin_socket}")
    for name, daemon_port in daemons.items():
        text = substitute(text, rf"^(\s*server {name}) \S+", rf"\g<1> 127.0.0.1:{daemon_port}")
    if os.geteuid() != 0:
        text = re.sub(r"^\s*(user|group) .*$", "", text, flags=re.MULTILINE)
    return text


@dataclasses.dataclass
class Studio:
    url: str  # the balancer
    daemons: dict[str, ServeProcess]
    admin_socket: Path

    def client(self) -> DaemonClient:
        return DaemonClient(self.url, token=TOKEN, timeout=60)

    def server_states(self) -> dict[str, str]:
        """{server: UP | DOWN | ...} as HAProxy's `show stat` gives them."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.admin_socket))
            s.sendall(b"show stat\n")
            data = b"".join(iter(lambda: s.recv(65536), b""))
        rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "daemons"
                and row["svname"] in NODES}

    def requests_of(self, node: str, ident: str) -> list[str]:
        """The daemon's log lines of requests whose path names `ident`."""
        return [line for line in self.daemons[node].stderr_path.read_text().splitlines()
                if re.search(rf" (GET|POST|DELETE) /api/v1/\S*{re.escape(ident)}", line)]


@contextlib.contextmanager
def studio(folder: Path) -> Iterator[Studio]:
    """Two daemons (--node box1, box2, one token, the balancer trusted, test gates on) and HAProxy with the shipped
    config in front."""
    models = folder / "models"
    write_tiny_model(models)
    with contextlib.ExitStack() as stack:
        daemons = {name: stack.enter_context(serve_process(models, folder, "--node", name, "--token", TOKEN,
                                                           "--trusted-proxy", "127.0.0.1",
                                                           env={"DRAGGAN_TEST_GATE": "1"}, log_name=f"{name}.log"))
                   for name in NODES}
        port, admin = free_port(), folder / "admin.sock"
        config = folder / "haproxy.cfg"
        config.write_text(loopback_config(port, {name: d.port for name, d in daemons.items()}, admin))
        log = stack.enter_context(open(folder / "haproxy.log", "w"))
        balancer = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "DRAGGAN_TOKEN": TOKEN})
        stack.callback(lambda: (balancer.terminate(), balancer.wait(10)))
        found = Studio(f"http://127.0.0.1:{port}", daemons, admin)

        def started() -> bool:
            if balancer.poll() is not None:
                return True  # it gave up: the assertion below shows why
            try:
                return found.server_states() == {name: "UP" for name in NODES}
            except OSError:  # its stats socket is not there yet
                return False

        wait_for(started, timeout=START_TIMEOUT_S, what="HAProxy to start")
        assert balancer.poll() is None, (folder / "haproxy.log").read_text()
        yield found


def node_of(ident: str) -> str:
    return ident.split(".", 1)[0]


def edit_of(png: bytes, real: bool = False) -> workflow.Edit:
    """The editor's drag on a layer showing `png`: small steps; a real layer's inversion kept short."""
    width, height, channels, pixels = decode_png(png)
    return workflow.Edit(width, height, pixels, channels, [((20.0, 20.0), (26.0, 22.0))], None,
                         workflow.DragSettings(steps=5, preview_every=0), model=MODEL if real else None,
                         invert=workflow.invert_settings(8, 0, 0, 0) if real else None)


def layer() -> bytes:
    """A 72x60 RGBA layer the daemons did not make, as PNG."""
    y, x = np.mgrid[0:60, 0:72]
    pixels = np.stack([x * 3, y * 4, (x + y) * 2, np.full_like(x, 255)], -1).astype(np.uint8)
    return encode_png(72, 60, 4, pixels.tobytes())


def generated_on(client: DaemonClient, node: str, seed: int) -> tuple[bytes, workflow.SessionRecord]:
    """'New image from model' until the balancer's round puts it on `node` (every other new session)."""
    for _ in range(4):
        made = client.generate(seed=seed, model=MODEL)
        if node_of(made["session_id"]) == node:
            return made["image"], workflow.generated_record(made, client.url, seed, made.get("psi"))
        client.delete_session(made["session_id"])
    raise AssertionError(f"the balancer never placed a new session on {node}")


def test_every_request_of_a_session_reaches_the_daemon_that_made_it(tmp_path):
    with studio(tmp_path) as s:
        client = s.client()
        made = [client.generate(seed=seed, model=MODEL) for seed in range(4)]
        assert {node_of(m["session_id"]) for m in made} == set(NODES)  # new sessions go round the daemons
        asked: dict[str, str] = {}  # session and job ids -> the daemon whose name they carry
        for m in made:
            sid = m["session_id"]
            done = workflow.run(client, workflow.generated_record(m, client.url, 0), edit_of(m["image"]))
            client.preview(done.final["job_id"])
            client.session_image(sid)
            client.reset_session(sid)
            asked.update({sid: node_of(sid), done.final["job_id"]: node_of(sid)})
        real = workflow.run(client, None, edit_of(layer(), real=True))  # inverted, then dragged
        asked[real.record.session_id] = node_of(real.record.session_id)
        asked[real.final["job_id"]] = node_of(real.record.session_id)
        copy = copy_through_the_balancer(s, made[0]["session_id"])
        assert node_of(copy) == node_of(made[0]["session_id"])  # a copy is made where its source lives
        for m in made:
            client.delete_session(m["session_id"])
        for ident, node in asked.items():
            other = NODES[1 - NODES.index(node)]
            assert len(s.requests_of(node, ident)) >= 2 and s.requests_of(other, ident) == [], ident


def copy_through_the_balancer(s: Studio, source: str) -> str:
    """POST /sessions?from_session=ID: the balancer routes by the query (the client sends the id in the body
    too); the copy's id."""
    image = DaemonClient(s.url, token=TOKEN).session_image(source)
    answer = http_session().post(f"{s.url}/api/v1/sessions", params={"from_session": source},
                                 json={"image": base64.b64encode(image).decode(), "from_session": source},
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert answer.status_code == 201, answer.text
    return answer.json()["session_id"]


def test_when_a_daemon_dies_its_job_ends_clearly_and_the_next_drag_recovers_on_the_other(tmp_path):
    with studio(tmp_path) as s:
        client = s.client()
        done = workflow.run(client, None, edit_of(layer(), real=True))
        doomed = node_of(done.record.session_id)
        survivor = NODES[1 - NODES.index(doomed)]
        real_record, real_result = done.record, done.png
        picture, record = generated_on(client, doomed, seed=7)
        daemon = s.daemons[doomed]
        editor_gate.hold_at(daemon.url, editor_gate.HOLD_STEP, TOKEN)
        job = client.drag(record.session_id, handles=[[20, 20]], targets=[[50, 44]], steps=50)["job_id"]
        assert editor_gate.wait_held(daemon.url, TOKEN)
        daemon.proc.kill()
        daemon.proc.wait(30)
        with pytest.raises(DaemonError) as lost:
            client.wait(job, poll_interval=0.05, timeout=60)
        assert lost.value.status == 404 and lost.value.code == "unknown_job"
        assert f"daemon '{doomed}' made it" in lost.value.message and "down" in lost.value.message
        again = workflow.run(client, record, edit_of(picture))  # regenerated from its seed on the survivor
        assert node_of(again.record.session_id) == survivor and again.final["state"] == "done"
        assert not again.real and again.record.seed == 7
        kinds: list[str] = []
        refit = workflow.run(client, real_record, edit_of(real_result, real=True),
                             on_status=lambda status: kinds.append(status.get("kind")))
        assert node_of(refit.record.session_id) == survivor and refit.real and "invert" in kinds  # inverted anew
        wait_for(lambda: s.server_states()[doomed] == "DOWN", timeout=60, what="HAProxy's check to see it down")
        s.daemons[survivor].proc.kill()
        s.daemons[survivor].proc.wait(30)
        with pytest.raises(DaemonError) as none_left:
            client.health()
        assert none_left.value.status == 503 and none_left.value.code == "no_daemon"
        assert "no GPU box" in none_left.value.message  # the balancer's own error, in the daemon's JSON form


def health_from(url: str, source: str, forwarded_for: str | None = None) -> None:
    """GET /health from the loopback address `source` (another machine, to the daemons), with the token."""
    host, port = url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    headers = {"Authorization": f"Bearer {TOKEN}", **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    try:
        connection.request("GET", "/api/v1/health", headers=headers)
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_the_daemons_count_each_artist_by_the_address_the_balancer_saw(tmp_path):
    """The per-client bounds and the log name the artist's machine, not the balancer (--trusted-proxy); what a
    client writes into X-Forwarded-For itself counts for nothing, through the balancer or not."""
    with studio(tmp_path) as s:
        for _ in NODES:  # the round reaches each daemon once
            health_from(s.url, "127.0.0.23", forwarded_for="6.6.6.6")
        direct = s.daemons[NODES[0]]
        health_from(direct.url, "127.0.0.24", forwarded_for="6.6.6.6")
        lines = [line for d in s.daemons.values() for line in d.stderr_path.read_text().splitlines()
                 if "GET /api/v1/health 200" in line and "127.0.0.2" in line]
        assert sum(" 127.0.0.23 GET" in line for line in lines) == len(NODES)
        assert sum(" 127.0.0.24 GET" in line for line in lines) == 1 and "6.6.6.6" not in "".join(lines)


def test_the_shipped_config_is_valid_as_shipped(tmp_path):
    """haproxy -c on deploy/haproxy.cfg with only its certificate replaced (a throw-away self-signed one)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate to check the TLS line with")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=draggan",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    pem = tmp_path / "draggan.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    config = tmp_path / "haproxy.cfg"
    config.write_text(substitute(SHIPPED.read_text(), r"crt /etc/haproxy/draggan\.pem", f"crt {pem}"))
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True,
                             env={**os.environ, "DRAGGAN_TOKEN": TOKEN})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "warning" not in (checked.stdout + checked.stderr).lower(), checked.stdout + checked.stderr
