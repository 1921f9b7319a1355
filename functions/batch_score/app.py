"""Batch scoring: a file under batch/in/ (S3 event), or the daily run over incoming/.

A file too big for one invocation is scored in parts: when little time is left, the part
is saved and the function invokes itself with a continuation event."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import boto3
from avsev.batch import job_from_event, process, run_daily
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.serving.bundle import load_bundle
from avsev.serving.observability import logger, metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import DirectoryPath, Field


class Settings(EnvSettings):
    model_bundle_path: DirectoryPath = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    bucket: str = Field("", validation_alias=Env.BATCH_BUCKET)
    """The batch bucket (the daily run lists its incoming/)."""
    chunk_rows: int = Field(20000, validation_alias="BATCH_CHUNK_ROWS", ge=1)
    output_format: Literal["csv", "parquet"] = Field("csv", validation_alias="BATCH_OUTPUT_FORMAT")
    daily_days: int = Field(30, validation_alias="BATCH_DAILY_DAYS", ge=1)
    safety_ms: int = Field(60000, validation_alias="BATCH_SAFETY_MS", ge=0)
    """Time left below which the part is saved and the rest continues in a new invocation."""


SETTINGS = Settings.from_env()
BUNDLE = load_bundle(SETTINGS.model_bundle_path, explain=False)  # once per container
SCHEDULED = "Scheduled Event"
"""EventBridge's detail-type of a scheduled event: the daily run (uploads are S3 events)."""


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s3 = boto3.client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        if event.get("detail-type") == SCHEDULED:
            summary = run_daily(
                s3,
                BUNDLE,
                SETTINGS.bucket,
                event["time"],
                Path(tmp),
                days=SETTINGS.daily_days,
                chunk_rows=SETTINGS.chunk_rows,
            )
            following = None
        else:
            job = job_from_event(event, parquet=SETTINGS.output_format == "parquet")
            if job is None:
                logger.info("not a batch input; ignored", extra={"event": str(event)[:500]})
                return {"status": "ignored"}
            summary, following = process(
                s3,
                BUNDLE,
                job,
                Path(tmp),
                chunk_rows=SETTINGS.chunk_rows,
                keep_going=lambda chunks: (
                    context.get_remaining_time_in_millis() > SETTINGS.safety_ms
                ),
            )
    if following is not None:
        boto3.client("lambda").invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=json.dumps(following.as_event()).encode(),
        )
    for name in ("rows_read", "scored", "rejected"):
        if name in summary:
            metrics.add_metric(
                name=f"Batch{name.title().replace('_', '')}",
                unit=MetricUnit.Count,
                value=summary[name],
            )
    metrics.add_metric(
        name="BatchFailures", unit=MetricUnit.Count, value=int(summary.get("status") == "error")
    )
    logger.info("batch summary", extra={"summary": summary})
    return summary
