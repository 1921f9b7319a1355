"""Monitoring at scale: synthetic records in the deployed layout (Parquet, day partitions,
the tables' schema), 1 million and 10 million predictions over seven days with outcomes for
half, rolled up by the same SQL in DuckDB, then the A/B and drift reports from the rollups.

Each size runs in a fresh process so its peak memory is its own. Writes
bench/monitoring_results.json (or --out PATH):
  {"sizes": [{"records", "ab_seconds", "drift_seconds", "engine_peak_mb", "job_peak_mb",
              "bytes_per_record", ...}]}
- ab_seconds: the rollup queries A/B needs (served + labels, every day) and the report;
- drift_seconds: the drift rollup of the last day (the daily check's window) and the report;
- engine_peak_mb: the process's peak resident memory above its baseline (DuckDB's memory
  limit set to ENGINE_LIMIT), job_peak_mb: the job's own Python allocations (tracemalloc).
Features are real NTSB rows (resampled), so the drift report sees realistic data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avsev.serving.card import Card

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "monitoring_results.json"
DAYS = 7
ENGINE_LIMIT = "1GB"
FIRST_DAY = dt.date(2026, 11, 14)


def _real_data() -> Path:
    from avsev.data import default_data_path

    path = default_data_path()
    if not path.exists():
        raise SystemExit(f"no NTSB data file at {path}")
    return path


def make_card(rows: list[dict]) -> Card:
    """A card with the real rows' reference profile (what drift compares against)."""
    from avsev.monitoring.profile import reference_profile
    from avsev.serving.card import Card
    from avsev.serving.features import fit_spec
    from avsev.serving.runtime import host_arch

    spec = fit_spec(rows)
    doc = {
        "name": "avsev-severity",
        "version": "1.0.0",
        "arch": host_arch(),
        "classes": ["Fatal", "Serious", "Minor", "None"],
        "feature_spec": spec.to_dict(),
        "reference_profile": reference_profile(rows, spec),
        "prediction_mix": {"Fatal": 0.2, "Serious": 0.1, "Minor": 0.1, "None": 0.6},
        "metrics": {"test": {"weighted_f1": 0.53}},
        "files": {},  # no compiled model: the bench measures the monitoring jobs
    }
    return Card.from_dict(doc)


def generate(root: Path, rows: list[dict], n: int) -> None:
    """n predictions (90% version 1.0.0, 10% 1.1.0) over DAYS days, outcomes for half."""
    import duckdb
    from avsev.monitoring.tables import duckdb_type, feature_columns

    con = duckdb.connect(config={"memory_limit": "2GB", "threads": 2})
    real = root / "real.json"
    columns = feature_columns()
    names = [c.name for c in columns]
    real.write_text(
        "\n".join(
            json.dumps(
                {
                    k: (v.isoformat() if hasattr(v, "isoformat") else v)
                    for k, v in r.items()
                    if k in names
                }
            )
            for r in rows
        )
    )
    spec = "{" + ", ".join(f"'{c.name}': '{duckdb_type(c.type)}'" for c in columns) + "}"
    con.execute(
        f"CREATE TABLE real AS SELECT row_number() OVER () - 1 AS k, * "
        f"FROM read_json('{real}', columns = {spec}, format = 'newline_delimited')"
    )
    m = len(rows)
    features = ", ".join(f"{name} := r.{name}" for name in names)
    classes = "['Fatal', 'Serious', 'Minor', 'None']"
    con.execute(
        f"""
        COPY (
          SELECT 'prediction' AS record_type, 1 AS schema_version,
                 CAST(uuid() AS VARCHAR) AS request_id,
                 'EV' || CAST(i AS VARCHAR) AS ev_id,
                 TIMESTAMP '{FIRST_DAY}' + to_days(CAST(i % {DAYS} AS INTEGER))
                   + to_microseconds(CAST(hash(i) % 86400000000 AS BIGINT)) AS "timestamp",
                 'avsev-severity' AS model_name,
                 CASE WHEN hash(i * 7) % 10 = 0 THEN '1.1.0' ELSE '1.0.0' END AS model_version,
                 '3' AS function_version, false AS shadow,
                 struct_pack({features}) AS features,
                 struct_pack(fatal := 0.2, serious := 0.1, minor := 0.1, none := 0.6) AS probabilities,
                 {classes}[1 + CAST(hash(i * 13) % 4 AS INTEGER)] AS predicted,
                 0.05 + (hash(i * 17) % 1000) / 20000.0 AS latency_ms,
                 strftime(DATE '{FIRST_DAY}' + CAST(i % {DAYS} AS INTEGER), '%Y-%m-%d') AS dt
          FROM range({n}) t(i) JOIN real r ON r.k = i % {m}
        ) TO '{root / "predictions"}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (dt))
        """
    )
    con.execute(
        f"""
        COPY (
          SELECT 'outcome' AS record_type, 1 AS schema_version,
                 CAST(uuid() AS VARCHAR) AS request_id, ev_id,
                 "timestamp" + INTERVAL 1 HOUR AS "timestamp",
                 CASE WHEN hash(ev_id) % 10 < 6 THEN predicted
                      ELSE {classes}[1 + CAST(hash(ev_id || 'x') % 4 AS INTEGER)] END AS actual_severity,
                 CAST(NULL AS TIMESTAMP) AS observed_at, 0 AS seq,
                 dt
          FROM read_parquet('{root}/predictions/*/*.parquet', hive_partitioning = true)
          WHERE hash(request_id) % 2 = 0
        ) TO '{root / "outcomes"}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (dt))
        """
    )
    con.close()


def measure(root: Path, n: int, data: Path) -> dict:
    """One size, in a fresh process: time the rollups and reports over generated records."""
    from avsev.data import load
    from avsev.monitoring import rollups
    from avsev.monitoring.jobs import ab_report_of, drift_report_of
    from avsev.monitoring.query import DuckDBEngine

    card = make_card(load(data, require_label=False).reports())
    pred_bytes = sum(p.stat().st_size for p in (root / "predictions").rglob("*.parquet"))
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(DAYS)]
    until = days[-1]
    cost = athena_cost(root)
    tracemalloc.start()
    engine = DuckDBEngine.over_folder(root, memory_limit=ENGINE_LIMIT)
    t0 = time.perf_counter()
    served = [rollups.served_rollup(engine, d) for d in days]
    labels = [rollups.labels_rollup(engine, d, until) for d in days]
    ab = ab_report_of(served, labels)
    ab_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    drift_docs = [rollups.drift_rollup(engine, card.reference().to_dict(), until, card.version)]
    drift = drift_report_of(card, drift_docs, labels[-1:])
    drift_s = time.perf_counter() - t0
    _, job_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine.connection.close()
    return {
        "records": n,
        "outcomes": ab.records.labelled,
        "ab_seconds": round(ab_s, 2),
        "drift_seconds": round(drift_s, 2),
        "engine_peak_mb": round((peak_kb - baseline_kb) / 1024, 1),
        "job_peak_mb": round(job_peak / 2**20, 1),
        "bytes_per_record": round(pred_bytes / n, 1),
        "ab_decision": ab.decision,
        "drift_rows": drift.rows,
        "dataset_drift": drift.dataset_drift,
        "engine_memory_limit": ENGINE_LIMIT,
        "athena_cost": cost,
    }


QUERY_COLUMNS = {
    "served": (
        "probabilities",
        "request_id",
        "ev_id",
        "shadow",
        "model_version",
        "schema_version",
        "predicted",
        "latency_ms",
    ),
    "labels": (
        "probabilities",
        "request_id",
        "ev_id",
        "shadow",
        "model_version",
        "schema_version",
        "predicted",
    ),
    "drift": (
        "request_id",
        "ev_id",
        "shadow",
        "model_version",
        "schema_version",
        "predicted",
        "features",
    ),
    "outcomes": ("ev_id", "actual_severity", "timestamp", "request_id", "seq", "schema_version"),
}
SCANS_PER_DAY = {"served": 13.5, "drift": 13.5, "labels": 41.5, "outcomes": 35.75}
"""How many times, in steady state with an hourly schedule and a 7-day window, a day's records
are scanned (in units of one day's records; see avsev.monitoring.rollups): served and drift:
today's partition every hour (on average half a day, 24 runs) and once after; labels: today and
yesterday every hour, five older days once; outcomes (half the predictions): the partitions
from each label query's day to today."""
QUERIES_PER_DAY = 24 + 24 + 48 + 5
ATHENA_MIN_BYTES = 10 * 2**20
ATHENA_USD_PER_TB = 5.0


def athena_cost(root: Path) -> dict:
    """Bytes Athena would scan a day (columns read × scans), from the Parquet column sizes."""
    import duckdb

    con = duckdb.connect()
    per_record: dict[str, float] = {}
    for table, kinds in (
        ("predictions", ("served", "labels", "drift")),
        ("outcomes", ("outcomes",)),
    ):
        sizes = con.execute(
            f"SELECT path_in_schema, SUM(total_compressed_size) "
            f"FROM parquet_metadata('{root / table}/*/*.parquet') GROUP BY 1"
        ).fetchall()
        count = con.execute(
            f"SELECT COUNT(*) FROM read_parquet('{root / table}/*/*.parquet')"
        ).fetchone()
        n = count[0] if count else 0
        for kind in kinds:
            per_record[kind] = sum(
                size for path, size in sizes if path.split(",")[0].strip() in QUERY_COLUMNS[kind]
            ) / max(n, 1)
    per_day = []
    for rate in (1, 100, 1000):
        records = rate * 86_400
        scanned = sum(
            SCANS_PER_DAY[k] * records * (0.5 if k == "outcomes" else 1.0) * b
            for k, b in per_record.items()
        )
        billed = max(scanned, 0) + QUERIES_PER_DAY * ATHENA_MIN_BYTES
        per_day.append(
            {
                "requests_per_second": rate,
                "gb_scanned_per_day": round(scanned / 1e9, 2),
                "usd_per_day": round(billed / 1e12 * ATHENA_USD_PER_TB, 4),
            }
        )
    return {
        "bytes_per_record_read": {k: round(v, 1) for k, v in per_record.items()},
        "per_day": per_day,
    }


def _child(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where to write the results (default: %(default)s)",
    )
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = _real_data()
    if args.generate:
        from avsev.data import load

        generate(
            Path(args.generate[0]), load(data, require_label=False).reports(), int(args.generate[1])
        )
        return
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]), data)))
        return
    sizes = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="avsev-bench-monitoring-") as folder:
            started = time.perf_counter()
            _child("--generate", folder, str(n))
            generated = time.perf_counter() - started
            result = json.loads(_child("--measure", folder, str(n)))
        result["generate_seconds"] = round(generated, 1)
        print(json.dumps(result), flush=True)
        sizes.append(result)
    cost = sizes[-1].pop("athena_cost")
    for size in sizes:
        size.pop("athena_cost", None)
    args.out.write_text(json.dumps({"sizes": sizes, "athena_cost": cost}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
