"""The one record format: every prediction, shadow prediction and outcome is one JSON line.

Serving functions print them to stdout (CloudWatch Logs); a subscription filter sends them
through Firehose, which converts them to Parquet by the record tables' schema
(`avsev.monitoring.tables`), to S3 (`predictions/dt=YYYY-MM-DD/`, `outcomes/dt=...`), where
the monitoring queries read them. `parse_records` reads the lines back (tests, tools).

Every timestamp is held in UTC and written in one form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`
(`schema.UtcDateTime`): on validation an offset is converted to UTC and a naive time is taken
as UTC, so a line read back and written again is the same. It is a form Firehose's record
format conversion (OpenX JSON SerDe) reads; one it cannot read would send the whole batch of
records to the error prefix
(https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from avsev.serving.schema import InputWarning, Severity, UtcDateTime

SCHEMA_VERSION = 1
"""Changes only when a reader of the previous version would misread a record. Adding an
optional field does not change it: older readers drop it, and older records read as
without it (`completeness`, `warnings` and the outcomes' `seq` came in version 1 this way:
None on records written before them)."""


class PredictionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    record_type: Literal["prediction"] = "prediction"
    schema_version: int = SCHEMA_VERSION
    request_id: str
    ev_id: str
    timestamp: UtcDateTime
    model_name: str
    model_version: str
    function_version: str
    shadow: bool = False
    features: dict[str, Any]
    probabilities: dict[str, float]
    predicted: Severity
    latency_ms: float
    completeness: float | None = None
    """The answer's completeness (`Prediction.completeness`); None on older records."""
    warnings: list[InputWarning] | None = None
    """The answer's input warnings (`Prediction.warnings`); None on older records."""


class OutcomeRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    record_type: Literal["outcome"] = "outcome"
    schema_version: int = SCHEMA_VERSION
    request_id: str
    ev_id: str
    timestamp: UtcDateTime
    """When the service received it: with `request_id` and `seq`, what orders the outcomes of
    an event (the latest wins, `avsev.monitoring.rollups.LATEST_OUTCOME_ORDER`)."""
    actual_severity: Severity
    observed_at: UtcDateTime | None = None
    """When the client says the severity was established (recorded, not trusted for order)."""
    seq: int | None = None
    """The outcome's position in its request body (0 first); None on older records."""


Record = PredictionRecord | OutcomeRecord


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_line(record: Record) -> str:
    return record.model_dump_json()


_sink: TextIO | None = None


def set_sink(stream: TextIO | None) -> None:
    """Send records somewhere other than stdout (the local stack's log router); None resets."""
    global _sink
    _sink = stream


def emit(records: Iterable[Record], stream: TextIO | None = None) -> None:
    """Write records as JSON lines (stdout in Lambda: one log event each)."""
    out = stream or _sink or sys.stdout
    out.write("".join(to_line(r) + "\n" for r in records))
    out.flush()


def parse_records(lines: Iterable[str]) -> tuple[list[PredictionRecord], list[OutcomeRecord], int]:
    """Records from JSON lines (other log lines and broken ones are skipped and counted)."""
    predictions: list[PredictionRecord] = []
    outcomes: list[OutcomeRecord] = []
    skipped = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
            kind = doc.get("record_type") if isinstance(doc, dict) else None
            if kind == "prediction":
                predictions.append(PredictionRecord.model_validate(doc))
            elif kind == "outcome":
                outcomes.append(OutcomeRecord.model_validate(doc))
            else:
                skipped += 1
        except (json.JSONDecodeError, ValidationError):
            skipped += 1
    return predictions, outcomes, skipped
