"""CodeDeploy pre-traffic hook: the new predict/explain version must reproduce the golden
probabilities of its model card, or the deployment fails before any traffic moves. It
always reports a status: any error (a missing setting or card, a failed invocation) reports
`Failed`, so the settings are read inside the check, not at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from avsev.constants import Env
from avsev.environment import EnvSettings
from avsev.rollout.smoke import SmokeResult, lambda_invoker, run_hook, smoke_test
from avsev.serving.bundle import read_card
from avsev.serving.observability import logger
from pydantic import Field

DEPLOYMENT_ID = "DeploymentId"
"""The correlation id of a CodeDeploy lifecycle hook event (a JMESPath into the event)."""


class Settings(EnvSettings):
    target: str = Field(validation_alias=Env.TARGET_FUNCTION_ARN)
    """The new version, set by the stack on every deploy."""
    route: str = Field("/predict/batch", validation_alias=Env.SMOKE_ROUTE)
    model_bundle_path: Path = Field(validation_alias=Env.MODEL_BUNDLE_PATH)


def check() -> SmokeResult:
    settings = Settings.from_env()
    card = read_card(settings.model_bundle_path)
    return smoke_test(lambda_invoker(boto3.client("lambda"), settings.target), card, settings.route)


def report(deployment_id: str, hook_execution_id: str, status: str) -> None:
    boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id,
        lifecycleEventHookExecutionId=hook_execution_id,
        status=status,
    )


@logger.inject_lambda_context(correlation_id_path=DEPLOYMENT_ID)
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    return {"status": run_hook(event, check, report, logger.info)}
