"""Scheduled rollup (hourly): the records of the report windows aggregated in SQL by Athena
into small per-day rollups, which the A/B and drift jobs sum. No record enters this function."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from avsev.monitoring.jobs import run_rollup
from avsev.monitoring.query import AthenaEngine
from avsev.serving.observability import logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel


class Settings(BaseModel):
    bucket: str
    workgroup: str
    database: str
    days: int = 7
    card: dict[str, Any]

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            bucket=os.environ["DATA_BUCKET"],
            workgroup=os.environ["ATHENA_WORKGROUP"],
            database=os.environ["GLUE_DATABASE"],
            days=int(os.environ.get("ROLLUP_WINDOW_DAYS", "7")),
            card=json.loads((Path(os.environ["MODEL_BUNDLE_PATH"]) / "card.json").read_text()),
        )


SETTINGS = Settings.from_env()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    engine = AthenaEngine(boto3.client("athena"), SETTINGS.workgroup, SETTINGS.database)
    out = run_rollup(
        engine,
        boto3.client("s3"),
        SETTINGS.bucket,
        SETTINGS.card,
        scheduled.time,
        days=SETTINGS.days,
    )
    logger.info(
        "rollup",
        extra={
            "computed": len(out["computed"]),
            "bytes_scanned": out["bytes_scanned"],
            "skipped_objects": out["skipped_objects"],
        },
    )
    return {"computed": out["computed"], "bytes_scanned": out["bytes_scanned"]}
