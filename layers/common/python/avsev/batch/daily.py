"""The daily run: what arrived under `incoming/` in the last days, scored into one output."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsev.batch.names import INCOMING_PREFIX, OutputName
from avsev.batch.reading import CHUNK_ROWS
from avsev.batch.s3jobs import UNREADABLE_INPUT, publish
from avsev.batch.scoring import Summary, SummaryDoc, score_stream
from avsev.serving.bundle import Bundle


def recent_keys(s3: Any, bucket: str, since: dt.datetime, until: dt.datetime) -> list[str]:
    """The objects under `incoming/` last modified in [since, until], sorted."""
    return sorted(
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=INCOMING_PREFIX
        )
        for o in page.get("Contents", [])
        if since <= o["LastModified"] <= until and not o["Key"].endswith("/")
    )


@dataclass(frozen=True)
class DailyResult:
    """A daily run: its summary (counts and outputs), the files it read, those it could not
    read (each `key: why`), and the run's time."""

    summary: Summary
    files: list[str]
    file_errors: list[str]
    scored_at: str

    def as_dict(self) -> SummaryDoc:
        """The run's `.summary.json` (and what the batch function answers)."""
        doc = self.summary.as_dict()
        doc |= {"files": self.files, "file_errors": self.file_errors, "scored_at": self.scored_at}
        return doc


def run_daily(
    s3: Any,
    bundle: Bundle,
    bucket: str,
    at: str,
    workdir: Path,
    *,
    days: int = 30,
    chunk_rows: int = CHUNK_ROWS,
) -> DailyResult:
    """Score what arrived under incoming/ in the last `days` days into one dated output;
    a file that cannot be read is named in `file_errors`, the others are still scored."""
    when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    keys = recent_keys(s3, bucket, when - dt.timedelta(days=days), when)
    names = OutputName(f"daily-{when.date()}")
    out, rejected = workdir / "daily.csv", workdir / "daily.rejected.csv"
    for path in (out, rejected):
        path.unlink(missing_ok=True)
    total = Summary(
        source=f"s3://{bucket}/{INCOMING_PREFIX} ({len(keys)} files, {days} days)",
        model_version=bundle.version,
    )
    errors = []
    for key in keys:
        try:
            summary, _ = score_stream(
                bundle,
                s3.get_object(Bucket=bucket, Key=key)["Body"],
                key,
                out,
                rejected,
                scored_at=at,
                chunk_rows=chunk_rows,
                append=out.exists(),
            )
            total.add(summary)
        except UNREADABLE_INPUT as e:
            errors.append(f"{key}: {e}")
    keys_out = publish(s3, bucket, out, rejected, names, staging=names.staging(""))
    total.outputs = {k: f"s3://{bucket}/{v}" for k, v in keys_out.items()}
    result = DailyResult(summary=total, files=keys, file_errors=errors, scored_at=at)
    body = json.dumps(result.as_dict(), indent=1).encode()
    s3.put_object(Bucket=bucket, Key=keys_out["summary"], Body=body)
    return result
