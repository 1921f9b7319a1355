"""Reports from records at hand (a file, a test, the CLI): the records are written as the
record tables (Parquet, day partitions), rolled up by the same SQL in DuckDB, and reported
by the same code as the scheduled jobs."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsev.monitoring import rollups
from avsev.monitoring.jobs import ab_report_of, drift_report_of
from avsev.monitoring.query import DuckDBEngine, write_records_parquet
from avsev.monitoring.reports import ABReport, DriftReport
from avsev.monitoring.rollup_types import DriftRollup
from avsev.monitoring.tables import OUTCOMES, PREDICTIONS, partition
from avsev.serving.card import Card
from avsev.serving.records import SCHEMA_VERSION, Record, to_line
from avsev.serving.schema import SEVERITIES

NO_INJURY = SEVERITIES[-1]
"""The class a sample's rows are taken to be predicted as when no answers are given."""


def write_tables(root: Path, records: Iterable[Record]) -> list[dt.date]:
    """Records as Firehose leaves them: `<table>/dt=<day>/part-0.parquet` by the record's
    own day. Returns the days written."""
    lines: dict[tuple[str, dt.date], list[str]] = defaultdict(list)
    for r in records:
        table = PREDICTIONS if r.record_type == "prediction" else OUTCOMES
        lines[(table, r.timestamp.date())].append(to_line(r))
    for (table, day), chunk in lines.items():
        write_records_parquet(chunk, table, root / table / partition(day) / "part-0.parquet")
    return sorted({day for _, day in lines})


@dataclass(frozen=True)
class OfflineReports:
    ab: ABReport
    drift: DriftReport | None
    """When a card was given."""


def reports_from_records(
    records: Iterable[Record],
    *,
    card: Card | None = None,
    window: Mapping[str, Any] | None = None,
    dataset_drift_share: float | None = None,
    **ab_kwargs: Any,
) -> OfflineReports:
    """The A/B report (and the drift report of `card`'s version, when given) of records held
    here, through the rollup queries in DuckDB."""
    with tempfile.TemporaryDirectory(prefix="avsev-offline-") as folder:
        root = Path(folder)
        days = write_tables(root, records)
        engine = DuckDBEngine.over_folder(root)
        until = max(days) if days else dt.date.today()
        served = [rollups.served_rollup(engine, d) for d in days]
        labels = [rollups.labels_rollup(engine, d, until) for d in days]
        ab = ab_report_of(served, labels, window=window, **ab_kwargs)
        drift = None
        if card is not None:
            reference = card.reference().to_dict()
            docs = [rollups.drift_rollup(engine, reference, d, card.version) for d in days]
            extra = (
                {} if dataset_drift_share is None else {"dataset_drift_share": dataset_drift_share}
            )
            drift = drift_report_of(card, docs, labels, served, window=window, **extra)
        engine.connection.close()
    return OfflineReports(ab, drift)


def drift_reports_of_rows(
    card: Card,
    samples: Sequence[Sequence[Mapping[str, Any]]],
    *,
    predicted: Sequence[Sequence[str]] | None = None,
    **kwargs: Any,
) -> list[DriftReport]:
    """The drift report of each sample of report rows, each taken as one day of predictions
    served by the card's version (the drift evaluation over many seeds: one engine for all).
    `predicted`: each row's predicted class, per sample (the last class, no injury, when not
    given)."""
    docs = drift_rollups_of_rows(card, samples, predicted=predicted)
    return [drift_report_of(card, [doc], [], **kwargs) for doc in docs]


def drift_rollups_of_rows(
    card: Card,
    samples: Sequence[Sequence[Mapping[str, Any]]],
    *,
    predicted: Sequence[Sequence[str]] | None = None,
) -> list[DriftRollup]:
    """The drift rollup of each sample of report rows, as `drift_reports_of_rows` takes each
    sample: one day of predictions served by the card's version, through the drift SQL."""
    first = dt.date(2000, 1, 1)
    with tempfile.TemporaryDirectory(prefix="avsev-offline-") as folder:
        root = Path(folder)
        for i, rows in enumerate(samples):
            day = first + dt.timedelta(days=i)
            lines = [
                json.dumps(
                    {
                        "record_type": "prediction",
                        "schema_version": SCHEMA_VERSION,
                        "request_id": f"s{i}-{j}",
                        "ev_id": f"s{i}-{j}",
                        "timestamp": f"{day.isoformat()}T00:00:00Z",
                        "model_version": card.version,
                        "shadow": False,
                        "features": {
                            k: (v.isoformat() if hasattr(v, "isoformat") else v)
                            for k, v in row.items()
                            if k != "ev_id"
                        },
                        "predicted": predicted[i][j] if predicted else NO_INJURY,
                        "latency_ms": 0.0,
                    }
                )
                for j, row in enumerate(rows)
            ]
            write_records_parquet(
                lines, PREDICTIONS, root / PREDICTIONS / partition(day) / "part-0.parquet"
            )
        engine = DuckDBEngine.over_folder(root)
        reference = card.reference().to_dict()
        docs = [
            rollups.drift_rollup(engine, reference, first + dt.timedelta(days=i), card.version)
            for i in range(len(samples))
        ]
        engine.connection.close()
    return docs
