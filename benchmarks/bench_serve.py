"""Load benchmark of `prefrestore serve`: N concurrent clients for T seconds, then idle, then one request, against a
real server on loopback.

    python benchmarks/bench_serve.py [--clients 50] [--duration 60] [--idle 15] [--model default] [--photo PATH]

Starts `python -m prefrestore serve` on 127.0.0.1 and a free port (its own temporary work folder), warms it up with
one request, then every client thread POSTs the photo to /v1/restore (synchronous) in a loop until the time is up
(a 429 is counted and honoured with its Retry-After); client k connects from 127.0.0.(k + 2), so the server
sees as many client addresses as clients. Then the queue drains, the server idles ``--idle`` seconds,
and one more request is sent: it must be served (an idle server admits; the old admission answered 429 for
minutes after a burst). Traffic goes to loopback only, and every phase is bounded (``--duration``,
``--max-requests``, the drain by the job timeout). Prints one JSON object: requests/s, p50/p95 latency of
successful requests, status counts and the share of 429, errors other than 429 (should be 0), the Retry-After
values seen, the server's RSS before the load, at its peak, and after the idle time (and whether it is within 10%
of the first), and the first request after the burst: status, latency, Retry-After if refused.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "prefrestore" / "assets" / "examples" / "grace_hopper.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_tree(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class SourceAddress(requests.adapters.HTTPAdapter):
    """Connect from a given local address: each client thread gets its own loopback address (127.0.0.k), so the
    server sees N clients as it would N users (its per-client upload limit counts addresses)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def client_session(k: int) -> requests.Session:
    """A session whose connections come from 127.0.0.(k + 2) (k < 250)."""
    session = requests.Session()
    session.mount("http://", SourceAddress(f"127.0.0.{k % 250 + 2}"))
    return session


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=20_000, help="stop after this many requests in all")
    ap.add_argument("--model", default="default")
    ap.add_argument("--photo", default=str(EXAMPLE))
    ap.add_argument("--upscale", type=float, default=2.0)
    ap.add_argument(
        "--client-timeout",
        type=float,
        default=330.0,
        help="seconds a client waits for an answer (above the server's 300 s job timeout)",
    )
    ap.add_argument("--warmup-batch", type=int, default=8, help="the server's --max-batch (warm-up size)")
    ap.add_argument("--server-args", default="", help="extra `prefrestore serve` arguments")
    ap.add_argument("--idle", type=float, default=15.0, help="seconds the server idles after the burst (default 15)")
    ap.add_argument("--drain-timeout", type=float, default=600.0, help="longest wait for the queue to drain")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "prefrestore",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        args.model,
        *args.server_args.split(),
    ]
    log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty server must not block on a full pipe
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    proc = psutil.Process(server.pid)
    try:
        t0 = time.monotonic()
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"server exited: {log.read()[-2000:]}")
            try:
                if requests.get(url + "/readyz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy loading the model
                pass
            if time.monotonic() - t0 > 300:
                raise SystemExit("server not ready after 300 s")
            time.sleep(0.2)
        load_s = time.monotonic() - t0
        photo = Path(args.photo).read_bytes()
        options = json.dumps({"upscale": args.upscale})

        def once(session: requests.Session) -> requests.Response:
            return session.post(
                url + "/v1/restore",
                files={"file": (Path(args.photo).name, photo)},
                data={"options": options},
                timeout=args.client_timeout,
            )

        # Warm-up: 2 x max_batch concurrent requests, so the largest batch has run once and the allocators have
        # reached their working size before the "before" RSS is taken (a leak shows as growth after that).
        warm: list[requests.Response] = []

        def warm_one(k: int) -> None:
            with client_session(k) as s:
                warm.append(once(s))

        pool = [threading.Thread(target=warm_one, args=(k,)) for k in range(2 * args.warmup_batch)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert all(r.status_code == 200 for r in warm), [r.text for r in warm if r.status_code != 200][:1]
        # the header is a bounded summary; the full result is the job resource it names
        info = requests.get(url + json.loads(warm[0].headers["X-Prefrestore-Result"])["details"], timeout=30).json()[
            "result"
        ]
        time.sleep(1.0)
        rss_before = rss_tree(proc)

        statuses: Counter = Counter()
        retry_after: Counter = Counter()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        sent = [0]
        stop_at = time.monotonic() + args.duration
        peak = [rss_before]
        done = threading.Event()

        def client(k: int) -> None:
            with client_session(k) as session:
                while time.monotonic() < stop_at:
                    with lock:
                        if sent[0] >= args.max_requests:
                            return
                        sent[0] += 1
                    start = time.monotonic()
                    try:
                        r = once(session)
                    except requests.RequestException as err:
                        with lock:
                            statuses["exception"] += 1
                            errors.append(f"{type(err).__name__}: {err}"[:200])
                        continue
                    elapsed = time.monotonic() - start
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 200:
                            latencies.append(elapsed)
                        elif r.status_code != 429:
                            errors.append(f"{r.status_code}: {r.text[:200]}")
                    if r.status_code == 429:
                        with lock:
                            retry_after[r.headers.get("Retry-After", "?")] += 1
                        time.sleep(min(float(r.headers.get("Retry-After", 1)), max(0.0, stop_at - time.monotonic())))

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_tree(proc))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t_load = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t_load
        t_drain = time.monotonic()
        while True:  # the sync clients are gone, but jobs they were refused or timed out on may still run
            queue = requests.get(url + "/readyz", timeout=10).json().get("queue") or {}
            if not queue.get("queued") and not queue.get("running"):
                break
            if time.monotonic() - t_drain > args.drain_timeout:
                break
            time.sleep(0.5)
        drained_s = time.monotonic() - t_drain
        time.sleep(args.idle)
        t_first = time.monotonic()
        with client_session(0) as s:
            first = once(s)
        first_after = {
            "status": first.status_code,
            "latency_s": round(time.monotonic() - t_first, 2),
            "retry_after": first.headers.get("Retry-After"),
            "detail": None if first.status_code == 200 else first.text[:200],
        }
        time.sleep(1.0)
        done.set()
        sampler.join()
        rss_after = rss_tree(proc)
        ok = statuses.get(200, 0)
        result = {
            "clients": args.clients,
            "duration_s": args.duration,
            "wall_s": round(wall, 1),
            "model": info["model"],
            "photo": Path(args.photo).name,
            "upscale": args.upscale,
            "faces_per_photo": len(info["faces"]),
            "server_ready_s": round(load_s, 1),
            "requests": sum(statuses.values()),
            "ok": ok,
            "statuses": {str(k): v for k, v in statuses.items()},
            "share_429": round(statuses.get(429, 0) / max(1, sum(statuses.values())), 3),
            "retry_after_seen": dict(sorted(retry_after.items(), key=lambda kv: -kv[1])[:10]),
            "drained_after_s": round(drained_s, 1),
            "idle_s": args.idle,
            "first_after_idle": first_after,
            "requests_per_s": round(ok / wall, 3),
            "latency_p50_s": round(percentile(latencies, 0.5) or 0, 2),
            "latency_p95_s": round(percentile(latencies, 0.95) or 0, 2),
            "errors_other_than_429": len(errors),
            "first_errors": errors[:5],
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_peak_mib": round(peak[0] / 2**20, 1),
            "rss_after_mib": round(rss_after / 2**20, 1),
            "rss_after_over_before": round(rss_after / rss_before, 3),
            "memory_bounded": abs(rss_after / rss_before - 1) <= 0.10,
            "queue": requests.get(url + "/readyz", timeout=5).json().get("queue"),
            "threads": os.environ.get("OMP_NUM_THREADS"),
        }
        print(json.dumps(result, indent=2))
        return 0 if not errors and result["memory_bounded"] and first.status_code == 200 else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
