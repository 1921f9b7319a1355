"""Bounded load test of the local API (loopback only; stops by itself).

    python bench/load.py [--seconds 60] [--warmup 5] [--connections 4] [--bundle DIR]
                         [--out bench/load_results.json] [--work DIR] [--quick]

Starts `avsev local up` in its own process, then sends POST /predict requests with varied
real accident reports over keep-alive connections from this process for a fixed time, and
reports requests per second, latency p50/p99 and errors (bench/load_results.json).
Target: ≥ 1,000 requests/s sustained for 60 s with zero errors (the exit status).

--quick is a smoke run that proves the bench runs: a small model (when it trains one), and the
exit status says only that requests were answered without errors, not that the target was met.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data/ntsb_us_airplane_accidents.csv.xz"  # shipped (data/README.md)
AVSEV = Path(sys.executable).parent / "avsev"


def bundle_for_host(work: Path, quick: bool = False) -> Path:
    from avsev.data import load
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.synthetic import generate
    from avsev_tools.pipeline.train import save, train

    data = load(DATA) if DATA.is_file() else generate(20_000)
    small: dict[str, Any] = {"rounds": 20, "blank_rates": (0.0,), "refit": False} if quick else {}
    model = save(train(data, **small), work / "model")
    return build_bundle(model, "1.0.0", out_root=work / "bundles", arch=host_arch())


def request_bodies(n: int = 5000) -> list[bytes]:
    from avsev.data import load
    from avsev_tools.pipeline.synthetic import generate

    data = load(DATA) if DATA.is_file() else generate(n)
    rows = data.reports()
    random.Random(0).shuffle(rows)
    return [
        json.dumps(
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        ).encode()
        for r in rows[:n]
    ]


def start_stack(bundle: Path, log: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "AVSEV_LOCAL_STATE": str(log.parent / "local.json")}
    proc = subprocess.Popen(
        [str(AVSEV), "local", "up", "--bundle", str(bundle), "--port", "0", "--log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    base = key = ""
    deadline = time.time() + 120
    while time.time() < deadline and not (base and key):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("local stack exited before printing its URL")
        if line.startswith("base URL:"):
            base = line.split(":", 1)[1].strip()
        elif line.startswith("API key:"):
            key = line.split(":", 1)[1].split()[0]
    return proc, base, key


def worker(
    base: str,
    key: str,
    bodies: list[bytes],
    until: float,
    warmup_until: float,
    out: dict[str, Any],
    seed: int,
) -> None:
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json", "X-Api-Key": key}
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    count = 0
    while True:
        now = time.perf_counter()
        if now >= until:
            break
        body = bodies[rng.randrange(len(bodies))]
        try:
            conn.request("POST", "/predict", body, headers)
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        done = time.perf_counter()
        if now >= warmup_until:
            count += 1
            latencies.append(done - now)
            errors += not ok
    out.update(latencies=latencies, errors=errors, count=count)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--bundle")
    parser.add_argument("--out", default=str(ROOT / "bench/load_results.json"))
    parser.add_argument("--work", help="folder for the model and logs (default: a temporary one)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: a small model; exit 0 when every request was answered",
    )
    args = parser.parse_args()

    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="avsev-load-"))
    try:
        return run(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    bundle = Path(args.bundle) if args.bundle else bundle_for_host(work, quick=args.quick)
    bodies = request_bodies()
    proc, base, key = start_stack(bundle, work / "functions.log")
    try:
        start = time.perf_counter()
        warmup_until = start + args.warmup
        until = warmup_until + args.seconds
        results: list[dict[str, Any]] = [{} for _ in range(args.connections)]
        threads = [
            threading.Thread(
                target=worker, args=(base, key, bodies, until, warmup_until, results[i], i)
            )
            for i in range(args.connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies = sorted(x for r in results for x in r["latencies"])
    total = sum(r["count"] for r in results)
    errors = sum(r["errors"] for r in results)
    report = {
        "seconds": args.seconds,
        "connections": args.connections,
        "requests": total,
        "errors": errors,
        "requests_per_s": total / args.seconds,
        "latency_ms_p50": statistics.median(latencies) * 1e3,
        "latency_ms_p99": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "target_met": total / args.seconds >= 1000 and errors == 0,
    }
    if args.quick:
        report["quick"] = "a smoke run: not a measurement"
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if args.quick:
        return 0 if total > 0 and errors == 0 else 1
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
