"""Scheduled rollout autopilot (every few minutes): one tick of the controller that takes a
candidate through 10% → 50% → 100% on the A/B evidence, or rolls it back (see
avsev.rollout.autopilot). Its state is the alias and the audit; a tick is idempotent."""

from __future__ import annotations

import os
from typing import Any

import boto3
from avsev.rollout.autopilot import autopilot_for
from avsev.rollout.metrics import publish_rollout_metrics
from avsev.serving.observability import NAMESPACE, SERVICE, logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel


class Settings(BaseModel):
    bucket: str
    function: str
    alarm_prefix: str
    topic_arn: str | None = None
    codedeploy_application: str | None = None
    codedeploy_group: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            bucket=os.environ["DATA_BUCKET"],
            function=os.environ["PREDICT_FUNCTION_NAME"],
            alarm_prefix=os.environ["ALARM_PREFIX"],
            topic_arn=os.environ.get("ALERTS_TOPIC_ARN"),
            codedeploy_application=os.environ.get("CODEDEPLOY_APPLICATION"),
            codedeploy_group=os.environ.get("CODEDEPLOY_GROUP"),
        )


SETTINGS = Settings.from_env()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parse(event=event, model=EventBridgeModel)
    cloudwatch = boto3.client("cloudwatch")
    pilot = autopilot_for(
        lambda_client=boto3.client("lambda"),
        s3=boto3.client("s3"),
        bucket=SETTINGS.bucket,
        function=SETTINGS.function,
        cloudwatch=cloudwatch,
        alarm_prefix=SETTINGS.alarm_prefix,
        sns=boto3.client("sns"),
        topic_arn=SETTINGS.topic_arn,
        codedeploy=boto3.client("codedeploy") if SETTINGS.codedeploy_application else None,
        codedeploy_application=SETTINGS.codedeploy_application,
        codedeploy_group=SETTINGS.codedeploy_group,
    )
    out = pilot.tick()
    logger.info("autopilot tick", extra={k: v for k, v in out.items() if k != "audit"})
    try:  # the dashboard's weights and step; a failure here must not undo the tick's work
        publish_rollout_metrics(
            cloudwatch,
            NAMESPACE,
            SETTINGS.function,
            pilot.status(),
            service=SERVICE,
            previous_versions=tuple((out.get("audit") or {}).get("before") or ()),
        )
    except Exception:
        logger.exception("could not put the rollout metrics")
    return {k: v for k, v in out.items() if k in ("state", "reason", "weights", "weight")}
