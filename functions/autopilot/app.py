"""Scheduled rollout autopilot (every few minutes): one tick of the controller that takes a
candidate through 10% → 50% → 100% on the A/B evidence, or rolls it back (see
avsev.rollout.autopilot). Its state is the alias and the audit; a tick is idempotent."""

from __future__ import annotations

from typing import Any

import boto3
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.rollout.autopilot import autopilot_for
from avsev.rollout.metrics import publish_rollout_metrics
from avsev.serving.observability import NAMESPACE, SERVICE, logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import Field


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    function: str = Field(validation_alias=Env.PREDICT_FUNCTION_NAME)
    alarm_prefix: str = Field(validation_alias=Env.ALARM_PREFIX)
    topic_arn: str | None = Field(None, validation_alias=Env.ALERTS_TOPIC_ARN)
    codedeploy_application: str | None = Field(None, validation_alias=Env.CODEDEPLOY_APPLICATION)
    codedeploy_group: str | None = Field(None, validation_alias=Env.CODEDEPLOY_GROUP)


SETTINGS = Settings.from_env()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
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
