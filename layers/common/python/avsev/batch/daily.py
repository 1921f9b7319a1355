"""The daily run: what arrived under `incoming/` in the last days, scored into one output."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from avsev.batch.names import INCOMING_PREFIX, OutputName
from avsev.batch.reading import CHUNK_ROWS
from avsev.batch.s3jobs import UNREADABLE_INPUT, publish
from avsev.batch.scoring import Summary, score_stream
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


def run_daily(
    s3: Any,
    bundle: Bundle,
    bucket: str,
    at: str,
    workdir: Path,
    *,
    days: int = 30,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
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
    doc = total.as_dict() | {"files": keys, "file_errors": errors, "scored_at": at}
    s3.put_object(Bucket=bucket, Key=keys_out["summary"], Body=json.dumps(doc, indent=1).encode())
    return doc
