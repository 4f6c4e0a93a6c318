"""Soak test of the daemon: N clients x M drags over real HTTP against a real `draggan serve` process,
optionally with abuse beside them (--abuse), or the same drags against one worker and against several
devices (--devices cpu,cpu), as ratios of throughput and latency.

The daemon runs as its own process on a free loopback port over a tiny random generator, so its
memory (RSS and peak) is its own and slow sockets meet the real server. Each client is a thread
with its own loopback source address (127.0.0.10, .11, ...: another "machine" to the daemon's
per-client bounds) running generate -> drag -> wait -> result -> delete through the plug-ins'
stdlib client. A job that never reaches a final state within --job-timeout is lost. With --abuse,
beside them: slow sockets that trickle a request header, hostile requests (PNG bombs, a 16-Mpixel
layer, 16-bit and broken PNGs, NaN and huge numbers, path-like model names, a form post, a spoofed
Host, an announced 200 MiB body, a forged log line), random stop / cancel / delete by the normal
clients, and a /health prober. At the end the daemon gets SIGTERM and must exit 0 within 10 s.
Bounded in count (N x M) and time (--max-seconds: no new drag starts after it). With --devices, each
--clients value runs twice, on a daemon with one worker (the list's first device) and on one with a worker
per listed device, and a table compares completed jobs/s and p95 latency.

    .venv/bin/python benchmarks/soak_daemon.py --clients 4 --drags 10
    .venv/bin/python benchmarks/soak_daemon.py --clients 4 --drags 10 --abuse --slow-sockets 200
    .venv/bin/python benchmarks/soak_daemon.py --devices cpu,cpu --clients 4 8 --drags 25
"""
from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import dataclasses
import functools
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from draggan_client.client import DaemonClient, DaemonError
from draggan_core.formats import native
from draggan_core.stylegan2 import Generator, GeneratorConfig

MODEL = "soak"
ROOT = Path(__file__).resolve().parents[1]
FINAL = ("done", "failed", "cancelled")


def write_model(directory: Path, resolution: int, channels: int | None = None) -> Path:
    """A random generator in the models folder `directory` (returned): a tiny one (32 channels at 4 px down to 4
    at 64 px), or `channels` at every resolution (heavier steps, as real models have)."""
    torch.manual_seed(0)
    base, most = (256, 32) if channels is None else (channels * resolution, channels)
    G = Generator(GeneratorConfig(z_dim=64, w_dim=64, img_resolution=resolution, channel_base=base, channel_max=most,
                                  mapping_layers=2))
    native.write(G.eval(), str(directory / f"{MODEL}.safetensors"))
    return directory


# ----------------------------------------------------------------------------- the daemon process

@dataclasses.dataclass
class DaemonProcess:
    proc: subprocess.Popen
    url: str
    exit_code: int | None = None
    exit_seconds: float | None = None

    def memory_mib(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak) of the daemon, from /proc (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def terminate(self) -> None:
        """SIGTERM, as a launcher stops it; records the exit code and how long it took."""
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait()
        self.exit_seconds = time.perf_counter() - started


@contextlib.contextmanager
def daemon_process(models: Path, torch_threads: int, log_path: Path, device: str = "cpu") -> Iterator[DaemonProcess]:
    """`draggan serve` on `device` (a list: a worker each), each worker's torch on `torch_threads` threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
    env.pop("DRAGGAN_TOKEN", None)
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--device", device,
                             "--models", str(models)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    daemon = None
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+?)/api/v1", line)
        if not match:
            raise RuntimeError(f"the daemon did not start: {line!r} (log: {log_path})")
        threading.Thread(target=lambda: [log.write(x) for x in proc.stdout], daemon=True).start()
        daemon = DaemonProcess(proc, match.group(1))
        yield daemon
    finally:
        if daemon is not None and daemon.exit_code is None:
            daemon.terminate()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- counting what the daemon answered

class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: collections.Counter[str] = collections.Counter()  # completed, failed, lost, stopped, ...
        self.statuses: collections.Counter[str] = collections.Counter()  # HTTP status of every request
        self.latencies: list[float] = []
        self.health_latencies: list[float] = []
        self.errors: list[str] = []

    def record(self, outcome: str, latency: float | None = None, error: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if latency is not None:
                self.latencies.append(latency)
            if error is not None and len(self.errors) < 8:
                self.errors.append(error)

    def status(self, status: int | str) -> None:
        with self.lock:
            self.statuses[str(status)] += 1

    def count(self, prefix: str) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith(prefix))


class SourceHandler(urllib.request.HTTPHandler):
    """urllib from a chosen local address, so each soak client is another client to the daemon."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def http_open(self, req):
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=(self.source, 0)), req)


class CountingClient(DaemonClient):
    """The plug-ins' client, from its own source address, tallying the HTTP status of every call."""

    def __init__(self, url: str, tally: Tally, source: str):
        super().__init__(url, timeout=60)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), SourceHandler(source))
        self.tally = tally

    def _call(self, method, path, body=None, timeout=None, raw=False):
        try:
            answer = super()._call(method, path, body, timeout, raw)
        except DaemonError as e:
            self.tally.status(e.status or e.code or "error")
            raise
        self.tally.status(200)
        return answer


# ----------------------------------------------------------------------------- the normal clients

def one_drag(client: CountingClient, rng: random.Random, size: int, steps: int, job_timeout: float,
             interrupt: float) -> None:
    """generate -> drag -> wait -> result -> delete; with probability `interrupt` the client stops,
    cancels or deletes its job midway instead. Recorded as an outcome of the tally."""
    tally = client.tally
    started = time.perf_counter()
    try:
        made = client.generate(seed=rng.randrange(2 ** 31), model=MODEL)
        handle = [rng.uniform(8, size - 9), rng.uniform(8, size - 9)]
        target = [min(max(v + rng.uniform(-8, 8), 0), size - 1) for v in handle]
        job = client.drag(made["session_id"], handles=[handle], targets=[target], steps=steps, preview_every=5)
        action = rng.choice(("stop", "cancel", "delete")) if rng.random() < interrupt else None
        if action is not None:
            time.sleep(rng.uniform(0, 0.3))
            {"stop": client.stop, "cancel": client.cancel,
             "delete": lambda _: client.delete_session(made["session_id"])}[action](job["job_id"])
        try:
            final = client.wait(job["job_id"], poll_interval=0.05, timeout=job_timeout)
        except DaemonError as e:
            if e.code != "timeout":
                raise
            tally.record("lost", error=f"job {job['job_id']} never ended")
            return
        if action is not None:
            tally.record(f"{action} -> {final['state']}" if final["state"] in FINAL else "lost")
        elif final["state"] == "done" and client.result(job["job_id"]):
            tally.record("completed", time.perf_counter() - started)
        else:
            tally.record("failed", error=f"{final['state']}: {final['error']}")
        if action != "delete":
            client.delete_session(made["session_id"])
    except DaemonError as e:
        if e.status in (429, 503) or e.code == "job_finished":  # a bound said "later": not a failure
            tally.record(f"refused {e.status or e.code}")
            time.sleep(1.0)
        else:
            tally.record("failed", error=str(e))


def run_clients(args: argparse.Namespace, url: str, tally: Tally) -> None:
    deadline = time.monotonic() + args.max_seconds
    interrupt = args.interrupt if args.abuse else 0.0

    def client_thread(index: int) -> None:
        client = CountingClient(url, tally, f"127.0.0.{10 + index}")
        rng = random.Random(index)
        for _ in range(args.drags):
            if time.monotonic() > deadline:
                return
            one_drag(client, rng, args.resolution, args.steps, args.job_timeout, interrupt)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ----------------------------------------------------------------------------- the abusers

def raw_request(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict]:
    """One request with exactly these headers (Host included when given): the status and the JSON
    answer, or (0, {}) when the daemon closed the connection without an answer."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        data = answer.read()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"not_json": data[:200].decode("latin-1")}
        return answer.status, parsed if isinstance(parsed, dict) else {}
    except (OSError, http.client.HTTPException):
        return 0, {}
    finally:
        conn.close()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG of any size whose data is one compressed run of zeros: a bomb if decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte + one grey byte per pixel
    data = b"".join(rows.compress(row) for _ in range(min(height, 64))) + rows.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", data) + chunk(b"IEND", b"")


def hostile_requests(size: int) -> list[tuple[str, str, str, bytes, dict]]:
    """(name, method, path, body, headers): what the external abuse probe sent, each a request the
    daemon must refuse cleanly (4xx) or serve, never with a 5xx or a crash."""
    def session(image_png: bytes, **extra) -> bytes:
        return json.dumps({"image": base64.b64encode(image_png).decode(), "model": MODEL,
                           "invert": {"steps_w": 3, "steps_wplus": 0, "pti": False}, **extra}).encode()
    layer = png_bytes(Image.fromarray(np.full((size, size, 4), 128, np.uint8), "RGBA"))
    broken = bytearray(layer)
    broken[-5] ^= 0xFF  # the IEND chunk's CRC
    grey16 = Image.fromarray(np.full((size, size), 1000, np.uint16))
    json_headers = {"Content-Type": "application/json"}
    return [
        ("png bomb 30000x30000", "POST", "/api/v1/sessions", session(bomb_png(30000, 30000)), json_headers),
        ("16-Mpixel layer", "POST", "/api/v1/sessions",
         session(png_bytes(Image.new("RGBA", (4000, 4000), (90, 120, 150, 255)))), json_headers),
        ("16-bit grey layer", "POST", "/api/v1/sessions", session(png_bytes(grey16)), json_headers),
        ("broken CRC", "POST", "/api/v1/sessions", session(bytes(broken)), json_headers),
        ("NaN seed", "POST", "/api/v1/generate", b'{"seed": NaN, "model": "soak"}', json_headers),
        ("huge numbers", "POST", "/api/v1/generate", b'{"seed": 1e999, "psi": 123456789012345678901234567890}',
         json_headers),
        ("deep JSON", "POST", "/api/v1/generate", b"[" * 100_000 + b"]" * 100_000, json_headers),
        ("path-like model", "POST", "/api/v1/generate", b'{"seed": 1, "model": "../../../etc/passwd"}',
         json_headers),
        ("form post", "POST", "/api/v1/generate", b"seed=1&model=soak",
         {"Content-Type": "application/x-www-form-urlencoded"}),
        ("spoofed Host", "GET", "/api/v1/health", b"", {"Host": "evil.example"}),
        ("announced 200 MiB body", "POST", "/api/v1/sessions", b"",
         {**json_headers, "Content-Length": str(200 * 2 ** 20)}),
        ("forged log line", "GET", "/api/v1/%0a2026-01-01%20INFO%20forged" + "x" * 200_000, b"", {}),
        ("unknown job", "POST", "/api/v1/jobs/0123456789abcdef01234567/cancel", b"", {}),
    ]


def bomber(url: str, size: int, tally: Tally, stop: threading.Event, pause: float) -> None:
    """Sends the hostile requests in turn until told to stop. A hostile layer that is accepted starts
    an inversion nobody waits for: it is cancelled at once (a job left running is a lost one)."""
    requests_ = hostile_requests(size)
    while not stop.is_set():
        for name, method, path, body, headers in requests_:
            if stop.is_set():
                return
            status, answer = raw_request(url, method, path, body, headers, timeout=30)
            tally.status(status)
            if status >= 500 or status == 0 and "200 MiB" not in name or "not_json" in answer:
                tally.record("hostile 5xx/closed/not JSON", error=f"{name}: {status} {answer}"[:300])
            if answer.get("job_id"):
                tally.status(raw_request(url, "POST", f"/api/v1/jobs/{answer['job_id']}/cancel")[0])
            time.sleep(pause)


def slow_sockets(url: str, count: int, stop: threading.Event, closed: list[int]) -> None:
    """`count` connections that each send a request line, then one header byte every 2 s (slowloris)."""
    host, port = url.split("//")[1].split(":")

    def open_one() -> socket.socket | None:
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            return s
        except OSError:
            return None

    socks = [open_one() for _ in range(count)]
    while not stop.wait(2.0):
        for i, s in enumerate(socks):
            try:
                if s is None:
                    raise OSError
                s.sendall(b"a")
            except OSError:  # the daemon dropped it: count it and open another
                closed[0] += 1
                if s is not None:
                    s.close()
                socks[i] = open_one()
    for s in socks:
        if s is not None:
            s.close()


def health_prober(url: str, tally: Tally, stop: threading.Event) -> None:
    """/health every 0.25 s; a request that fails or takes 10 s counts as 10 s."""
    while not stop.wait(0.25):
        started = time.perf_counter()
        status = raw_request(url, "GET", "/api/v1/health", timeout=10)[0]
        tally.status(status)
        latency = time.perf_counter() - started if status == 200 else 10.0
        with tally.lock:
            tally.health_latencies.append(latency)


# ----------------------------------------------------------------------------- report

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(run: Run) -> None:
    args, tally, memory, wall, left, daemon = run.args, run.tally, run.memory, run.wall, run.left, run.daemon
    channels = f", {args.channels} channels" if args.channels else ""
    print(f"clients x drags      {args.clients} x {args.drags} ({args.steps} steps, {args.resolution} px model"
          f"{channels}, daemon --device {args.device}, torch threads {args.torch_threads} a worker)"
          f"{' + abuse' if args.abuse else ''}")
    completed = tally.outcomes["completed"]
    print(f"outcomes             {dict(sorted(tally.outcomes.items()))} in {wall:.1f} s "
          f"({completed / wall:.2f} completed jobs/s)")
    if tally.latencies:
        lat = tally.latencies
        print(f"latency s            median {statistics.median(lat):.2f}  p95 {percentile(lat, 0.95):.2f}  "
              f"max {max(lat):.2f}")
    print(f"requests             {sum(tally.statuses.values())}: {dict(sorted(tally.statuses.items()))}; "
          f"5xx {tally.count('5')}")
    if tally.health_latencies:
        h = tally.health_latencies
        print(f"/health ms           p50 {percentile(h, 0.5) * 1000:.1f}  p95 {percentile(h, 0.95) * 1000:.1f}  "
              f"max {max(h) * 1000:.1f} ({len(h)} probes)")
    if args.abuse:
        print(f"slow sockets         {args.slow_sockets} kept open; {run.closed_slow} dropped by the daemon "
              f"(and reopened)")
    print("daemon memory MiB    " + "  ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    print(f"left in daemon       sessions {left.get('sessions')}, queue {left.get('queue_length')}, "
          f"running {left.get('jobs_running')}")
    print(f"SIGTERM              exit {daemon.exit_code} after {daemon.exit_seconds:.2f} s")
    for error in tally.errors:
        print(f"error: {error}", file=sys.stderr)


@dataclasses.dataclass
class Run:
    """One soak against one daemon: what report() prints and the comparison reads."""
    args: argparse.Namespace  # this run's settings: one --clients value and its device list
    tally: Tally
    memory: dict[str, float]
    wall: float
    left: dict
    daemon: DaemonProcess
    closed_slow: int

    def jobs_per_s(self) -> float:
        return self.tally.outcomes["completed"] / self.wall

    def p95(self) -> float:
        return percentile(self.tally.latencies, 0.95)

    def bad(self) -> int:
        """Failed or lost jobs, 5xx answers and hostile requests answered badly: any of them fails the soak."""
        return self.tally.outcomes["failed"] + self.tally.outcomes["lost"] + self.tally.count("5") + \
            self.tally.outcomes["hostile 5xx/closed/not JSON"]


def soak(args: argparse.Namespace) -> Run:
    """args.clients clients x args.drags drags (and the abusers with args.abuse) against a new daemon on args.device."""
    tally, stop, closed_slow = Tally(), threading.Event(), [0]
    with tempfile.TemporaryDirectory() as tmp, \
            daemon_process(write_model(Path(tmp), args.resolution, args.channels), args.torch_threads,
                           Path(tmp) / "daemon.log", args.device) as d:
        memory = {"start": d.memory_mib("VmRSS")}
        one_drag(CountingClient(d.url, Tally(), "127.0.0.9"), random.Random(-1), args.resolution, args.steps,
                 args.job_timeout, 0.0)
        memory["warm"] = d.memory_mib("VmRSS")
        abusers = []
        if args.abuse:
            abusers = [threading.Thread(target=slow_sockets, args=(d.url, args.slow_sockets, stop, closed_slow)),
                       threading.Thread(target=bomber, args=(d.url, args.resolution, tally, stop, args.bomb_pause)),
                       threading.Thread(target=health_prober, args=(d.url, tally, stop))]
        for t in abusers:
            t.start()
        started = time.perf_counter()
        run_clients(args, d.url, tally)
        wall = time.perf_counter() - started
        stop.set()
        for t in abusers:
            t.join()
        left = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            d.url + "/api/v1/health", timeout=30).read())
        memory["end"], memory["peak"] = d.memory_mib("VmRSS"), d.memory_mib("VmHWM")
        d.terminate()
    return Run(args, tally, memory, wall, left, d, closed_slow[0])


def compare_devices(args: argparse.Namespace) -> int:
    """For each --clients value: one worker (the first device of --devices), then a worker per listed device, on
    the same drags; the table of completed jobs/s and p95 latency with the ratios (several workers / one)."""
    one = args.devices.split(",")[0].strip()
    rows = []
    bad = 0
    for clients in args.clients:
        runs = []
        for device in (one, args.devices):
            run = soak(argparse.Namespace(**{**vars(args), "clients": clients, "device": device}))
            print(f"--- {clients} clients, --device {device}")
            report(run)
            runs.append(run)
            bad += run.bad() + (run.daemon.exit_code != 0)
        rows.append((clients, *runs))
    print(f"\n| clients | jobs/s: {one} | jobs/s: {args.devices} | ratio | p95 s: {one} | p95 s: {args.devices} "
          f"| ratio |")
    print("|---|---|---|---|---|---|---|")
    for clients, single, several in rows:
        print(f"| {clients} | {single.jobs_per_s():.2f} | {several.jobs_per_s():.2f} | "
              f"{several.jobs_per_s() / single.jobs_per_s():.2f} | {single.p95():.2f} | {several.p95():.2f} | "
              f"{several.p95() / single.p95():.2f} |")
    return 0 if bad == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[4],
                        help="client threads (N); with --devices, several values run in turn")
    parser.add_argument("--devices", default=None, metavar="LIST",
                        help="compare a daemon with a worker per listed device (e.g. cpu,cpu) against one worker on "
                             "the first (without it: one daemon on the CPU)")
    parser.add_argument("--drags", type=int, default=10, help="drags per client (M)")
    parser.add_argument("--steps", type=int, default=20, help="steps per drag")
    parser.add_argument("--resolution", type=int, default=64, help="the random model's resolution")
    parser.add_argument("--channels", type=int, default=None,
                        help="the random model's channels at every resolution (default: a tiny model, whose steps "
                             "are mostly Python overhead)")
    parser.add_argument("--max-seconds", type=float, default=300, help="no new drag starts after this")
    parser.add_argument("--job-timeout", type=float, default=120, help="a job not ended by then counts as lost")
    parser.add_argument("--torch-threads", type=int, default=1, help="the daemon's torch threads")
    parser.add_argument("--abuse", action="store_true", help="slow sockets, hostile requests, random "
                                                             "stop/cancel/delete and a /health prober beside")
    parser.add_argument("--slow-sockets", type=int, default=200, help="with --abuse: slowloris connections")
    parser.add_argument("--interrupt", type=float, default=0.3, help="with --abuse: share of drags stopped, "
                                                                     "cancelled or deleted midway")
    parser.add_argument("--bomb-pause", type=float, default=0.2, help="with --abuse: seconds between hostile requests")
    args = parser.parse_args(argv)
    if args.devices is not None:
        return compare_devices(args)
    if len(args.clients) != 1:
        parser.error("several --clients values need --devices (one soak takes one)")
    run = soak(argparse.Namespace(**{**vars(args), "clients": args.clients[0], "device": "cpu"}))
    report(run)
    return 0 if run.bad() == 0 and run.daemon.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
