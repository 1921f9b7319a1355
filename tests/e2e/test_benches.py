"""Every bench the Makefile names (make bench, bench-shadow, bench-cost, load, bench-monitoring) runs, on
small sizes: smoke runs that prove the benches still run and still write the figures the
README quotes, so a change that breaks a bench fails here. They are not measurements: speed is
measured by the benches themselves, at their full sizes. Each one runs the script as a
subprocess with tmp paths for what it writes (the committed results are never touched).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run_bench(script: str, *args: str, timeout: float = 300) -> None:
    """Run bench/<script> with `args`; fail with the end of its output unless it exits 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, (
        f"{script} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )


def positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_quick(tmp_path):
    """make bench: every part (single row, batch, parity, explain, cold starts, handlers,
    batch file, sizes) on a 20-round model and small sizes (Sizes.quick)."""
    out = tmp_path / "results.json"
    run_bench("bench.py", "--quick", "--out", str(out), "--work", str(tmp_path / "work"))
    r = json.loads(out.read_text())
    assert "quick" in r  # marked as a smoke run, never mistaken for a measurement
    assert positive(r["speedup_vs_xgboost_single_row"])
    assert positive(r["speedup_vs_tl2cgen_code_single_row"])
    assert ("speedup_vs_onnxruntime_single_row" in r) != ("onnxruntime_error" in r)
    for name in (
        "avsev_branch_free",
        "avsev_tl2cgen_code",
        "avsev_auto",
        "xgboost_inplace_predict",
    ):
        assert positive(r["single_row_us"][name]["median_us"]), name
        assert positive(r["batch_rows_per_s"][name]), name
    assert positive(r["batch_rows_per_s"]["avsev_ctypes_from_python_lists"])
    assert positive(r["batch_rows_per_s_2_threads"]["avsev_branch_free"])
    assert set(r["rows_per_call_us"]) == {"1", "8", "64", "1000"}
    assert set(r["parity_max_abs_diff"]) == {"branch_free", "tl2cgen"}
    assert all(d < 1e-4 for d in r["parity_max_abs_diff"].values()), r["parity_max_abs_diff"]
    for key in ("explain_ms", "explain_all_classes_ms", "explain_xgboost_ms"):
        assert positive(r[key]), key
    assert positive(r["cold_start_ms"]["avsev_ctypes"]) and positive(r["cold_start_ms"]["xgboost"])
    for key in (
        "handler_p50_us",
        "handler_p50_us_xgboost",
        "batch_1000_ms",
        "batch_1000_ms_xgboost",
    ):
        assert positive(r[key]), key
    assert "handler total" in r["batch_1000_ms_by_step"]
    assert set(r["function_cold_start_ms"]) == {
        "predict",
        "explain",
        "outcomes",
        "predict_on_xgboost",
    }
    assert r["batch_file_rows"] == 5000 and positive(r["batch_file_rows_per_s"])
    assert positive(r["batch_file_peak_mb"]) and r["batch_file_seconds_by_step"]
    assert positive(r["bundle_bytes"])


@pytest.mark.slow
def test_cost_quick(tmp_path):
    """make bench-cost: a 20-round bundle, each route's log bytes by kind and handler time."""
    out = tmp_path / "cost.json"
    run_bench("cost.py", "--quick", "--out", str(out))
    r = json.loads(out.read_text())
    assert set(r["routes"]) == {"predict", "batch", "explain", "outcomes"} and "quick" in r
    for route in r["routes"].values():
        assert positive(route["app_bytes"]["record"])
        # an answered request writes no EMF document: its metrics are metric filters
        assert route["app_bytes"]["metrics"] == 0
        assert positive(route["handler_ms_p50"])
        assert route["records_per_request"] == route["rows_per_request"]
    assert positive(r["metric_series"])  # from the metric filters on the record lines
    # the records extension's path: no record line in the log, EMF a flush, records ≤ 1,000 KiB
    for function in ("predict", "outcomes"):
        measured = r["extension"]["functions"][function]
        assert positive(measured["handler_ms_p50_spool"]) and positive(measured["check_ms_p50"])
        flush = measured["flushes"]["1000"]
        assert flush["emf_documents"] == (10 if function == "predict" else 1)
        assert all(0 < b <= 1000 * 1024 for b in flush["firehose_record_bytes"])


@pytest.mark.slow
def test_shadow_quick(tmp_path):
    """make bench-shadow: two 20-round bundles, 300 calls each without and with the shadow."""
    out = tmp_path / "shadow.json"
    run_bench("shadow.py", "--quick", "--calls", "300", "--out", str(out))
    r = json.loads(out.read_text())
    assert r["calls"] == 300 and "quick" in r
    assert positive(r["handler_p50_us"]) and positive(r["handler_p50_us_with_shadow"])
    assert math.isfinite(r["shadow_overhead"])


@pytest.mark.slow
def test_load_quick(tmp_path):
    """make load: a 20-round bundle behind `avsev local up`, 0.5 s warm-up then 2 s of
    requests over 4 connections; every request answered (the 1,000/s target is not asked)."""
    out = tmp_path / "load.json"
    run_bench(
        "load.py",
        "--quick",
        "--seconds",
        "2",
        "--warmup",
        "0.5",
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
    )
    r = json.loads(out.read_text())
    assert r["requests"] > 0 and r["errors"] == 0, r
    assert positive(r["requests_per_s"]) and positive(r["latency_ms_p50"])
    assert positive(r["latency_ms_p99"]) and isinstance(r["target_met"], bool)


def test_monitoring_small(tmp_path):
    """make bench-monitoring: 2,000 generated records (not 100k to 10M), the rollups in DuckDB,
    the A/B and drift reports from them, and the Athena cost table."""
    out = tmp_path / "monitoring.json"
    run_bench("monitoring.py", "--sizes", "2000", "--out", str(out))
    r = json.loads(out.read_text())
    [size] = r["sizes"]
    assert size["records"] == 2000
    assert 0 < size["outcomes"] < 2000  # outcomes for about half
    assert size["ab_decision"] in {"promote", "rollback", "continue", "insufficient_data"}
    assert isinstance(size["dataset_drift"], bool) and size["drift_rows"] > 0
    assert size["ab_seconds"] >= 0 and size["drift_seconds"] >= 0
    assert len(r["athena_cost"]["per_day"]) == 3


@pytest.mark.slow
def test_stats_quick(tmp_path):
    """make bench-stats: the A/B, drift and trust simulations and the estimate's lean on small
    sizes, and the tables it writes into a copy of docs/statistics.md."""
    out, doc = tmp_path / "stats.json", tmp_path / "statistics.md"
    doc.write_text((ROOT / "docs" / "statistics.md").read_text())
    run_bench("stats.py", "--quick", "--out", str(out), "--tables", str(doc))
    r = json.loads(out.read_text())
    assert r["quick"]
    for metric in ("log_loss", "accuracy", "expected_cost"):
        assert r["ab"][metric]["vectorized_checked_looks"] > 0
        assert r["ab"][metric]["50%_candidate/identical"]["24_looks"]["n"] > 0
    assert "macro_f1" not in r["ab"]  # not offered for decisions
    assert r["drift"]["rollups_checked_against_sql"] == 2  # the numpy rollups equal the SQL's
    for size in ("300", "5000"):
        assert r["drift"][size]["daily_alert_false_alarm"]["n"] > 0
        assert r["drift"][size]["dec_latitude_half_sd_shift_caught"]["n"] > 0
    assert set(r["trust"]) >= {"calibrated_called_untrusted/30_rows"}
    assert r["lean"]["summary"]["cells"] > 0
    assert r["lean"]["0%_blank"]["all test years"]["rows"] > 0
    text = doc.read_text()
    assert "**Lean of the label-free estimate**" in text
    assert "| log_loss (0.05) | 50% | identical |" in text
    assert text.count("bench/stats.py tables: start") == 1
