"""What a deployed shadow costs the answer: the predict handler (REST event in, response out,
warm, one process) on varied real rows, without and with SHADOW_BUNDLE_PATH, calls
interleaved so both see the same machine. Goal: the shadow adds at most 10% to the p50.

Writes bench/shadow_results.json. Usage: python bench/shadow.py [--calls 4000] [--out PATH]
[--quick] (--quick: small models, a smoke run that proves the bench runs; not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "shadow_results.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where to write the results (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small models (20 rounds, no augmentation search, no refit): a smoke run",
    )
    args = parser.parse_args()
    small: dict[str, Any] = {"rounds": 20, "blank_rates": (0.0,), "refit": False} if args.quick else {}

    from avsev.data import default_data_path, load
    from avsev.serving.runtime import host_arch
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module, proxy_event
    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.train import save, train

    data = load(default_data_path())
    with tempfile.TemporaryDirectory(prefix="avsev-shadow-bench-") as folder:
        work = Path(folder)
        served = build_bundle(
            save(train(data, seed=0, **small), work / "m1"),
            "1.0.0",
            out_root=work,
            arch=host_arch(),
        )
        shadow = build_bundle(
            save(train(data, seed=1, balanced=True, **small), work / "m2"),
            "1.1.0",
            out_root=work,
            arch=host_arch(),
        )
        plain = load_handler_module("predict", {"MODEL_BUNDLE_PATH": str(served)})
        shadowed = load_handler_module(
            "predict", {"MODEL_BUNDLE_PATH": str(served), "SHADOW_BUNDLE_PATH": str(shadow)}
        )
        rows = data.reports()
        events = [
            proxy_event(
                "POST",
                "/predict",
                {
                    k: (v.isoformat() if hasattr(v, "isoformat") else v)
                    for k, v in r.items()
                    if v is not None
                },
            )
            for r in rows[: args.calls]
        ]
        ctx = LocalContext()
        times: dict[str, list[float]] = {"plain": [], "shadow": []}
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for fn in (plain, shadowed):  # warm both
                for e in events[:200]:
                    assert fn.handler(e, ctx)["statusCode"] == 200
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for e in events:  # the records and metrics each handler prints go to /dev/null
                for name, fn in (("plain", plain), ("shadow", shadowed)):
                    t0 = time.perf_counter_ns()
                    fn.handler(e, ctx)
                    times[name].append((time.perf_counter_ns() - t0) / 1e3)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "calls": len(events),
        "handler_p50_us": round(p50["plain"], 1),
        "handler_p50_us_with_shadow": round(p50["shadow"], 1),
        "shadow_overhead": round(p50["shadow"] / p50["plain"] - 1, 4),
        "goal": "≤ 0.10",
    }
    if args.quick:
        out["quick"] = "a smoke run on small models: not a measurement"
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
