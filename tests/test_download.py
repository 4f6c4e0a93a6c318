"""Downloads against a real HTTP server on loopback: resume, verification, atomic rename."""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest

from draggan_core import registry
from draggan_core.download import DownloadError, download

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; `cut_after` drops the connection mid-body once."""

    cut_after: int | None = None
    seen_ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        start = 0
        rng = self.headers.get("Range")
        type(self).seen_ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    RangeHandler.cut_after = None
    RangeHandler.seen_ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.pkl"
    httpd.shutdown()


def test_download_verifies_and_renames(tmp_path, server):
    seen = []
    dest = download(server, tmp_path / "m.pkl", size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                    progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "m.pkl.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_interrupted_download_leaves_no_final_file_and_resumes(tmp_path, server):
    RangeHandler.cut_after = 1_000_000
    dest = tmp_path / "m.pkl"
    with pytest.raises(DownloadError):
        download(server, dest, size=len(PAYLOAD))
    assert not dest.exists()
    part = tmp_path / "m.pkl.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    resumed_from = part.stat().st_size
    download(server, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert RangeHandler.seen_ranges[-1] == f"bytes={resumed_from}-"


def test_hash_mismatch_removes_the_partial_file(tmp_path, server):
    with pytest.raises(DownloadError, match="checksum"):
        download(server, tmp_path / "m.pkl", sha256="0" * 64)
    assert not (tmp_path / "m.pkl").exists() and not (tmp_path / "m.pkl.part").exists()


def test_size_mismatch_is_refused(tmp_path, server):
    with pytest.raises(DownloadError, match="expected"):
        download(server, tmp_path / "m.pkl", size=len(PAYLOAD) + 5)
    assert not (tmp_path / "m.pkl").exists()


def test_http_error_is_reported(tmp_path):
    with pytest.raises(DownloadError):
        download("http://127.0.0.1:9/none.pkl", tmp_path / "m.pkl", timeout=2)


def test_cli_download_into_models_folder(tmp_path, server):
    name = "stylegan2-ffhq-256x256"
    env = {**os.environ, "DRAGGAN_MODELS": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "backend.cli", "models", "download", name, "--url", server],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / f"{name}.pkl").read_bytes() == PAYLOAD
    listing = subprocess.run([sys.executable, "-m", "backend.cli", "models", "list"], capture_output=True, text=True,
                             env=env, timeout=120).stdout
    line = next(li for li in listing.splitlines() if li.startswith(name))
    assert "yes" in line


def test_registry_resolution(tmp_path):
    (tmp_path / "mine.pkl").write_bytes(b"x")
    assert registry.resolve("mine.pkl", tmp_path) == (tmp_path / "mine.pkl", None)
    with pytest.raises(registry.UnknownModelError, match="draggan models download"):
        registry.resolve("stylegan2-ffhq-512x512", tmp_path)
    with pytest.raises(registry.UnknownModelError, match="unknown model"):
        registry.resolve("nope", tmp_path)
    assert registry.ZOO["stylegan2-ffhq-512x512"].learning_rate == 2e-3
    assert registry.ZOO["stylegan2_lions_512_pytorch"].learning_rate == 1e-3
