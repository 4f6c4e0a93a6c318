"""Soak test of the daemon: N client threads x M drags each over real HTTP on loopback.

Starts a daemon in this process (waitress on a free port) over a tiny random generator, runs the
drags through the plug-ins' stdlib client and reports jobs completed / failed / lost, per-job
latency and this process's resident memory before and after (so leaks in sessions, jobs or the
worker show up). Bounded in count (N x M) and time (--max-seconds: no new drag starts after it).

    .venv/bin/python benchmarks/soak_daemon.py --clients 4 --drags 10
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from backend.client import DaemonClient, DaemonError
from backend.config import DaemonConfig
from backend.server import DaemonServer
from draggan_core.formats import native
from draggan_core.stylegan2 import Generator, GeneratorConfig

MODEL = "soak"


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_model(directory: Path, resolution: int) -> None:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=64, w_dim=64, img_resolution=resolution, channel_base=256, channel_max=32,
                                  mapping_layers=2))
    native.write(G.eval(), str(directory / f"{MODEL}.safetensors"))


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed = self.failed = self.lost = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def record(self, outcome: str, latency: float | None = None, error: str | None = None) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if latency is not None:
                self.latencies.append(latency)
            if error is not None and len(self.errors) < 5:
                self.errors.append(error)


def one_drag(client: DaemonClient, rng: random.Random, size: int, steps: int, job_timeout: float, tally: Tally) -> None:
    """generate -> drag -> wait -> result -> delete, recorded as completed, failed or lost."""
    started = time.perf_counter()
    try:
        made = client.generate(seed=rng.randrange(2 ** 31), model=MODEL)
        handle = [rng.uniform(8, size - 9), rng.uniform(8, size - 9)]
        target = [min(max(v + rng.uniform(-8, 8), 0), size - 1) for v in handle]
        job = client.drag(made["session_id"], handles=[handle], targets=[target], steps=steps, preview_every=5)
        try:
            final = client.wait(job["job_id"], poll_interval=0.05, timeout=job_timeout)
        except DaemonError as e:
            if e.code != "timeout":
                raise
            tally.record("lost", error=f"job {job['job_id']} never ended")
            return
        if final["state"] == "done" and client.result(job["job_id"]):
            tally.record("completed", time.perf_counter() - started)
        else:
            tally.record("failed", error=f"{final['state']}: {final['error']}")
        client.delete_session(made["session_id"])
    except DaemonError as e:
        tally.record("failed", error=str(e))


def run(args: argparse.Namespace) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + args.max_seconds

    def client_thread(index: int) -> None:
        client = DaemonClient(args.url, timeout=30)
        rng = random.Random(index)
        for _ in range(args.drags):
            if time.monotonic() > deadline:
                return
            one_drag(client, rng, args.resolution, args.steps, args.job_timeout, tally)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def report(args: argparse.Namespace, tally: Tally, rss: dict[str, float], wall: float, daemon) -> None:
    lat = sorted(tally.latencies)
    print(f"clients x drags      {args.clients} x {args.drags} ({args.steps} steps, {args.resolution} px model, "
          f"torch threads {torch.get_num_threads()})")
    print(f"completed/failed/lost {tally.completed}/{tally.failed}/{tally.lost} in {wall:.1f} s "
          f"({tally.completed / wall:.2f} jobs/s)")
    if lat:
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(f"latency s            median {statistics.median(lat):.2f}  p95 {p95:.2f}  max {lat[-1]:.2f}")
    print("RSS MiB              " + "  ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    print(f"left in daemon       sessions {len(daemon.sessions)}, queue {daemon.worker.queue_length()}")
    for error in tally.errors:
        print(f"error: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client threads (N)")
    parser.add_argument("--drags", type=int, default=10, help="drags per client (M)")
    parser.add_argument("--steps", type=int, default=20, help="steps per drag")
    parser.add_argument("--resolution", type=int, default=64, help="the random model's resolution")
    parser.add_argument("--max-seconds", type=float, default=300, help="no new drag starts after this")
    parser.add_argument("--job-timeout", type=float, default=120, help="a job not ended by then counts as lost")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_model(Path(tmp), args.resolution)
        server = DaemonServer(DaemonConfig(port=0, device="cpu", models_dir=Path(tmp)))
        server.start_thread()
        args.url = server.url
        daemon = server.app.extensions["draggan"]
        try:
            rss = {"start": rss_mib()}
            one_drag(DaemonClient(args.url), random.Random(-1), args.resolution, args.steps, args.job_timeout, Tally())
            rss["warm"] = rss_mib()
            started = time.perf_counter()
            tally = run(args)
            wall = time.perf_counter() - started
            gc.collect()
            rss["end"] = rss_mib()
            report(args, tally, rss, wall, daemon)
        finally:
            server.close()
    return 0 if tally.failed == tally.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
