"""The retraining loop's decider (see avsev.rollout.lifecycle):

- daily (EventBridge schedule, after the drift check): does the latest drift report, the
  label-free estimate, the model's age or the schedule call for a retraining? If so, and the
  loop is not paused, none is in flight and the cool-down is over, it starts the retraining
  project (CodeBuild);
- on each end of a retraining build (EventBridge "CodeBuild Build State Change"): the run
  ends, or a failed one starts once more, then alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
from avsev.constants import MAX_MODEL_AGE_DAYS, Env
from avsev.environment import EnvSettings
from avsev.rollout.lifecycle import Lifecycle, Policy, build_end, check, codebuild_starter
from avsev.scheduled import EventRejected, rejected, scheduled_time
from avsev.serving.bundle import read_card
from avsev.serving.observability import logger
from aws_lambda_powertools.logging import correlation_paths
from pydantic import DirectoryPath, Field


class Settings(EnvSettings):
    bucket: str = Field(validation_alias=Env.DATA_BUCKET)
    topic_arn: str | None = Field(None, validation_alias=Env.ALERTS_TOPIC_ARN)
    model_bundle_path: DirectoryPath = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    project: str = Field(validation_alias=Env.RETRAIN_PROJECT)
    max_age_days: int = Field(MAX_MODEL_AGE_DAYS, validation_alias=Env.MAX_MODEL_AGE_DAYS, ge=1)
    estimate_drop: float = Field(0.05, validation_alias=Env.ESTIMATE_DROP, gt=0, lt=1)
    cooldown_hours: float = Field(72, validation_alias=Env.RETRAIN_COOLDOWN_HOURS, ge=0)
    every_days: int | None = Field(None, validation_alias=Env.RETRAIN_EVERY_DAYS, ge=1)

    def policy(self) -> Policy:
        return Policy(
            max_age=dt.timedelta(days=self.max_age_days),
            estimate_drop=self.estimate_drop,
            cooldown=dt.timedelta(hours=self.cooldown_hours),
            every=dt.timedelta(days=self.every_days) if self.every_days else None,
        )


SETTINGS = Settings.from_env()
CARD = read_card(SETTINGS.model_bundle_path)


def lifecycle() -> Lifecycle:
    sns = boto3.client("sns")

    def alert(subject: str, message: str) -> None:
        if SETTINGS.topic_arn:
            sns.publish(TopicArn=SETTINGS.topic_arn, Subject=subject[:100], Message=message)

    return Lifecycle(
        boto3.client("s3"),
        SETTINGS.bucket,
        start=codebuild_starter(boto3.client("codebuild"), SETTINGS.project, CARD.version),
        alert=alert,
        policy=SETTINGS.policy(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("detail-type") == "CodeBuild Build State Change":
        end = build_end(event)
        if end is None:
            return {"action": "ignored", "reason": "not the end of a retraining build"}
        decision = lifecycle().finish(end.run_id, ok=end.ok, detail=end.detail)
    else:
        try:
            at = scheduled_time(event, days=1)
        except EventRejected as e:
            return rejected(e, event)
        decision = check(lifecycle(), CARD, at)
    logger.info("lifecycle", extra={"action": decision.action, "reason": decision.reason})
    return {"action": decision.action, "reason": decision.reason}
