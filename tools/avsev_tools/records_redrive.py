"""`avsev records redrive`: put the records Firehose could not deliver into their tables.

Firehose writes a record that failed under `firehose-errors/<table>/<error type>/dt=…/`, one
JSON document a line whose `rawData` is the record as it arrived: the gzipped CloudWatch Logs
payload of one subscription delivery (https://docs.aws.amazon.com/firehose/latest/dev/decomp-faq.html),
or JSON lines. The records cannot go back through their stream: with CloudWatch Logs
decompression on, Firehose takes records from CloudWatch Logs only, and a PutRecord or
PutRecordBatch from anyone else is refused with InvalidSourceException ("Only requests from
CloudWatch Logs are supported when CloudWatch Logs decompression is enabled",
https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html#API_PutRecordBatch_Errors).
So the redrive does what the stream would have done, in the table's own format:

1. reads each error object and extracts the record lines of each failed record
   (`avsev.monitoring.firehose.extract_messages`);
2. validates each line with the one record format (`PredictionRecord` / `OutcomeRecord`) and
   writes it again with `to_line`, its timestamps in UTC (the table's timestamp columns take
   UTC forms only: an offset is what fails the conversion), then converts it by the table's
   schema with the stream's rules (`avsev.monitoring.firehose.convert_message`);
3. writes the rows as Parquet (`write_records_parquet`), one object per day of the records'
   `timestamp` into `<table>/dt=YYYY-MM-DD/`, named after the error object's key and
   version (ETag where the bucket keeps no versions): a second run, or a run after one that
   stopped half way, finds the object there and writes nothing twice;
4. deletes the error object (the bucket is versioned: the old version stays 30 days). When
   some lines still cannot be taken, the error object is replaced by one that holds exactly
   those lines (JSON lines in `rawData`, with the reason; left as it is when no line of it
   was taken), and they are reported: nothing is lost, and nothing delivered stays behind to
   be delivered twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsev.constants import ERRORS_PREFIX
from avsev.monitoring.firehose import (
    MALFORMED_DATA,
    PARSE_ERROR,
    ConversionError,
    convert_message,
    error_document,
    extract_messages,
    row_line,
)
from avsev.monitoring.query import write_records_parquet
from avsev.monitoring.tables import OUTCOMES, PREDICTIONS, TABLES, partition
from avsev.serving.records import OutcomeRecord, PredictionRecord, Record, to_line
from pydantic import ValidationError

RECORD_MODELS: dict[str, type[PredictionRecord] | type[OutcomeRecord]] = {
    PREDICTIONS: PredictionRecord,
    OUTCOMES: OutcomeRecord,
}
REDRIVE_FAILED = "avsev.Redrive.Rejected"
"""The error code of a line the redrive could not take (a record the format rejects)."""
MAX_REASONS = 10


@dataclass
class RedriveResult:
    objects: int = 0
    lines: int = 0
    """Record lines found in the error objects."""
    written: int = 0
    """Rows now in the tables (in objects this run wrote or found written before)."""
    failed: int = 0
    """Lines that could not be taken: kept in their error object."""
    reasons: list[str] = field(default_factory=list)
    """The first reasons lines were not taken."""
    written_objects: list[str] = field(default_factory=list)
    existing_objects: list[str] = field(default_factory=list)
    """Objects a previous run had written already (not written again)."""
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def reject(self, reason: str) -> None:
        self.failed += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)


def error_keys(s3: Any, bucket: str, table: str | None = None) -> Iterator[str]:
    prefix = f"{ERRORS_PREFIX}{table}/" if table else ERRORS_PREFIX
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if not o["Key"].endswith("/"):
                yield o["Key"]


def table_of(key: str) -> str:
    """`firehose-errors/<table>/...` → `<table>` (a record table)."""
    parts = key[len(ERRORS_PREFIX) :].split("/")
    if not key.startswith(ERRORS_PREFIX) or len(parts) < 2 or not parts[0]:
        raise ValueError(f"{key}: not an error object of a record stream")
    if parts[0] not in TABLES:
        raise ValueError(f"{key}: no record table {parts[0]!r} (known: {sorted(TABLES)})")
    return parts[0]


def failed_lines(body: bytes) -> list[tuple[str, int]]:
    """The record lines of one error object (JSON lines with a base64 `rawData`), each with
    the time its record reached Firehose (`arrivalTimestamp`, ms)."""
    lines: list[tuple[str, int]] = []
    for line in body.decode("utf-8").splitlines():
        if line.strip():
            document = json.loads(line)
            arrival = int(document.get("arrivalTimestamp") or 0)
            raw = base64.b64decode(document["rawData"])
            lines.extend((message, arrival) for message in extract_messages(raw))
    return lines


def in_utc(record: Record) -> Record:
    """The record with its timestamps in UTC (a naive one is taken as UTC)."""
    update = {}
    for name in ("timestamp", "observed_at"):
        value = getattr(record, name, None)
        if isinstance(value, dt.datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            update[name] = aware.astimezone(dt.UTC)
    return record.model_copy(update=update)


def take(line: str, table: str) -> tuple[dt.date, str]:
    """A record line → (its day, the converted row line); ValueError saying why not."""
    try:
        doc = json.loads(line)
    except ValueError:
        raise ConversionError(PARSE_ERROR, f"not JSON: {line[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ConversionError(MALFORMED_DATA, "not a JSON object")
    model = RECORD_MODELS[table]
    try:
        record = in_utc(model.model_validate(doc))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"{model.__name__}: {where}: {first['msg']}") from None
    row = convert_message(to_line(record), table)
    return record.timestamp.date(), row_line(row)


def object_name(key: str, version: str) -> str:
    """The Parquet object a redrive of this error object version writes (per day)."""
    digest = hashlib.sha256(f"{key}\n{version}".encode()).hexdigest()[:24]
    return f"avsev-redrive-{digest}.parquet"


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def redrive(
    s3: Any, bucket: str, *, table: str | None = None, dry_run: bool = False
) -> RedriveResult:
    """Put every record under the error prefix (of one table, or all) into its table."""
    result = RedriveResult(dry_run=dry_run)
    for key in list(error_keys(s3, bucket, table)):
        try:
            name = table_of(key)
            got = s3.get_object(Bucket=bucket, Key=key)
            version = got.get("VersionId") or got.get("ETag", "").strip('"')
            lines = failed_lines(got["Body"].read())
        except (ValueError, KeyError, OSError, EOFError) as e:
            # not an error object of a record stream, or one that cannot be read: kept
            result.objects += 1
            result.reject(f"{key}: cannot be read as a Firehose error object: {e}")
            result.kept.append(key)
            continue
        result.objects += 1
        result.lines += len(lines)
        days: dict[dt.date, list[str]] = {}
        rejected: list[tuple[str, int, str]] = []
        for line, arrival in lines:
            try:
                day, row = take(line, name)
            except ValueError as e:
                rejected.append((line, arrival, str(e)))
                result.reject(f"{key}: {e}")
                continue
            days.setdefault(day, []).append(row)
        if dry_run:
            result.written += sum(len(rows) for rows in days.values())
            continue
        for day, rows in sorted(days.items()):
            target = f"{name}/{partition(day)}/{object_name(key, version)}"
            if _exists(s3, bucket, target):
                result.existing_objects.append(target)
            else:
                with tempfile.TemporaryDirectory(prefix="avsev-redrive-") as folder:
                    path = Path(folder) / "rows.parquet"
                    write_records_parquet(rows, name, path)
                    s3.upload_file(str(path), bucket, target)
                result.written_objects.append(target)
            result.written += len(rows)
        if rejected and not days:
            result.kept.append(key)  # nothing taken from it: it stays as it is
        elif rejected:
            now = int(time.time() * 1000)
            body = "".join(
                error_document(
                    line.encode(), REDRIVE_FAILED, reason, arrival_ms=arrival, ended_ms=now
                )
                + "\n"
                for line, arrival, reason in rejected
            )
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
            result.kept.append(key)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
            result.deleted.append(key)
    return result
