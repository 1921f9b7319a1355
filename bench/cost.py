"""The per-request inputs of `avsev cost`, measured with the local stack's Lambda emulation:
the predict, explain and outcomes handlers (REST events in, warm, one process) on real rows,
their stdout through the local stack's log router (`avsev_tools.local.logs.LogRouter`, what
CloudWatch Logs, the subscription filters, the log groups' metric filters and EMF extraction
do locally), which counts the bytes each kind of line puts in the log: record lines, EMF
metrics, anything else; the metric series are those the metric filters and EMF documents
give. Lambda's
system lines (START/END/REPORT or their JSON form) are rendered for each logging setting by
`avsev_tools.local.logs.platform_lines` from the measured duration.

Handler time is measured in a separate pass with stdout to /dev/null (the router's parsing
is not Lambda's). Athena's bytes scanned per record come from bench/monitoring_results.json.

The records extension's path (`-c records=extension`, `extension` in the JSON): the same
handlers with their record lines spooled (`RECORDS_SPOOL`), the spool append's time (the
handler's p50 with the spool against stdout), and what the extension's flush
(`avsev.serving.records_extension.RecordsExtension`) puts where for flushes of 1, 10, 100 and
1,000 lines: the EMF documents' bytes in the log (each with the 26-byte event overhead), the
Firehose records' sizes, and the flush's own time (without the network).

Writes bench/cost_inputs.json (≤ 8 min). Usage: python bench/cost.py [--quick] [--out PATH]
[--extension-only] (--quick: a small model and few calls, a smoke run; not a measurement;
--extension-only: measure the extension's path only, into the `extension` key of the file).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "cost_inputs.json"
MONITORING = ROOT / "bench" / "monitoring_results.json"
BATCH_ROWS = 100


def _json_report(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v)
        for k, v in row.items()
        if v is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="small model, few calls: a smoke run")
    parser.add_argument(
        "--extension-only", action="store_true", help="only the records extension's path"
    )
    args = parser.parse_args()
    calls = 200 if args.quick else 2000

    from avsev.constants import METRICS_NAMESPACE
    from avsev.data import default_data_path, load
    from avsev.monitoring.record_metrics import RECORD_METRICS, namespace
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module, proxy_event
    from avsev_tools.local.logs import (
        EmfForwarder,
        FirehoseBuffer,
        LogRouter,
        MetricFilter,
        stdout_of_this_thread,
    )

    sys.path.insert(0, str(ROOT))
    from infra.catalog import function_specs
    from infra.config import AppConfig

    specs = function_specs(AppConfig())
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.train import save, train

    started = time.perf_counter()
    data = load(default_data_path())
    small: dict[str, Any] = {"rounds": 20} if args.quick else {}
    rows = [_json_report(r) for r in data.reports()]
    with tempfile.TemporaryDirectory(prefix="avsev-cost-bench-") as folder:
        work = Path(folder)
        bundle = build_bundle(
            save(train(data, seed=0, blank_rates=(0.0,), refit=False, **small), work / "m"),
            "1.0.0",
            out_root=work,
            arch=host_arch(),
        )
        env = {"MODEL_BUNDLE_PATH": str(bundle)}
        fns = {name: load_handler_module(name, env) for name in ("predict", "explain", "outcomes")}

        def events(route: str, n: int) -> list[dict[str, Any]]:
            picks = [
                rows[(i * 7919) % len(rows)]
                for i in range(n * (BATCH_ROWS if route == "batch" else 1))
            ]
            if route == "predict":
                return [proxy_event("POST", "/predict", r) for r in picks]
            if route == "explain":
                return [proxy_event("POST", "/predict/explain", r) for r in picks]
            if route == "batch":
                return [
                    proxy_event("POST", "/predict/batch", {"reports": picks[i : i + BATCH_ROWS]})
                    for i in range(0, len(picks), BATCH_ROWS)
                ]
            return [
                proxy_event(
                    "POST",
                    "/outcomes",
                    {"outcomes": [{"ev_id": r["ev_id"], "actual_severity": "Minor"}]},
                )
                for r in picks
            ]

        extension = measure_extension(fns, events, calls)
        print("extension", json.dumps(extension), flush=True)
        if args.extension_only:
            out = json.loads(args.out.read_text()) if args.out.is_file() else {}
            out["extension"] = extension
            args.out.write_text(json.dumps(out, indent=1) + "\n")
            print(f"wrote the extension's inputs into {args.out}")
            return
        plan = {
            "predict": ("predict", calls),
            "batch": ("predict", max(20, calls // 40)),
            "explain": ("explain", max(100, calls // 4)),
            "outcomes": ("outcomes", calls),
        }
        routes: dict[str, Any] = {}
        series: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        for route, (function, n) in plan.items():
            fn = fns[function]
            evs = events(route, n)
            # timing: warm, stdout to /dev/null
            times: list[float] = []
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                for e in evs[: min(100, len(evs))]:
                    fn.handler(e, LocalContext(function_version="12"))
                for e in evs:
                    ctx = LocalContext(function_version="12", aws_request_id=str(uuid.uuid4()))
                    t0 = time.perf_counter_ns()
                    out = fn.handler(e, ctx)
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                    assert out["statusCode"] == 200, out
            # bytes: through the log router, one invocation each
            firehose = FirehoseBuffer(lambda: None, "unused", max_lines=10**9)
            emf = EmfForwarder(lambda: None)
            # the metric filters of the function's log group (infra/catalog.py), as deployed
            filters = [
                MetricFilter.from_properties(m.properties(namespace(METRICS_NAMESPACE, "bench")))
                for m in RECORD_METRICS[specs[function].record_metrics or ""]
            ]
            router = LogRouter(
                firehose,
                emf,
                console=open(os.devnull, "w"),  # noqa: SIM115
                metric_filters=filters,
            )
            for e in evs:
                ctx = LocalContext(function_version="12", log_group_name=f"/aws/lambda/{function}")
                with stdout_of_this_thread(router), router.invocation(ctx.log_group_name):
                    fn.handler(e, ctx)
            for blob in emf._pending:
                for directive in blob["_aws"]["CloudWatchMetrics"]:
                    dims = tuple(
                        (d, str(blob[d])) for group in directive["Dimensions"] for d in group
                    )
                    for m in directive["Metrics"]:
                        series.add((directive["Namespace"], m["Name"], dims))
            for ns, name, _, dims, _ in emf._points:
                series.add((ns, name, dims))
            record_lines = sum(len(r.lines) for r in firehose._records)
            rows_per_request = BATCH_ROWS if route == "batch" else 1
            routes[route] = {
                "function": function,
                "requests": len(evs),
                "rows_per_request": rows_per_request,
                "records_per_request": round(record_lines / len(evs), 3),
                "app_bytes": {
                    kind: round(router.logged_bytes[kind] / len(evs), 1)
                    for kind in ("record", "metrics", "other")
                },
                "app_events": {
                    kind: round(router.logged_events[kind] / len(evs), 3)
                    for kind in ("record", "metrics", "other")
                },
                "handler_ms_p50": round(statistics.median(times), 4),
                "handler_ms_p90": round(statistics.quantiles(times, n=10)[-1], 4),
            }
            print(route, json.dumps(routes[route]), flush=True)

    athena = None
    if MONITORING.is_file():
        per_day = json.loads(MONITORING.read_text())["athena_cost"]["per_day"]
        top = max(per_day, key=lambda d: d["requests_per_second"])
        athena = round(top["gb_scanned_per_day"] * 1e9 / (top["requests_per_second"] * 86400), 1)
    out = {
        "measured_on": dt.date.today().isoformat(),
        "host": f"{platform.machine()} {platform.python_version()}",
        "seconds": round(time.perf_counter() - started, 1),
        "note": (
            "app_bytes: bytes per request that the function writes, by kind, each log event "
            "with CloudWatch Logs' 26-byte overhead; Lambda's system lines are added by "
            "`avsev cost` for the template's log format and level. handler_ms: this host, warm; "
            "`avsev cost` scales it to the function's CPU share."
        ),
        "routes": routes,
        "extension": extension,
        "metric_series": len(series),
        "athena_bytes_scanned_per_record": athena,
        "athena_source": "bench/monitoring_results.json (athena_cost.per_day, highest rate)",
    }
    if args.quick:
        out["quick"] = "a smoke run on a small model: not a measurement"
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['seconds']} s")


FLUSH_SIZES = (1, 10, 100, 1000)
"""Lines per flush the extension's bytes are measured at (`avsev cost` picks by rate)."""


def measure_extension(fns: dict[str, Any], events: Any, calls: int) -> dict[str, Any]:
    """The records extension's path for predict and outcomes (see the module docstring)."""
    import io

    from avsev.constants import METRICS_NAMESPACE
    from avsev.monitoring.record_metrics import namespace
    from avsev.serving.records import SPOOL_ENV
    from avsev.serving.records_extension import (
        DEFAULT_FLUSH_BYTES,
        DEFAULT_FLUSH_SECONDS,
        RecordsExtension,
        record_filters,
    )
    from avsev_tools.local.lambda_runtime import LocalContext
    from avsev_tools.local.logs import EVENT_OVERHEAD_BYTES

    class Capture:
        """PutRecordBatch that keeps the records' sizes (every record put)."""

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def put_record_batch(self, *, DeliveryStreamName: str, Records: list[Any]) -> Any:
            self.sizes += [len(r["Data"]) for r in Records]
            return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "x"} for _ in Records]}

    out: dict[str, Any] = {
        "flush_bytes": DEFAULT_FLUSH_BYTES,
        "flush_seconds": DEFAULT_FLUSH_SECONDS,
        "functions": {},
    }
    metrics = {"predict": "predictions", "outcomes": "outcomes"}
    with tempfile.TemporaryDirectory(prefix="avsev-spool-bench-") as folder:
        spool = str(Path(folder) / "avsev-records")
        for function in ("predict", "outcomes"):
            fn = fns[function]
            evs = events(function, max(FLUSH_SIZES) + 100)
            # the handler's time with the spool against stdout (/dev/null), interleaved
            times: dict[str, list[float]] = {"stdout": [], "spool": []}
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                for e in evs[:100]:
                    fn.handler(e, LocalContext(function_version="12"))
                for i in range(calls):
                    e = evs[i % len(evs)]
                    for mode in ("stdout", "spool"):
                        if mode == "spool":
                            os.environ[SPOOL_ENV] = spool
                        ctx = LocalContext(function_version="12", aws_request_id=str(uuid.uuid4()))
                        t0 = time.perf_counter_ns()
                        fn.handler(e, ctx)
                        times[mode].append((time.perf_counter_ns() - t0) / 1e6)
                        os.environ.pop(SPOOL_ENV, None)
                    if os.path.getsize(spool) > 4 * 1024 * 1024:
                        os.remove(spool)
            with contextlib.suppress(FileNotFoundError):
                os.remove(spool)
            flushes: dict[str, Any] = {}
            for size in FLUSH_SIZES:
                capture, log = Capture(), io.StringIO()
                extension = RecordsExtension(
                    spool=spool,
                    streams={"prediction": "p", "outcome": "o"},
                    firehose=capture,
                    filters=record_filters(
                        metrics[function], namespace(METRICS_NAMESPACE, "bench")
                    ),
                    stdout=log,
                )
                os.environ[SPOOL_ENV] = spool
                with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                    for e in evs[:size]:
                        fn.handler(e, LocalContext(function_version="12"))
                os.environ.pop(SPOOL_ENV, None)
                t0 = time.perf_counter_ns()
                result = extension.flush()
                flush_ms = (time.perf_counter_ns() - t0) / 1e6
                docs = log.getvalue().splitlines()
                assert result.delivered == size and result.fallback == 0, result
                flushes[str(size)] = {
                    "emf_documents": len(docs),
                    "emf_log_bytes": sum(len(d.encode()) + EVENT_OVERHEAD_BYTES for d in docs),
                    "firehose_record_bytes": capture.sizes,
                    "flush_ms": round(flush_ms, 3),
                }
            check_ms = []
            os.environ[SPOOL_ENV] = spool  # one fresh line waiting: not due yet
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                fn.handler(evs[0], LocalContext(function_version="12"))
            os.environ.pop(SPOOL_ENV, None)
            for _ in range(200):  # the check at every INVOKE event: stat, the first line's time
                t0 = time.perf_counter_ns()
                extension.on_event()
                check_ms.append((time.perf_counter_ns() - t0) / 1e6)
            os.remove(spool)
            out["functions"][function] = {
                "handler_ms_p50_stdout": round(statistics.median(times["stdout"]), 4),
                "handler_ms_p50_spool": round(statistics.median(times["spool"]), 4),
                "check_ms_p50": round(statistics.median(check_ms), 4),
                "flushes": flushes,
            }
    return out


if __name__ == "__main__":
    main()
