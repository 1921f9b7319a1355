"""Scheduled drift check: recent prediction records against the serving card's reference."""

from __future__ import annotations

from typing import Any

import boto3
from avsev.constants import SERVICE, Env
from avsev.environment import EnvSettings
from avsev.monitoring.jobs import Clients, run_drift_check
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.bundle import read_card
from avsev.serving.observability import logger
from aws_lambda_powertools.logging import correlation_paths
from pydantic import DirectoryPath, Field


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    topic_arn: str | None = Field(None, validation_alias=Env.ALERTS_TOPIC_ARN)
    model_bundle_path: DirectoryPath = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    days: int = Field(1, validation_alias=Env.DRIFT_WINDOW_DAYS, ge=1)
    share: float = Field(0.5, validation_alias=Env.DATASET_DRIFT_SHARE, ge=0, le=1)
    """The share of drifted features that makes the dataset drifted."""
    service: str = Field(SERVICE, validation_alias=Env.SERVICE_NAME)


SETTINGS = Settings.from_env()
CARD = read_card(SETTINGS.model_bundle_path)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        at = scheduled_time(event, days=SETTINGS.days)
    except EventRejected as e:
        return rejected(e, event)
    clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
    out = run_drift_check(
        clients,
        SETTINGS.bucket,
        CARD,
        at,
        days=SETTINGS.days,
        topic_arn=SETTINGS.topic_arn,
        dataset_drift_share=SETTINGS.share,
        service=SETTINGS.service,
    )
    report = out.report
    logger.info(
        "drift check",
        extra={
            "dataset_drift": report.dataset_drift,
            "rows": report.rows,
            "drifted": report.drifted_features,
            "alert_sent": out.alert_sent,
        },
    )
    return {
        "dataset_drift": report.dataset_drift,
        "report": out.keys["json"],
        "alert_sent": out.alert_sent,
    }
