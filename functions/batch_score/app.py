"""Batch scoring: a file under batch/in/ (S3 event), or the daily run over incoming/.

A file too big for one invocation is scored in parts: when little time is left, the part
is saved and the function invokes itself with a continuation event."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import boto3
from avsev.batch import NotAJob, jobs_from_event, process, run_daily
from avsev.batch.events import Arrivals
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.bundle import load_bundle
from avsev.serving.errors import ErrorDetail
from avsev.serving.observability import logger, metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import DirectoryPath, Field


class Settings(EnvSettings):
    model_bundle_path: DirectoryPath = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    bucket: str = Field("", validation_alias=Env.BATCH_BUCKET)
    """The batch bucket (the daily run lists its incoming/)."""
    chunk_rows: int = Field(20000, validation_alias=Env.BATCH_CHUNK_ROWS, ge=1)
    output_format: Literal["csv", "parquet"] = Field(
        "csv", validation_alias=Env.BATCH_OUTPUT_FORMAT
    )
    daily_days: int = Field(30, validation_alias=Env.BATCH_DAILY_DAYS, ge=1)
    safety_ms: int = Field(60000, validation_alias=Env.BATCH_SAFETY_MS, ge=0)
    """Time left below which the part is saved and the rest continues in a new invocation."""


SETTINGS = Settings.from_env()
BUNDLE = load_bundle(SETTINGS.model_bundle_path, explain=False)  # once per container
SCHEDULED = "Scheduled Event"
"""EventBridge's detail-type of a scheduled event: the daily run (uploads are S3 events)."""
EVENT_SHAPES = (
    "an EventBridge scheduled event, an S3 event (EventBridge 'Object Created', or an S3 "
    "notification, directly or through SQS or SNS) or a continuation"
)


def _daily(event: dict[str, Any], s3: Any, workdir: Path) -> dict[str, Any]:
    try:
        scheduled_time(event, days=SETTINGS.daily_days)
    except EventRejected as e:
        return rejected(e, event)
    return run_daily(
        s3,
        BUNDLE,
        SETTINGS.bucket,
        event["time"],
        workdir,
        days=SETTINGS.daily_days,
        chunk_rows=SETTINGS.chunk_rows,
    ).as_dict()


def _files(event: Any, s3: Any, workdir: Path, context: Any) -> dict[str, Any]:
    """Each file the event announces, scored in turn; a file not finished in this
    invocation goes on in its own (a continuation event)."""
    try:
        jobs, found = jobs_from_event(
            event, parquet=SETTINGS.output_format == "parquet", bucket=SETTINGS.bucket or None
        )
    except NotAJob as e:
        found = Arrivals(unknown=[str(e)])
        jobs = []
    if found.unknown and not jobs:
        error = EventRejected(
            "not an event the batch function reads",
            [
                ErrorDetail(field="event", problem=problem, allowed=EVENT_SHAPES)
                for problem in found.unknown
            ],
        )
        return rejected(error, event)
    if not jobs:
        logger.info(
            "no file under batch/in/ to score; ignored",
            extra={"skipped": found.skipped, "objects": [o.key for o in found.objects]},
        )
        return {"status": "ignored", "skipped": found.skipped}
    summaries = []
    for job in jobs:
        summary, following = process(
            s3,
            BUNDLE,
            job,
            workdir,
            chunk_rows=SETTINGS.chunk_rows,
            keep_going=lambda chunks: context.get_remaining_time_in_millis() > SETTINGS.safety_ms,
        )
        if following is not None:
            boto3.client("lambda").invoke(
                FunctionName=context.invoked_function_arn,
                InvocationType="Event",
                Payload=json.dumps(following.as_event()).encode(),
            )
        _metrics(summary)
        summaries.append(summary)
    if found.unknown:
        logger.error("parts of the event were not read", extra={"unknown": found.unknown})
    return summaries[0] if len(summaries) == 1 else {"status": "ok", "files": summaries}


def _metrics(summary: Mapping[str, Any]) -> None:
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


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s3 = boto3.client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(event, dict) and event.get("detail-type") == SCHEDULED:
            summary = _daily(event, s3, Path(tmp))
            if summary.get("status") != "rejected":
                _metrics(summary)
            return summary
        return _files(event, s3, Path(tmp), context)
