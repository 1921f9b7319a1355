"""CodeDeploy pre-traffic hook: the new predict/explain version must reproduce the golden
probabilities of its model card, or the deployment fails before any traffic moves. It
always reports a status: any error (a missing card, a failed invocation) reports `Failed`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from avsev.rollout.smoke import SmokeResult, lambda_invoker, run_hook, smoke_test
from avsev.serving.observability import logger


def check() -> SmokeResult:
    target = os.environ["TARGET_FUNCTION_ARN"]  # the new version, set by the stack on every deploy
    route = os.environ.get("SMOKE_ROUTE", "/predict/batch")
    card = json.loads((Path(os.environ["MODEL_BUNDLE_PATH"]) / "card.json").read_text())
    return smoke_test(lambda_invoker(boto3.client("lambda"), target), card, route)


def report(deployment_id: str, hook_execution_id: str, status: str) -> None:
    boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id,
        lifecycleEventHookExecutionId=hook_execution_id,
        status=status,
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    return {"status": run_hook(event, check, report, logger.info)}
