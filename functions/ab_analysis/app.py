"""Scheduled A/B analysis: the versions that really served, compared on labelled records."""

from __future__ import annotations

from typing import Any

import boto3
from avsev.constants import SERVICE, Env
from avsev.environment import EnvSettings
from avsev.monitoring.jobs import Clients, run_ab_analysis
from avsev.monitoring.performance import (
    DEFAULT_METRIC,
    check_decision_metric,
    parse_cost_matrix,
)
from avsev.rollout.aliases import Experiment, current_experiment
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.observability import logger
from aws_lambda_powertools.logging import correlation_paths
from pydantic import Field, field_validator


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    topic_arn: str | None = Field(None, validation_alias=Env.ALERTS_TOPIC_ARN)
    days: int = Field(7, validation_alias=Env.AB_WINDOW_DAYS, ge=1)
    predict_function: str | None = Field(None, validation_alias=Env.PREDICT_FUNCTION_NAME)
    metric: str = Field(DEFAULT_METRIC, validation_alias=Env.AB_DECISION_METRIC)
    """log_loss (default), accuracy or expected_cost (with COST_MATRIX)."""
    margin: float | None = Field(None, validation_alias=Env.AB_MARGIN, gt=0)
    cost_matrix: str | None = Field(None, validation_alias=Env.COST_MATRIX)
    service: str = Field(SERVICE, validation_alias=Env.SERVICE_NAME)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        check_decision_metric(value)
        return value

    @field_validator("cost_matrix")
    @classmethod
    def _cost_matrix(cls, value: str | None) -> str | None:
        try:
            parse_cost_matrix(value)
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"not a cost matrix (actual → predicted → cost): {e}") from None
        return value


SETTINGS = Settings.from_env()
COST = parse_cost_matrix(SETTINGS.cost_matrix)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        at = scheduled_time(event, days=SETTINGS.days)
    except EventRejected as e:
        return rejected(e, event)
    clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
    experiment = (
        current_experiment(boto3.client("lambda"), clients.s3, SETTINGS.bucket, SETTINGS.predict_function)
        if SETTINGS.predict_function
        else Experiment()
    )
    out = run_ab_analysis(
        clients,
        SETTINGS.bucket,
        at,
        days=SETTINGS.days,
        decision_metric=SETTINGS.metric,
        margin=SETTINGS.margin,
        service=SETTINGS.service,
        cost=COST,
        topic_arn=SETTINGS.topic_arn,
        champion=experiment.champion,
        candidate=experiment.candidate,
        since=experiment.since,
    )
    report = out.report
    logger.info(
        "ab analysis",
        extra={
            "decision": report.decision,
            "reason": report.reason,
            "alert_sent": out.alert_sent,
        },
    )
    return {
        "decision": report.decision,
        "report": out.keys["json"],
        "alert_sent": out.alert_sent,
    }
