"""The one record format: every prediction, shadow prediction and outcome is one JSON line.

Serving functions print them to stdout (CloudWatch Logs), each written by `lines`, the one
writer of record lines; a subscription filter sends them
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
import fcntl
import functools
import gc
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from avsev import clock
from avsev.serving.schema import (
    REPORT_FIELDS,
    AccidentReport,
    InputWarning,
    Outcome,
    Severity,
    UtcDateTime,
    utc_text,
)

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


@dataclass(frozen=True)
class PredictionRecords:
    """The prediction records of one scoring (one model, one request), column by column: the
    fields of a `PredictionRecord` per row, those all rows share once. `lines` writes them
    without a model object per row; `records()` gives the models."""

    reports: Sequence[AccidentReport]
    """Each row's report: its `ev_id`, and its `fields()` as the record's `features`."""
    request_ids: Sequence[str]
    timestamp: dt.datetime
    model_name: str
    model_version: str
    function_version: str
    shadow: bool
    probabilities: Sequence[dict[str, float]]
    predicted: Sequence[str]
    latency_ms: float
    """Per row: the scoring's latency over its rows."""
    completeness: Sequence[float]
    warnings: Sequence[Sequence[dict[str, Any]]]
    """Each row's warnings, as dicts of `InputWarning`'s fields in its order (as the input
    checks give them)."""
    features: Sequence[dict[str, Any]] | None = None
    """Each report's `fields()`, when the scoring has them already (none: read from the
    reports as they are serialized)."""

    def docs(self) -> list[dict[str, Any]]:
        """One dict per record, its keys in `PredictionRecord`'s order; `features` is the
        report itself (`lines` serializes it as `fields()` gives it)."""
        stamp = utc_text(self.timestamp)  # as the record's serializer writes it, once
        name, version, fv, shadow = (
            self.model_name,
            self.model_version,
            self.function_version,
            self.shadow,
        )
        latency = self.latency_ms
        features = self.reports if self.features is None else self.features
        return [
            {
                "record_type": "prediction",
                "schema_version": SCHEMA_VERSION,
                "request_id": rid,
                "ev_id": r.ev_id,
                "timestamp": stamp,
                "model_name": name,
                "model_version": version,
                "function_version": fv,
                "shadow": shadow,
                "features": f,
                "probabilities": p,
                "predicted": label,
                "latency_ms": latency,
                "completeness": c,
                "warnings": w,
            }
            for r, f, rid, p, label, c, w in zip(
                self.reports,
                features,
                self.request_ids,
                self.probabilities,
                self.predicted,
                self.completeness,
                self.warnings,
                strict=True,
            )
        ]

    def records(self) -> list[PredictionRecord]:
        """The records as validated models (what `parse_records` reads back from `lines`)."""
        return [
            PredictionRecord.model_validate({**d, "features": r.fields()})
            for d, r in zip(self.docs(), self.reports, strict=True)
        ]


_RECORD_START = '},{"record_type":'


@functools.cache
def _not_features(kind: type[AccidentReport]) -> dict[str, Any]:
    """`to_json`'s exclusion of the fields of a report type that are not model inputs
    (`ev_id`, `top_k`) from every record's features (not to be changed: it is shared)."""
    return {"__all__": {"features": set(kind.model_fields) - REPORT_FIELDS}}


def _prediction_lines(batch: PredictionRecords) -> str:
    """`batch` as JSON lines, serialized in one call: the records' array, cut where one record
    ends and the next begins. `},{"record_type":` cannot occur inside a JSON string (every
    quote there is escaped) nor inside a record (its nested objects have no such key); a JSON
    text has no raw newline. A report's fields other than the model's inputs (`ev_id`,
    `top_k`) and its missing values are left out of `features`, as `fields()` leaves them
    (the reports of one scoring are of one type: one request's body model); no other field
    of these records is ever None."""
    if not batch.reports:
        return ""
    # Thousands of small acyclic objects in a batch, freed by reference counting: a cyclic
    # collection in the middle (one per ~700 allocations) would only walk the heap.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if batch.features is None:  # the reports themselves: their other fields left out
            text = pydantic_core.to_json(
                batch.docs(), exclude_none=True, exclude=_not_features(type(batch.reports[0]))
            ).decode()
        else:
            text = pydantic_core.to_json(batch.docs(), exclude_none=True).decode()
    finally:
        if collecting:
            gc.enable()
    return text[1:-1].replace(_RECORD_START, '}\n{"record_type":') + "\n"


def lines(records: Iterable[Record | PredictionRecords]) -> str:
    """The one writer of record lines: each record as one JSON line, ended by a newline,
    byte for byte what its model's `model_dump_json` gives (tests hold them equal). A
    `PredictionRecords` batch is serialized at once, with no model object per row."""
    return "".join(
        _prediction_lines(r) if isinstance(r, PredictionRecords) else r.model_dump_json() + "\n"
        for r in records
    )


def now() -> dt.datetime:
    return clock.now()


def to_line(record: Record) -> str:
    """One record's line (without its newline), as `lines` writes it."""
    return lines([record])[:-1]


def outcome_records(outcomes: Sequence[Outcome], request_id: str) -> list[OutcomeRecord]:
    """One record per outcome, stamped with the time received and its place in the body
    (what orders an event's outcomes: the later in the body wins over the earlier)."""
    stamp = now()
    return [
        OutcomeRecord(
            request_id=request_id,
            ev_id=o.ev_id,
            timestamp=stamp,
            actual_severity=o.actual_severity,
            observed_at=o.observed_at,
            seq=i,
        )
        for i, o in enumerate(outcomes)
    ]


SPOOL_ENV = "RECORDS_SPOOL"
"""The spool file the records extension takes the lines from (`-c records=extension`,
`avsev.serving.records_extension`); unset: the lines go to stdout."""

_sink: TextIO | None = None


def set_sink(stream: TextIO | None) -> None:
    """Send records somewhere other than stdout (the local stack's log router); None resets."""
    global _sink
    _sink = stream


def spool_append(path: str, text: str) -> None:
    """Append whole lines to the spool at `path` in one `write` under an exclusive `flock`.

    The records extension takes the spool by renaming it under the same lock
    (`records_extension.take`): a writer that opened the file before the rename finds, once
    it holds the lock, that `path` is another file (or none) and opens it again, so no line is
    written into a spool already taken, and no line is ever split."""
    data = text.encode()
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue  # taken between open and lock: open the new one
            if current.st_ino != os.fstat(fd).st_ino:
                continue
            written = os.write(fd, data)
            while written < len(data):  # a regular file takes it whole; kept for the contract
                written += os.write(fd, data[written:])
            return
        finally:
            os.close(fd)  # releases the lock


def emit(records: Iterable[Record | PredictionRecords], stream: TextIO | None = None) -> None:
    """Write records as JSON lines (`lines`): to `stream` when given, else to the spool the
    environment names (`RECORDS_SPOOL`, the records extension's), else to the sink or stdout
    (in Lambda: one log event each, which the subscription filter sends to Firehose)."""
    text = lines(records)
    if not text:
        return
    if stream is None:
        spool = os.environ.get(SPOOL_ENV)
        if spool:
            spool_append(spool, text)
            return
    out = stream or _sink or sys.stdout
    out.write(text)
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
