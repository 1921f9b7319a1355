"""`avsev records redrive`: put records Firehose could not deliver back into their stream.

Firehose writes a failed record under `firehose-errors/<table>/<error type>/dt=…/`, one JSON
document a line whose `rawData` is the record as it arrived, still compressed when the
failure came after decompression (https://docs.aws.amazon.com/firehose/latest/dev/decomp-faq.html).
A compressed CloudWatch Logs payload goes back as is; anything else (JSON lines) is wrapped
in one, so the stream's Decompression and message-extraction processors take it the same
way. An error object is deleted once every record in it was accepted again (the bucket is
versioned: the old version stays for 30 days); with failures it stays, to retry."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from avsev.constants import ERRORS_PREFIX

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
RETRIES = 3
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class RedriveResult:
    objects: int = 0
    records: int = 0
    redelivered: int = 0
    failed: int = 0
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def error_keys(s3: Any, bucket: str, table: str | None = None) -> Iterator[str]:
    prefix = f"{ERRORS_PREFIX}{table}/" if table else ERRORS_PREFIX
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if not o["Key"].endswith("/"):
                yield o["Key"]


def table_of(key: str) -> str:
    """`firehose-errors/<table>/...` → `<table>`."""
    parts = key[len(ERRORS_PREFIX) :].split("/")
    if not key.startswith(ERRORS_PREFIX) or len(parts) < 2 or not parts[0]:
        raise ValueError(f"{key}: not an error object of a record stream")
    return parts[0]


def failed_records(body: bytes) -> list[bytes]:
    """The raw records of one error object (JSON lines with a base64 `rawData`)."""
    records = []
    for line in body.decode("utf-8").splitlines():
        if line.strip():
            records.append(base64.b64decode(json.loads(line)["rawData"]))
    return records


def as_cloudwatch_payload(data: bytes, *, now_ms: int | None = None) -> bytes:
    """A record in the form the stream's processors expect: a gzipped CloudWatch Logs
    DATA_MESSAGE. Already compressed data is such a payload and is returned unchanged."""
    if data[:2] == GZIP_MAGIC:
        return data
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    lines = [ln for ln in data.decode("utf-8").splitlines() if ln.strip()]
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": "avsev-redrive",
        "logGroup": "avsev-redrive",
        "logStream": "redrive",
        "subscriptionFilters": ["redrive"],
        "logEvents": [
            {"id": str(i), "timestamp": now_ms, "message": line} for i, line in enumerate(lines)
        ],
    }
    return gzip.compress(json.dumps(payload).encode())


def _batches(records: list[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for r in records:
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(r) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(r)
        size += len(r)
    if batch:
        yield batch


def put_all(firehose: Any, stream: str, records: list[bytes]) -> int:
    """PutRecordBatch, retrying the records Firehose refused; returns how many still failed."""
    failed = 0
    for batch in _batches(records):
        pending = batch
        for attempt in range(RETRIES):
            answer = firehose.put_record_batch(
                DeliveryStreamName=stream, Records=[{"Data": r} for r in pending]
            )
            if not answer.get("FailedPutCount"):
                pending = []
                break
            pending = [
                r
                for r, res in zip(pending, answer["RequestResponses"], strict=True)
                if res.get("ErrorCode")
            ]
            time.sleep(0.2 * (attempt + 1))
        failed += len(pending)
    return failed


def redrive(
    s3: Any,
    firehose: Any,
    bucket: str,
    streams: dict[str, str],
    *,
    table: str | None = None,
    dry_run: bool = False,
    keep: bool = False,
) -> RedriveResult:
    """Re-deliver every failed record under the error prefix (of one table, or all) to the
    stream of its table (`streams`: table → delivery stream name)."""
    result = RedriveResult(dry_run=dry_run)
    for key in list(error_keys(s3, bucket, table)):
        name = table_of(key)
        if name not in streams:
            raise ValueError(f"{key}: no stream for table {name!r} (known: {sorted(streams)})")
        records = [
            as_cloudwatch_payload(r)
            for r in failed_records(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        ]
        result.objects += 1
        result.records += len(records)
        if dry_run:
            continue
        try:
            failed = put_all(firehose, streams[name], records)
        except firehose.exceptions.ResourceNotFoundException as e:
            raise ValueError(f"stream {streams[name]}: {e}") from e
        result.redelivered += len(records) - failed
        result.failed += failed
        if failed or keep:
            result.kept.append(key)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
            result.deleted.append(key)
    return result
