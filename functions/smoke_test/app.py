"""CodeDeploy pre-traffic hook: the new predict/explain version must reproduce the golden
probabilities of its model card, or the deployment fails before any traffic moves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from avsev.rollout.smoke import lambda_invoker, smoke_test
from avsev.serving.observability import logger

TARGET = os.environ["TARGET_FUNCTION_ARN"]  # the new version, set by the stack on every deploy
ROUTE = os.environ.get("SMOKE_ROUTE", "/predict/batch")
CARD = json.loads((Path(os.environ["MODEL_BUNDLE_PATH"]) / "card.json").read_text())


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    result = smoke_test(lambda_invoker(boto3.client("lambda"), TARGET), CARD, ROUTE)
    status = "Succeeded" if result.passed else "Failed"
    logger.info("smoke test", extra={"target": TARGET, "status": status, **result.__dict__})
    boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return {"status": status}
