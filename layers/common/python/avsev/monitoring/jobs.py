"""The scheduled jobs, given their AWS clients and a query engine: roll up the records in SQL
(`run_rollup`), then sum the rollups of a window into a report, write it, publish metrics,
alert once (`run_ab_analysis`, `run_drift_check`). No job reads a raw record. The Lambda
functions, the local stack and the CLI call these."""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsev.constants import AB_REPORTS, DRIFT_REPORTS, METRICS_NAMESPACE, SERVICE
from avsev.monitoring import ab, drift, rollups, store
from avsev.monitoring.performance import (
    DEFAULT_METRIC,
    Recalibration,
    calibration_check,
    expected_performance,
)
from avsev.monitoring.query import Engine, local_engine
from avsev.monitoring.reports import ABReport, DriftReport, PerformanceWithoutLabels, WindowGaps
from avsev.monitoring.rollup_types import (
    DriftRollup,
    LabelRow,
    LabelsRollup,
    R,
    RollupError,
    ServedRollup,
    ServedRow,
)
from avsev.monitoring.store import alert_once, metric, put_metrics, write_report
from avsev.serving.card import Card

NAMESPACE = METRICS_NAMESPACE
# SERVICE is the metrics' `service` dimension by default; deployed jobs pass their stack's name
# (POWERTOOLS_SERVICE_NAME), so one stage's metrics never move another's alarms.


@dataclass(frozen=True)
class Clients:
    s3: Any
    cloudwatch: Any
    sns: Any
    lambda_: Any = None


@dataclass(frozen=True)
class RollupResult:
    """What a rollup run did: the rollups it (re)wrote, the record objects the engine could
    not read, the bytes it scanned (Athena; None for DuckDB)."""

    computed: list[str]
    skipped_objects: list[dict[str, str]]
    bytes_scanned: int | None
    refused: list[dict[str, str]]
    """Stored rollups that were not rollups of their kind (each `{"object", "reason"}`):
    computed again when due, as if missing."""


@dataclass(frozen=True)
class ABResult:
    """An A/B run: its report, where it was written (`store.report_keys`), whether it alerted."""

    report: ABReport
    keys: dict[str, str]
    alert_sent: bool


@dataclass(frozen=True)
class DriftResult:
    """A drift check: its report, where it was written (`store.report_keys`), whether it
    alerted."""

    report: DriftReport
    keys: dict[str, str]
    alert_sent: bool


def window(at: dt.datetime, days: int, *, hourly: bool) -> tuple[dt.date, dt.date, str]:
    """The days a run covers, ending on the scheduled time's day, and its id (the key)."""
    end = at.date()
    start = end - dt.timedelta(days=days - 1)
    ident = at.strftime("%Y-%m-%dT%H") if hourly else end.isoformat()
    return start, end, ident


def window_days(at: dt.datetime, days: int) -> list[dt.date]:
    start, end, _ = window(at, days, hourly=False)
    return list(store.days(start, end))


def run_rollup(
    engine: Engine,
    s3: Any,
    bucket: str,
    card: Card | None,
    at: dt.datetime,
    *,
    days: int = 7,
) -> RollupResult:
    """Compute the rollups of the days a report window can cover that are missing or not
    final yet (see avsev.monitoring.rollups for which and how often). The engine does the
    scanning; this process holds one day's aggregates at a time. A stored rollup that is not
    one of its kind is computed again as if missing (and named in `refused`)."""
    computed: list[str] = []
    refused: list[dict[str, str]] = []
    for day in window_days(at, days):
        todo: list[tuple[str, type[Any], Callable[[], Any], bool]] = [
            (
                rollups.rollup_key("served", day),
                ServedRollup,
                functools.partial(rollups.served_rollup, engine, day),
                True,
            ),
            (
                rollups.rollup_key("labels", day),
                LabelsRollup,
                functools.partial(rollups.labels_rollup, engine, day, at.date()),
                False,
            ),
        ]
        if card is not None:
            todo.append(
                (
                    rollups.rollup_key("drift", day, card.version),
                    DriftRollup,
                    functools.partial(
                        rollups.drift_rollup,
                        engine,
                        card.reference().to_dict(),
                        day,
                        card.version,
                    ),
                    True,
                )
            )
        for key, kind, compute, prediction_side in todo:
            try:
                existing = rollups.read_rollup(s3, bucket, key, kind)
            except RollupError as e:
                refused.append(e.skipped())
                existing = None
            due = (rollups.needs_served if prediction_side else rollups.needs_labels)(
                existing, day, at
            )
            if not due:
                continue
            skipped = [o for o in engine.skipped.objects if f"dt={day.isoformat()}/" in o["object"]]
            rollup = compute().stamped(at.isoformat(), day.isoformat(), skipped)
            rollups.write_rollup(s3, bucket, key, rollup)
            computed.append(key)
    return RollupResult(
        computed=computed,
        skipped_objects=engine.skipped.objects,
        bytes_scanned=getattr(engine, "bytes_scanned", None),
        refused=refused,
    )


def _read_window(
    s3: Any, bucket: str, kind: type[R], days: list[dt.date], version: str | None = None
) -> tuple[list[R], WindowGaps]:
    """The rollups of a window, and what the report must say it lacked or skipped (a stored
    rollup refused as not one of its kind counts as lacking, and is named with why)."""
    docs: list[R] = []
    missing: list[str] = []
    skipped: list[dict[str, str]] = []
    for day in days:
        try:
            doc = rollups.read_rollup(s3, bucket, rollups.rollup_key(kind.KIND, day, version), kind)
        except RollupError as e:
            doc = None
            skipped.append(e.skipped())
        if doc is None:
            missing.append(day.isoformat())
            continue
        docs.append(doc.on_day(day.isoformat()))
        skipped += doc.skipped_objects or []
    return docs, WindowGaps(days_without_rollup=missing, skipped_objects=skipped)


def experiment_start(since: dt.datetime) -> dt.datetime:
    """Where an experiment's evidence begins: the start of the hour its step began in (the
    rollups count by the prediction's hour)."""
    return since.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _in_experiment(day: str | None, hour: int | None, since: dt.datetime) -> bool:
    """Is a rollup row's hour (of the rollup's day) in the experiment? A row of a rollup
    without hours (written before they were kept) counts from the step's day on."""
    if day is None:
        return True
    begins = experiment_start(since)
    if hour is None:
        return dt.date.fromisoformat(day) >= begins.date()
    at = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(hours=hour)
    return at >= begins


def _rows_since(
    docs: Iterable[ServedRollup | LabelsRollup], since: dt.datetime | None
) -> Iterable[Any]:
    for d in docs:
        for r in d.rows:
            if since is None or _in_experiment(d.day, r.hour, since):
                yield r


def ab_report_of(
    served: list[ServedRollup],
    labels: list[LabelsRollup],
    *,
    since: dt.datetime | None = None,
    **kwargs: Any,
) -> ABReport:
    """The A/B report of a window's `served` and `labels` rollups; with `since` (when the
    rollout's current step began), only the rows predicted from that hour on: the experiment's
    evidence accumulates from its start and is never a sliding window."""
    served_rows: list[ServedRow] = list(_rows_since(served, since))
    label_rows: list[LabelRow] = list(_rows_since(labels, since))
    return ab.ab_report(ab.ab_counts(served_rows, label_rows), **kwargs)


def drift_report_of(
    card: Card,
    docs: list[DriftRollup],
    labels: list[LabelsRollup],
    served: list[ServedRollup] | None = None,
    **kwargs: Any,
) -> DriftReport:
    """The drift report of a window's `drift` rollups (the card's version), with concept drift
    from its `labels` rollups and the label-free performance estimate from its `served`
    rollups, checked against labels where they exist."""
    counts_by_version = ab.ab_counts(
        [r for d in served or [] for r in d.rows], [r for d in labels for r in d.rows]
    ).versions
    version = counts_by_version.get(card.version)
    counts = drift.drift_counts(docs, version.confusion if version else None)
    report = drift.drift_report(card, counts, **kwargs)
    if version is not None and report.status == "checked":
        card_ece = card.calibration.top_label_ece if card.calibration else None
        recalibration = Recalibration.from_card(card)
        estimate = expected_performance(
            version.requests,
            version.p_max_sum,
            version.entropy_sum,
            version.expected,
            recalibration,
        )
        report.performance_without_labels = PerformanceWithoutLabels(
            **estimate.model_dump(exclude_unset=True),
            calibration_check=calibration_check(version.confidence_bins, card_ece, recalibration),
        )
    return report


def run_drift_check(
    clients: Clients,
    bucket: str,
    card: Card,
    at: dt.datetime,
    *,
    days: int = 1,
    topic_arn: str | None = None,
    dataset_drift_share: float = drift.DATASET_DRIFT_SHARE,
    service: str = SERVICE,
) -> DriftResult:
    start, end, ident = window(at, days, hourly=False)
    span = list(store.days(start, end))
    docs, gaps = _read_window(clients.s3, bucket, DriftRollup, span, card.version)
    label_docs, _ = _read_window(clients.s3, bucket, LabelsRollup, span)
    served_docs, _ = _read_window(clients.s3, bucket, ServedRollup, span)
    report = drift_report_of(
        card,
        docs,
        label_docs,
        served_docs,
        dataset_drift_share=dataset_drift_share,
        window={"from": start.isoformat(), "to": end.isoformat(), "id": ident},
    )
    report.skipped = gaps
    keys = write_report(clients.s3, bucket, DRIFT_REPORTS, ident, report, drift.markdown(report))
    dims = {"service": service}
    data = [
        metric("DatasetDrift", float(report.dataset_drift), dims),
        metric("DriftRows", report.rows, dims, "Count"),
    ]
    for name, r in (report.features or {}).items():
        data.append(metric("DriftScore", r.score or 0.0, {"Feature": name, **dims}))
    put_metrics(clients.cloudwatch, NAMESPACE, data)
    sent = False
    if report.drift_found and topic_arn:
        sent = alert_once(
            clients.s3,
            clients.sns,
            bucket,
            keys["alert"],
            topic_arn,
            f"avsev drift: model {card.version}, {ident}",
            f"Drift found in window {ident}: dataset drift {report.dataset_drift}, drifted features "
            f"{report.drifted_features}, prediction drift {report.prediction_drift and report.prediction_drift.drift}, "
            f"concept drift {report.concept_drift and report.concept_drift.drift}. Report: s3://{bucket}/{keys['markdown']}",
        )
    return DriftResult(report=report, keys=keys, alert_sent=sent)


def run_ab_analysis(
    clients: Clients,
    bucket: str,
    at: dt.datetime,
    *,
    days: int = 7,
    topic_arn: str | None = None,
    champion: str | None = None,
    candidate: str | None = None,
    decision_metric: str = DEFAULT_METRIC,
    cost: Any = None,
    margin: float | None = None,
    service: str = SERVICE,
    since: dt.datetime | None = None,
) -> ABResult:
    """The hourly A/B report. With `since` (when the rollout's current step began, from the
    audit) the evidence is the experiment's: every labelled prediction from that hour on,
    however long ago; without, the last `days` days (no rollout: the versions that served)."""
    start, end, ident = window(at, days, hourly=True)
    described: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "id": ident}
    if since is not None:
        start = min(experiment_start(since).date(), end)
        described = {
            "from": experiment_start(since).isoformat(),
            "to": at.isoformat(timespec="seconds"),
            "id": ident,
            "evidence": "since the rollout's current step began",
        }
    span = list(store.days(start, end))
    served, gaps = _read_window(clients.s3, bucket, ServedRollup, span)
    labels, label_gaps = _read_window(clients.s3, bucket, LabelsRollup, span)
    report = ab_report_of(
        served,
        labels,
        champion=champion,
        candidate=candidate,
        metric=decision_metric,
        cost=cost,
        margin=margin,
        since=since,
        window=described,
    )
    report.as_of = at.isoformat(timespec="seconds")
    report.skipped = WindowGaps(
        days_without_rollup=gaps.days_without_rollup,
        skipped_objects=gaps.skipped_objects
        + [s for s in label_gaps.skipped_objects if s not in gaps.skipped_objects],
        days_without_label_rollup=label_gaps.days_without_rollup,
    )
    keys = write_report(clients.s3, bucket, AB_REPORTS, ident, report, ab.markdown(report))
    if report.comparison:
        c = report.comparison
        dims = {
            "Champion": str(report.champion),
            "Candidate": str(report.candidate),
            "service": service,
        }
        put_metrics(
            clients.cloudwatch,
            NAMESPACE,
            [
                metric("AccuracyDelta", c.accuracy_delta, dims),
                metric("WeightedF1Delta", c.weighted_f1_delta, dims),
                metric("AlwaysValidP", c.always_valid_p, dims),
                metric("RollbackAdvised", float(report.decision == "rollback"), dims),
            ],
        )
    sent = False
    if report.decision == "rollback" and topic_arn:
        sent = alert_once(
            clients.s3,
            clients.sns,
            bucket,
            keys["alert"],
            topic_arn,
            f"avsev A/B: roll back {report.candidate}",
            f"The A/B report for {ident} advises rollback of {report.candidate}: {report.reason}. "
            f"Run `avsev rollout rollback`. Report: s3://{bucket}/{keys['markdown']}",
        )
    return ABResult(report=report, keys=keys, alert_sent=sent)


def rollup_with_duckdb(
    s3: Any, bucket: str, card: Card | None, at: dt.datetime, *, days: int = 7
) -> RollupResult:
    """The rollup job with DuckDB as its engine (the local stack, the CLI): the window's
    record objects are copied from S3 with boto3 to a temporary folder first."""
    with tempfile.TemporaryDirectory(prefix="avsev-records-") as folder:
        engine = local_engine(s3, bucket, window_days(at, days), folder=Path(folder))
        try:
            return run_rollup(engine, s3, bucket, card, at, days=days)
        finally:
            engine.connection.close()
