"""Batch scoring: a file under batch/in/ (S3 event), or the daily run over incoming/.

A file too big for one invocation is scored in parts: when little time is left, the part
is saved and the function invokes itself with a continuation event."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import boto3
from avsev.batch import job_from_event, process, run_daily
from avsev.serving.bundle import load_bundle
from avsev.serving.observability import logger, metrics

BUNDLE = load_bundle(os.environ["MODEL_BUNDLE_PATH"], explain=False)  # once per container
BUCKET = os.environ.get("BATCH_BUCKET", "")
CHUNK_ROWS = int(os.environ.get("BATCH_CHUNK_ROWS", "20000"))
PARQUET = os.environ.get("BATCH_OUTPUT_FORMAT", "csv") == "parquet"
DAILY_DAYS = int(os.environ.get("BATCH_DAILY_DAYS", "30"))
SAFETY_MS = int(os.environ.get("BATCH_SAFETY_MS", "60000"))


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s3 = boto3.client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        if event.get("detail-type") == "Scheduled Event":
            summary = run_daily(
                s3, BUNDLE, BUCKET, event["time"], Path(tmp), days=DAILY_DAYS, chunk_rows=CHUNK_ROWS
            )
            following = None
        else:
            job = job_from_event(event, parquet=PARQUET)
            if job is None:
                logger.info("not a batch input; ignored", extra={"event": str(event)[:500]})
                return {"status": "ignored"}
            summary, following = process(
                s3,
                BUNDLE,
                job,
                Path(tmp),
                chunk_rows=CHUNK_ROWS,
                keep_going=lambda chunks: context.get_remaining_time_in_millis() > SAFETY_MS,
            )
    if following is not None:
        boto3.client("lambda").invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=json.dumps({"avsev_continuation": following.__dict__}).encode(),
        )
    for name in ("rows_read", "scored", "rejected"):
        if name in summary:
            metrics.add_metric(
                name=f"Batch{name.title().replace('_', '')}", unit="Count", value=summary[name]
            )
    metrics.add_metric(
        name="BatchFailures", unit="Count", value=int(summary.get("status") == "error")
    )
    logger.info("batch summary", extra={"summary": summary})
    return summary
