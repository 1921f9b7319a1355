"""`avsev drift|ab-report`: the monitoring reports, from a file or from a bucket's records.

avsev drift --bundle B --data FILE       # a file against the bundle's reference profile
avsev ab-report --bucket BUCKET          # champion against candidate over the last --days
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from avsev_tools.commands._shared import Subcommands, add, aws, print_json, use_local


def cmd_drift(args: argparse.Namespace) -> int:
    """Has my new data moved? An export file against a bundle's reference profile, through
    the same rollup queries (DuckDB) and report as the scheduled drift check."""
    import datetime as dt

    from avsev.data import load
    from avsev.monitoring.offline import reports_from_records
    from avsev.serving.bundle import load_bundle
    from avsev.serving.records import OutcomeRecord, PredictionRecord
    from avsev.serving.schema import Severity

    from avsev_tools.pipeline.evaluate import predict_proba

    bundle = load_bundle(args.bundle, explain=False)
    data = load(args.data, require_label=False)
    rows = data.reports()
    proba: Any = predict_proba(bundle, data) if rows else []
    at = dt.datetime.now(dt.UTC)
    records: list[PredictionRecord | OutcomeRecord] = []
    labels = data.frame.get("severity")
    for i, (row, p) in enumerate(zip(rows, proba, strict=True)):
        ev = str(row.get("ev_id") or f"row{i}")
        records.append(
            PredictionRecord(
                request_id=f"file-{i}",
                ev_id=ev,
                timestamp=at,
                model_name=bundle.name,
                model_version=bundle.version,
                function_version="file",
                features={k: v for k, v in row.items() if k != "ev_id"},
                probabilities={c: float(x) for c, x in zip(bundle.classes, p, strict=True)},
                predicted=cast(Severity, bundle.classes[int(p.argmax())]),
                latency_ms=0.0,
            )
        )
        if labels is not None and isinstance(labels.iloc[i], str):
            records.append(
                OutcomeRecord(
                    request_id=f"file-{i}", ev_id=ev, timestamp=at, actual_severity=labels.iloc[i]
                )
            )
    report = reports_from_records(
        records,
        card=bundle.card,
        window={"data": str(args.data)},
        dataset_drift_share=args.dataset_drift_share,
    ).drift
    print_json(report)
    return 0


def cmd_ab_report(args: argparse.Namespace) -> int:
    import datetime as dt

    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis
    from avsev.monitoring.performance import parse_cost_matrix

    use_local(args)
    at = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(dt.UTC)
    clients = Clients(aws("s3"), aws("cloudwatch"), aws("sns"))
    if args.local or args.rollup == "duckdb":
        # The local stack has no scheduled rollup: roll the window up here first.
        rollup_with_duckdb(clients.s3, args.bucket, None, at, days=args.days)
    out = run_ab_analysis(
        clients,
        args.bucket,
        at,
        days=args.days,
        champion=args.champion,
        candidate=args.candidate,
        topic_arn=args.topic,
        decision_metric=args.metric,
        cost=parse_cost_matrix(args.cost_matrix),
        margin=args.margin,
    )
    print_json(out.report)
    print(f"report: s3://{args.bucket}/{out.keys['markdown']}", file=sys.stderr)
    return 0


def register(sub: Subcommands) -> None:
    p = add(
        sub, "drift", cmd_drift, "drift of a data file against a bundle's reference (JSON report)"
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="NTSB export CSV, either column style")
    p.add_argument("--dataset-drift-share", type=float, default=0.5)

    p = add(sub, "ab-report", cmd_ab_report, "A/B report from the records in a bucket")
    p.add_argument("--bucket")
    p.add_argument("--local", action="store_true", help="the running local stack's bucket")
    p.add_argument(
        "--rollup",
        choices=["duckdb", "none"],
        default="none",
        help="roll the window's records up here with DuckDB first (always with --local); "
        "none: use the rollups the deployed job keeps",
    )
    p.add_argument("--days", type=int, default=7)
    p.add_argument(
        "--metric",
        default="log_loss",
        choices=["log_loss", "accuracy", "expected_cost"],
        help="the decision metric (log loss: a proper scoring rule)",
    )
    p.add_argument(
        "--margin",
        type=float,
        help="non-inferiority margin in the metric's units (default: the metric's, "
        "avsev.monitoring.performance.MARGIN)",
    )
    p.add_argument(
        "--cost-matrix",
        help='expected_cost: JSON {"Fatal": {"None": 10, ...}, ...} (actual → predicted → cost)',
    )
    p.add_argument("--at", help="end of the window (ISO time; default now)")
    p.add_argument("--champion")
    p.add_argument("--candidate")
    p.add_argument("--topic", help="SNS topic for a rollback alert")
