"""Scheduled rollup (hourly): the records of the report windows aggregated in SQL by Athena
into small per-day rollups, which the A/B and drift jobs sum. No record enters this function."""

from __future__ import annotations

from typing import Any

import boto3
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.monitoring.jobs import run_rollup
from avsev.monitoring.query import AthenaEngine
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.bundle import read_card
from avsev.serving.observability import logger
from aws_lambda_powertools.logging import correlation_paths
from pydantic import DirectoryPath, Field


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    workgroup: str = Field(validation_alias=Env.ATHENA_WORKGROUP)
    database: str = Field(validation_alias=Env.GLUE_DATABASE)
    model_bundle_path: DirectoryPath = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    days: int = Field(7, validation_alias=Env.ROLLUP_WINDOW_DAYS, ge=1)


SETTINGS = Settings.from_env()
CARD = read_card(SETTINGS.model_bundle_path)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        at = scheduled_time(event, days=SETTINGS.days)
    except EventRejected as e:
        return rejected(e, event)
    engine = AthenaEngine(boto3.client("athena"), SETTINGS.workgroup, SETTINGS.database)
    out = run_rollup(
        engine,
        boto3.client("s3"),
        SETTINGS.bucket,
        CARD,
        at,
        days=SETTINGS.days,
    )
    logger.info(
        "rollup",
        extra={
            "computed": len(out.computed),
            "bytes_scanned": out.bytes_scanned,
            "skipped_objects": out.skipped_objects,
            "refused_rollups": out.refused,
        },
    )
    return {"computed": out.computed, "bytes_scanned": out.bytes_scanned}
