"""Models from the daemon: the whole catalogue in /models, download jobs with progress, cancel and resume,
checksums, names that are not catalogue keys, and catalogue files checked at start.

Every download goes over real HTTP on loopback to a ModelZoo (tests/model_zoo.py) serving a small
checkpoint in NVIDIA's pickle format; the zoo holds its answers part-way where a test must act in the
middle of a download, so nothing depends on the machine's speed."""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_generator
from daemon_process import REPO, serve_process
from draggan_client.client import DaemonClient, DaemonError
from draggan_core import cli as core_cli
from draggan_core import registry
from draggan_core.download import CHUNK
from draggan_core.formats import native, nvidia
from model_zoo import ModelZoo
from test_daemon_openapi import Checker
from test_daemon_support import LIMITS, http_session, image_of, running_daemon, state, wait_for

HELD = 2 * CHUNK  # where the zoo holds a download: whole chunks, so the daemon has written exactly this much


def checkpoint() -> bytes:
    """A small generator (64 px) as an NVIDIA network pickle, ~300 KB: several download chunks."""
    buf = io.BytesIO()
    nvidia.write(make_generator(seed=5, img_resolution=64, channel_base=256, channel_max=32), buf)
    return buf.getvalue()


DATA = checkpoint()
SHA = hashlib.sha256(DATA).hexdigest()


def entry(zoo: ModelZoo, name: str, file: str, **fields) -> dict:
    """A catalogue object for `file` on the zoo, with its true size and checksum unless fields say otherwise."""
    return {"name": name, "url": zoo.url_of(file), "resolution": 64, "domain": "test animals",
            "licence": "test licence", "size": len(DATA), "sha256": SHA, **fields}


def write_catalogue(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def zoo():
    with ModelZoo({"tiny.pkl": DATA, "resume.pkl": DATA, "unsized.pkl": DATA}) as z:
        yield z


@pytest.fixture
def models(tmp_path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    native.write(make_generator(seed=1, img_resolution=32, channel_base=128, channel_max=16),
                 str(d / "mine.safetensors"))
    return d


@pytest.fixture
def catalogue(tmp_path, zoo) -> Path:
    return write_catalogue(tmp_path / "catalogue.json", [
        entry(zoo, "zoo-tiny", "tiny.pkl", note="a test model"),
        entry(zoo, "zoo-resume", "resume.pkl"),
        entry(zoo, "zoo-unsized", "unsized.pkl", size=None, sha256=None),
        entry(zoo, "zoo-bad-sum", "tiny.pkl", sha256="0" * 64),
        entry(zoo, "stylegan2-ffhq-256x256", "tiny.pkl", domain="faces (the studio's mirror)",
              filename="stylegan2-ffhq-256x256.pkl"),
    ])


@pytest.fixture
def daemon(models, catalogue):
    with running_daemon(models, catalogue=catalogue) as server:
        yield server


@pytest.fixture
def client(daemon) -> DaemonClient:
    return DaemonClient(daemon.url)


def listing(client: DaemonClient) -> dict[str, dict]:
    return {m["name"]: m for m in client.catalogue()}


def wait_bytes(client: DaemonClient, job_id: str, done: int) -> dict:
    return wait_for(lambda: (lambda s: s if s["bytes_done"] == done else None)(client.job(job_id)), timeout=60,
                    what=f"the download to reach {done} bytes")


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------- listing


def test_the_catalogue_lists_every_model_with_its_state(client, models):
    folder, models = models, listing(client)
    assert {"demo", "mine", "zoo-tiny", "stylegan2-ffhq-512x512", "stylegan_human_v2_512"} <= set(models)
    demo = models["demo"]
    assert (demo["downloaded"], demo["downloading"], demo["downloadable"], demo["size"]) == (
        True, False, False, registry.DEMO_FILE.stat().st_size)  # built in
    assert models["mine"]["downloaded"] and models["mine"]["domain"] == "your own checkpoint"
    assert models["mine"]["size"] == (folder / "mine.safetensors").stat().st_size
    tiny = models["zoo-tiny"]
    assert tiny == {"name": "zoo-tiny", "resolution": 64, "width": 64, "height": 64, "domain": "test animals",
                    "licence": "test licence", "learning_rate": 1e-3, "framing": "centre", "loaded": False,
                    "downloaded": False,
                    "downloading": False, "downloadable": True, "size": len(DATA), "note": "a test model"}
    public = models["stylegan2-ffhq-512x512"]
    assert (public["downloaded"], public["downloadable"], public["size"]) == (False, True, None)
    human = models["stylegan_human_v2_512"]
    assert not human["downloadable"] and "Google Drive" in human["note"]  # the note says where to get it
    assert models["stylegan2-ffhq-256x256"]["domain"] == "faces (the studio's mirror)"  # the catalogue's entry won
    assert models["stylegan2-ffhq-256x256"]["framing"] == "ffhq"  # and kept the built-in model's framing
    assert {m["name"] for m in client.models()} == {"demo", "mine"}  # a model menu: what can be used now


def test_a_model_not_downloaded_cannot_be_used_and_says_how_to_get_it(client):
    with pytest.raises(DaemonError) as e:
        client.generate(seed=1, model="zoo-tiny")
    assert (e.value.status, e.value.code) == (409, "model_not_downloaded")
    assert "not downloaded yet" in str(e.value) and "/api/v1/models/zoo-tiny/download" in str(e.value)
    with pytest.raises(DaemonError) as e:
        client.generate(seed=1, model="stylegan_human_v2_512")
    assert e.value.code == "model_not_downloaded" and "cannot fetch it" in str(e.value)


# ----------------------------------------------------------------------------------------- downloads


def test_a_download_reports_its_bytes_then_the_model_is_listed_and_loadable(client, zoo, models):
    zoo.hold(after=HELD)
    job = client.download_model("zoo-tiny")
    assert job["kind"] == "download" and job["model"] == "zoo-tiny" and job["state"] in ("queued", "running")
    assert job["bytes_total"] == len(DATA)
    assert zoo.wait_held()
    held = wait_bytes(client, job["job_id"], HELD)
    assert held["state"] == "running" and held["bytes_total"] == len(DATA) and held["resumed_from"] == 0
    assert listing(client)["zoo-tiny"]["downloading"] and not listing(client)["zoo-tiny"]["downloaded"]
    assert not (models / "zoo-tiny.pkl").exists()  # only a verified file takes the model's name
    made = client.generate(seed=2, model="mine")  # the GPU worker is free: downloads have their own threads
    assert image_of(made["image"]).size == (32, 32)
    with pytest.raises(DaemonError) as e:
        client.download_model("zoo-tiny")
    assert (e.value.status, e.value.code) == (409, "download_running")
    seen = []
    zoo.release()
    final = client.wait(job["job_id"], on_progress=lambda s: seen.append(s["bytes_done"]), poll_interval=0.02,
                        timeout=60)
    assert final["state"] == "done" and final["bytes_done"] == len(DATA) and final["error"] is None
    assert seen == sorted(seen) and seen[-1] == len(DATA)
    assert (models / "zoo-tiny.pkl").read_bytes() == DATA and not (models / "zoo-tiny.pkl.part").exists()
    assert zoo.ranges("tiny.pkl") == [None]
    model = listing(client)["zoo-tiny"]
    assert (model["downloaded"], model["downloading"], model["size"]) == (True, False, len(DATA))
    assert "zoo-tiny" in {m["name"] for m in client.models()}
    made = client.generate(seed=3, model="zoo-tiny")
    assert made["model"] == "zoo-tiny" and image_of(made["image"]).size == (64, 64)
    with pytest.raises(DaemonError) as e:
        client.download_model("zoo-tiny")
    assert (e.value.status, e.value.code) == (409, "already_downloaded")


def test_a_cancelled_download_keeps_its_bytes_and_the_next_one_resumes(client, zoo, models):
    zoo.hold(after=HELD)
    job = client.download_model("zoo-resume")
    assert zoo.wait_held()
    wait_bytes(client, job["job_id"], HELD)
    client.cancel(job["job_id"])
    cancelled = client.wait(job["job_id"], poll_interval=0.02, timeout=30)  # the zoo still holds its answer
    assert cancelled["state"] == "cancelled" and cancelled["error"] is None
    part = models / "zoo-resume.pkl.part"
    assert part.stat().st_size == HELD and part.read_bytes() == DATA[:HELD]
    assert not (models / "zoo-resume.pkl").exists() and not listing(client)["zoo-resume"]["downloaded"]
    assert client.cancel(job["job_id"])["state"] == "cancelled"  # as for any job: cancelling again is no error
    zoo.release()
    again = client.download_model("zoo-resume")
    final = client.wait(again["job_id"], poll_interval=0.02, timeout=60)
    assert final["state"] == "done" and final["resumed_from"] == HELD and final["bytes_done"] == len(DATA)
    assert zoo.ranges("resume.pkl") == [None, f"bytes={HELD}-"]
    assert (models / "zoo-resume.pkl").read_bytes() == DATA and not part.exists()
    assert client.generate(seed=4, model="zoo-resume")["model"] == "zoo-resume"


def test_a_download_of_unknown_size_takes_the_servers(client, zoo, models):
    job = client.download_model("zoo-unsized")
    assert job["bytes_total"] is None
    final = client.wait(job["job_id"], poll_interval=0.02, timeout=60)
    assert final["state"] == "done" and final["bytes_total"] == len(DATA)
    assert (models / "zoo-unsized.pkl").read_bytes() == DATA


def test_a_checksum_mismatch_fails_the_job_and_leaves_no_model(client, zoo, models):
    job = client.download_model("zoo-bad-sum")
    final = client.wait(job["job_id"], poll_interval=0.02, timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "checksum_mismatch"
    assert "checksum did not match" in final["error"]["message"] and SHA in final["error"]["message"]
    assert not any(p.name.startswith("zoo-bad-sum") for p in models.iterdir())  # neither the model nor a .part
    assert not listing(client)["zoo-bad-sum"]["downloaded"]
    with pytest.raises(DaemonError) as e:
        client.generate(seed=1, model="zoo-bad-sum")
    assert e.value.code == "model_not_downloaded"


def test_a_server_error_fails_the_job_in_words(tmp_path, models, zoo):
    cat = write_catalogue(tmp_path / "gone.json", [entry(zoo, "zoo-gone", "missing.pkl")])
    with running_daemon(models, catalogue=cat) as server:
        client = DaemonClient(server.url)
        final = client.wait(client.download_model("zoo-gone")["job_id"], poll_interval=0.02, timeout=60)
    assert final["state"] == "failed" and final["error"]["code"] == "download_failed"
    assert final["error"]["message"] == "download failed: the server 127.0.0.1 answered HTTP 404 Not Found"


@pytest.mark.parametrize("path", [
    "/api/v1/models/../x/download", "/api/v1/models/a/b/download", "/api/v1/models/a%2Fb/download",
    "/api/v1/models/..%2Fx/download", "/api/v1/models/%2e%2e%2fx/download", "/api/v1/models/../download",
    "/api/v1/models/%2Fetc%2Fpasswd/download", "/api/v1/models//etc/passwd/download",
    "/api/v1/models/tiny.pkl/download", "/api/v1/models/zoo-tiny.pkl/download",
    "/api/v1/models/http:%2F%2F127.0.0.1%2Ftiny.pkl/download", "/api/v1/models/%00/download",
    "/api/v1/models/mine/download",
])
def test_names_that_are_not_catalogue_keys_fetch_and_write_nothing(daemon, zoo, tmp_path, path):
    before = files_under(tmp_path)
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    connection.request("POST", path)  # sent as it is: no client normalises the dots or slashes away
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 404 and body["error"]["code"] in ("unknown_model", "no_such_endpoint"), body
    assert files_under(tmp_path) == before and zoo.requests == []


def test_models_that_cannot_be_downloaded_say_why(client):
    for name, status, code, words in (("demo", 409, "already_downloaded", "built in"),
                                      ("stylegan_human_v2_512", 409, "not_downloadable", "Google Drive"),
                                      ("nope", 404, "unknown_model", "catalogue")):
        with pytest.raises(DaemonError) as e:
            client.download_model(name)
        assert (e.value.status, e.value.code) == (status, code) and words in str(e.value)


def test_the_download_queue_is_bounded_and_a_queued_download_cancels_at_once(models, zoo, tmp_path):
    cat = write_catalogue(tmp_path / "three.json", [entry(zoo, f"zoo-{i}", "tiny.pkl", filename=f"zoo-{i}.pkl")
                                                    for i in range(3)])
    limits = dataclasses.replace(LIMITS, max_downloads=1, max_queued_downloads=1)
    with running_daemon(models, catalogue=cat, limits=limits) as server:
        client = DaemonClient(server.url)
        zoo.hold(after=HELD)
        first = client.download_model("zoo-0")
        assert zoo.wait_held()
        second = client.download_model("zoo-1")
        assert client.job(second["job_id"])["queue_position"] == 1
        response = http_session().post(server.url + "/api/v1/models/zoo-2/download", timeout=10)
        assert response.status_code == 429 and response.json()["error"]["code"] == "download_queue_full"
        assert int(response.headers["Retry-After"]) > 0
        cancelled = client.cancel(second["job_id"])
        assert cancelled["state"] == "cancelled" and cancelled["queue_position"] is None
        zoo.release()
        assert client.wait(first["job_id"], poll_interval=0.02, timeout=60)["state"] == "done"
        assert not (models / "zoo-1.pkl.part").exists()  # it never started


def test_closing_the_daemon_stops_a_running_download_and_keeps_its_bytes(models, catalogue, zoo):
    zoo.hold(after=HELD)
    with running_daemon(models, catalogue=catalogue) as server:
        client = DaemonClient(server.url)
        job_id = client.download_model("zoo-tiny")["job_id"]
        assert zoo.wait_held()
        wait_bytes(client, job_id, HELD)
        record = state(server).jobs.get(job_id)
    # closing returned; had the download not stopped, its thread would still wait on the held zoo
    assert record.state == "cancelled"
    assert (models / "zoo-tiny.pkl.part").stat().st_size == HELD and not (models / "zoo-tiny.pkl").exists()


def test_download_answers_follow_the_openapi_document(daemon, zoo):
    doc = http_session().get(daemon.url + "/api/v1/openapi.json", timeout=10).json()
    check = Checker(daemon, doc)
    check("get", "/models", 200)
    zoo.hold(after=HELD)
    job = check("post", "/models/zoo-tiny/download", 202).json()
    assert zoo.wait_held()
    jid = job["job_id"]
    check("post", "/models/zoo-tiny/download", 409)
    check("post", "/models/nope/download", 404)
    check("get", f"/jobs/{jid}", 200)
    check("get", f"/jobs/{jid}/preview", 404)
    check("get", f"/jobs/{jid}/result", 404)
    check("post", f"/jobs/{jid}/stop", 200)  # a download's stop is a cancel
    DaemonClient(daemon.url).wait(jid, poll_interval=0.02, timeout=30)
    check("get", f"/jobs/{jid}", 200)
    check("post", f"/jobs/{jid}/cancel", 200)  # cancelled already: no error
    zoo.release()
    done = DaemonClient(daemon.url).wait(check("post", "/models/zoo-tiny/download", 202).json()["job_id"],
                                         poll_interval=0.02, timeout=60)
    assert done["state"] == "done" and done["resumed_from"] == HELD
    check("get", f"/jobs/{done['job_id']}", 200)
    check("post", f"/jobs/{done['job_id']}/cancel", 409)
    check("get", "/models", 200)


# --------------------------------------------------------------------------------- catalogue files

GOOD = {"name": "studio-faces", "url": "https://models.example/snapshots/faces-001.pkl", "resolution": 256,
        "domain": "faces", "licence": "studio internal"}


def test_a_catalogue_adds_models_and_may_replace_built_in_ones(tmp_path):
    zoo = registry.load_catalogue(write_catalogue(tmp_path / "c.json", [
        GOOD, {**GOOD, "name": "Faces_v2.pt", "url": "http://10.0.0.2:8080/x?download=1", "filename": "Faces_v2.pt",
               "sha256": "AB" * 32, "size": 12, "learning_rate": 2e-3, "note": "", "width": 128},
        {**GOOD, "name": "stylegan2-ffhq-512x512", "url": "https://mirror.example/ffhq-512.pkl"}]))
    assert zoo["studio-faces"] == registry.ModelInfo("studio-faces", 256, "faces", "studio internal", GOOD["url"],
                                                     "studio-faces.pkl")  # the file is named after the model
    assert zoo["Faces_v2.pt"].filename == "Faces_v2.pt" and zoo["Faces_v2.pt"].sha256 == "ab" * 32
    assert zoo["stylegan2-ffhq-512x512"].url == "https://mirror.example/ffhq-512.pkl"
    assert zoo["stylegan2-ffhq-512x512"].filename == "stylegan2-ffhq-512x512.pkl"
    assert set(zoo) == set(registry.ZOO) | {"studio-faces", "Faces_v2.pt"}
    assert registry.load_catalogue(None) == registry.ZOO


BAD_CATALOGUES = [
    ("not json", b"[{", "not valid JSON (line 1"),
    ("not a list", {"models": [GOOD]}, "must hold a JSON list"),
    ("not an object", ["studio-faces"], "entry 1 must be an object"),
    ("unknown field", [{**GOOD, "path": "/tmp/x.pkl"}], "unknown field 'path'"),
    ("missing url", [{k: v for k, v in GOOD.items() if k != "url"}], "missing field 'url'"),
    ("repeated key", b'[{"name": "a", "name": "b"}]', "the key 'name' appears twice"),
    ("file url", [{**GOOD, "url": "file:///etc/passwd.pkl"}], "'url' must be an http or https URL"),
    ("ftp url", [{**GOOD, "url": "ftp://models.example/x.pkl"}], "'url' must be an http or https URL"),
    ("no host", [{**GOOD, "url": "http:///x.pkl"}], "'url' must be an http or https URL"),
    ("bad port", [{**GOOD, "url": "http://models.example:99999/x.pkl"}], "'url' must be an http or https URL"),
    ("space in url", [{**GOOD, "url": "http://models.example/a b.pkl"}], "'url' must be an http or https URL"),
    ("slash in name", [{**GOOD, "name": "a/b"}], "'name' must be 1-100 letters"),
    ("dot dot name", [{**GOOD, "name": ".."}], "'name' must be 1-100 letters"),
    ("parent name", [{**GOOD, "name": "x..y"}], "without '..'"),
    ("backslash name", [{**GOOD, "name": "a\\b"}], "'name' must be 1-100 letters"),
    ("absolute filename", [{**GOOD, "filename": "/etc/x.pkl"}], "'filename' must be a plain file name"),
    ("parent filename", [{**GOOD, "filename": "../x.pkl"}], "'filename' must be a plain file name"),
    ("folder filename", [{**GOOD, "filename": "sub/x.pkl"}], "'filename' must be a plain file name"),
    ("windows filename", [{**GOOD, "filename": "sub\\x.pkl"}], "'filename' must be a plain file name"),
    ("device filename", [{**GOOD, "filename": "CON.pkl"}], "'filename' must be a plain file name"),
    ("wrong suffix", [{**GOOD, "filename": "x.exe"}], "ending in .pkl, .pt, .pth, .safetensors"),
    ("part suffix", [{**GOOD, "filename": "x.pkl.part"}], "ending in .pkl"),
    ("no suffix in url", [{**GOOD, "url": "https://models.example/get?id=3"}], "give a 'filename'"),
    ("short sha", [{**GOOD, "sha256": "abc"}], "'sha256' must be 64 hexadecimal digits"),
    ("negative size", [{**GOOD, "size": -1}], "'size' must be the file's size"),
    ("text resolution", [{**GOOD, "resolution": "256"}], "'resolution' must be the image height"),
    ("bool resolution", [{**GOOD, "resolution": True}], "'resolution' must be the image height"),
    ("zero learning rate", [{**GOOD, "learning_rate": 0}], "'learning_rate' must be a number above 0"),
    ("nan learning rate", b'[{"name": "a", "url": "http://h/a.pkl", "resolution": 64, "domain": "d", '
                          b'"licence": "l", "learning_rate": NaN}]', "'learning_rate' must be a number above 0"),
    ("empty licence", [{**GOOD, "licence": " "}], "'licence' must be non-empty text"),
    ("control character", [{**GOOD, "domain": "faces\n[fake log line]"}], "'domain' must be non-empty text"),
    ("same name twice", [GOOD, GOOD], "entry 2 ('studio-faces'): the name is already used by entry 1"),
    ("same file twice", [GOOD, {**GOOD, "name": "other", "filename": "Studio-Faces.pkl"}],
     "the file name 'Studio-Faces.pkl' is already used by entry 1"),
    ("demo", [{**GOOD, "name": "demo"}], "the demo model is built in and cannot be replaced"),
    ("a built-in's file", [{**GOOD, "filename": "stylegan2-cat-config-f.pkl"}],
     "already the file of built-in model 'stylegan2-cat-config-f'"),
]


@pytest.mark.parametrize("content, reason", [c[1:] for c in BAD_CATALOGUES], ids=[c[0] for c in BAD_CATALOGUES])
def test_bad_catalogue_files_are_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(registry.CatalogueError) as e:
        registry.load_catalogue(path)
    assert str(e.value).startswith(f"catalogue {path}: ") and reason in str(e.value)


def test_an_unreadable_or_huge_catalogue_is_refused(tmp_path):
    with pytest.raises(registry.CatalogueError, match="cannot read it"):
        registry.load_catalogue(tmp_path / "missing.json")
    huge = tmp_path / "huge.json"
    huge.write_text("[" + " " * registry.MAX_CATALOGUE_BYTES + "]")
    with pytest.raises(registry.CatalogueError, match="larger than"):
        registry.load_catalogue(huge)


def test_a_daemon_with_a_bad_catalogue_does_not_start(models, tmp_path):
    bad = write_catalogue(tmp_path / "bad.json", [{**GOOD, "url": "file:///etc/passwd"}])
    with pytest.raises(registry.CatalogueError, match="'url' must be an http or https URL"):
        with running_daemon(models, catalogue=bad):
            pass


@pytest.mark.slow
def test_serve_refuses_a_bad_catalogue_at_start_with_the_reason(models, tmp_path):
    bad = write_catalogue(tmp_path / "bad.json", [{**GOOD, "filename": "../../outside.pkl"}])
    done = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--device", "cpu",
                           "--models", str(models), "--catalogue", str(bad)],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1 and "listening" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"draggan: error: catalogue {bad}: entry 1 ('studio-faces'): 'filename' must be a plain file name "
        f"(letters, digits, '.', '_', '-'; no folders, no '..') ending in .pkl, .pt, .pth, .safetensors, "
        f"got '../../outside.pkl'")
    assert "Traceback" not in done.stderr and not (tmp_path / "outside.pkl").exists()


@pytest.mark.slow
def test_serve_with_a_catalogue_downloads_and_sigterm_stops_the_download(models, catalogue, zoo, tmp_path):
    zoo.hold(after=HELD)
    with serve_process(models, tmp_path / "log", "--catalogue", str(catalogue)) as daemon:
        client = DaemonClient(daemon.url)
        assert not listing(client)["zoo-tiny"]["downloaded"]
        job_id = client.download_model("zoo-tiny")["job_id"]
        assert zoo.wait_held()
        wait_bytes(client, job_id, HELD)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(60) == 0  # the held download did not keep it up
    assert (models / "zoo-tiny.pkl.part").stat().st_size == HELD
    log = daemon.output()
    assert "catalogue" in log and f"job {job_id} download of zoo-tiny: cancelled" in log


# ------------------------------------------------------------------------------------------- the CLI


def test_the_cli_lists_and_downloads_catalogue_models(tmp_path, catalogue, zoo, capsys):
    folder = tmp_path / "cli-models"
    assert core_cli.main(["models", "list", "--dir", str(folder), "--catalogue", str(catalogue)]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith("zoo-tiny "))
    assert " no " in line and "test animals" in line
    assert core_cli.main(["models", "download", "zoo-tiny", "--dir", str(folder), "--catalogue", str(catalogue)]) == 0
    assert (folder / "zoo-tiny.pkl").read_bytes() == DATA
    assert core_cli.main(["models", "download", "zoo-bad-sum", "--dir", str(folder), "--catalogue",
                          str(catalogue)]) == 1
    assert "checksum did not match" in capsys.readouterr().err
    assert core_cli.main(["models", "list", "--dir", str(folder), "--catalogue", str(tmp_path / "none.json")]) == 1
    assert "draggan: error: catalogue" in capsys.readouterr().err
