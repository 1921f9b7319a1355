"""The scheduled jobs, given their AWS clients: read records, analyse, write the report,
publish metrics, alert once. The Lambda functions and the local stack call these."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from avsev.monitoring import ab, drift
from avsev.monitoring.store import alert_once, metric, put_metrics, read_records, write_report

NAMESPACE = "Avsev"
SERVICE = "avsev"


@dataclass(frozen=True)
class Clients:
    s3: Any
    cloudwatch: Any
    sns: Any
    lambda_: Any = None


def window(at: dt.datetime, days: int, *, hourly: bool) -> tuple[dt.date, dt.date, str]:
    """The days a run covers, ending on the scheduled time's day, and its id (the key)."""
    end = at.date()
    start = end - dt.timedelta(days=days - 1)
    ident = at.strftime("%Y-%m-%dT%H") if hourly else end.isoformat()
    return start, end, ident


def run_drift_check(
    clients: Clients,
    bucket: str,
    card: dict[str, Any],
    at: dt.datetime,
    *,
    days: int = 1,
    topic_arn: str | None = None,
    dataset_drift_share: float = drift.DATASET_DRIFT_SHARE,
) -> dict[str, Any]:
    start, end, ident = window(at, days, hourly=False)
    predictions, outcomes, skipped = read_records(
        clients.s3, bucket, start, end, outcomes_until=end
    )
    served = [
        p
        for p in ab.dedupe_predictions(predictions)
        if not p.shadow and p.model_version == card["version"]
    ]
    truths = ab.latest_outcomes(outcomes)
    report = drift.drift_report(
        card,
        [p.features for p in served],
        predicted=[p.predicted for p in served],
        labelled=[(p.predicted, truths[p.ev_id]) for p in served if p.ev_id in truths],
        dataset_drift_share=dataset_drift_share,
        window={"from": start.isoformat(), "to": end.isoformat(), "id": ident},
    ) | {"skipped_lines": skipped}
    keys = write_report(clients.s3, bucket, "drift", ident, report, drift.markdown(report))
    dims = {"service": SERVICE}
    data = [
        metric("DatasetDrift", float(report["dataset_drift"]), dims),
        metric("DriftRows", report["rows"], dims, "Count"),
    ]
    for name, r in report.get("features", {}).items():
        data.append(metric("DriftScore", r.get("score", 0.0), {"Feature": name, **dims}))
    put_metrics(clients.cloudwatch, NAMESPACE, data)
    sent = False
    if report.get("drift_found") and topic_arn:
        sent = alert_once(
            clients.s3,
            clients.sns,
            bucket,
            keys["alert"],
            topic_arn,
            f"avsev drift: model {card['version']}, {ident}",
            f"Drift found in window {ident}: dataset drift {report['dataset_drift']}, drifted features "
            f"{report['drifted_features']}, prediction drift {report['prediction_drift'].get('drift')}, "
            f"concept drift {report['concept_drift'].get('drift')}. Report: s3://{bucket}/{keys['markdown']}",
        )
    return {"report": report, "keys": keys, "alert_sent": sent}


def run_ab_analysis(
    clients: Clients,
    bucket: str,
    at: dt.datetime,
    *,
    days: int = 7,
    topic_arn: str | None = None,
    champion: str | None = None,
    candidate: str | None = None,
) -> dict[str, Any]:
    start, end, ident = window(at, days, hourly=True)
    predictions, outcomes, skipped = read_records(
        clients.s3, bucket, start, end, outcomes_until=end
    )
    report = ab.ab_report(
        predictions,
        outcomes,
        champion=champion,
        candidate=candidate,
        window={"from": start.isoformat(), "to": end.isoformat(), "id": ident},
    ) | {"skipped_lines": skipped}
    keys = write_report(clients.s3, bucket, "ab", ident, report, ab.markdown(report))
    if report.get("comparison"):
        c = report["comparison"]
        dims = {
            "Champion": str(report["champion"]),
            "Candidate": str(report["candidate"]),
            "service": SERVICE,
        }
        put_metrics(
            clients.cloudwatch,
            NAMESPACE,
            [
                metric("AccuracyDelta", c["accuracy_delta"], dims),
                metric("WeightedF1Delta", c["weighted_f1_delta"], dims),
                metric("AlwaysValidP", c["always_valid_p"], dims),
                metric("RollbackAdvised", float(report["decision"] == "rollback"), dims),
            ],
        )
    sent = False
    if report["decision"] == "rollback" and topic_arn:
        sent = alert_once(
            clients.s3,
            clients.sns,
            bucket,
            keys["alert"],
            topic_arn,
            f"avsev A/B: roll back {report['candidate']}",
            f"The A/B report for {ident} advises rollback of {report['candidate']}: {report['reason']}. "
            f"Run `avsev rollout rollback`. Report: s3://{bucket}/{keys['markdown']}",
        )
    return {"report": report, "keys": keys, "alert_sent": sent}
