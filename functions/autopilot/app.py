"""The rollout controller, the one owner of alias `live`:

- every few minutes (EventBridge) one tick takes the candidate through 10% → 50% → 100% on the
  A/B evidence, or rolls it back (see avsev.rollout.autopilot); its state is the alias and the
  audit, and a tick is idempotent;
- on each deploy, CloudFormation's custom resource hands it the version the stack published
  (see avsev.rollout.handover): parity check, then the canary starts at 10%; it answers
  CloudFormation on the pre-signed URL whatever happens."""

from __future__ import annotations

from typing import Any

import boto3
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.rollout.autopilot import Autopilot, autopilot_for
from avsev.rollout.handover import handle, send
from avsev.rollout.metrics import publish_rollout_metrics
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.observability import NAMESPACE, SERVICE, logger
from aws_lambda_powertools.logging import correlation_paths
from pydantic import Field, Json


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    function: str = Field(validation_alias=Env.PREDICT_FUNCTION_NAME)
    alarm_prefix: str = Field(validation_alias=Env.ALARM_PREFIX)
    topic_arn: str | None = Field(None, validation_alias=Env.ALERTS_TOPIC_ARN)
    followers: Json[dict[str, str]] = Field(
        default_factory=dict, validation_alias=Env.FOLLOWER_FUNCTIONS
    )


SETTINGS = Settings.from_env()


def pilot() -> Autopilot:
    return autopilot_for(
        lambda_client=boto3.client("lambda"),
        s3=boto3.client("s3"),
        bucket=SETTINGS.bucket,
        function=SETTINGS.function,
        cloudwatch=boto3.client("cloudwatch"),
        alarm_prefix=SETTINGS.alarm_prefix,
        sns=boto3.client("sns"),
        topic_arn=SETTINGS.topic_arn,
        followers=SETTINGS.followers,
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "RequestType" in event and "ResponseURL" in event:
        return handover(event, context)
    return tick(event, context)


@logger.inject_lambda_context(correlation_id_path="RequestId")
def handover(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = handle(event, lambda_client=boto3.client("lambda"), pilot=pilot())
    logger.info("handover", extra={k: response[k] for k in ("Status", "Reason")})
    send(event["ResponseURL"], response)
    return {k: response[k] for k in ("Status", "Reason")}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def tick(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        scheduled_time(event)  # the tick runs on its own clock; the event is checked alike
    except EventRejected as e:
        return rejected(e, event)
    controller = pilot()
    out = controller.tick()
    logger.info("autopilot tick", extra={k: v for k, v in out.items() if k != "audit"})
    try:  # the dashboard's weights and step; a failure here must not undo the tick's work
        publish_rollout_metrics(
            controller.r.cloudwatch,
            NAMESPACE,
            SETTINGS.function,
            controller.status(after_tick=True),
            service=SERVICE,
            previous_versions=tuple((out.get("audit") or {}).get("before") or ()),
        )
    except Exception:
        logger.exception("could not put the rollout metrics")
    return {k: v for k, v in out.items() if k in ("state", "reason", "weights", "weight")}
