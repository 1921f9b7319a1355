"""Scheduled A/B analysis: the versions that really served, compared on labelled records."""

from __future__ import annotations

import os
from typing import Any

import boto3
from avsev.monitoring.jobs import Clients, run_ab_analysis
from avsev.monitoring.performance import DEFAULT_METRIC, METRICS, parse_cost_matrix
from avsev.rollout.aliases import Rollouts
from avsev.serving.observability import logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

BUCKET = os.environ["DATA_BUCKET"]
TOPIC = os.environ.get("ALERTS_TOPIC_ARN")
DAYS = int(os.environ.get("AB_WINDOW_DAYS", "7"))
PREDICT_FUNCTION = os.environ.get("PREDICT_FUNCTION_NAME")
METRIC = os.environ.get("AB_DECISION_METRIC", DEFAULT_METRIC)
"""log_loss (default), accuracy, macro_f1 or expected_cost (with COST_MATRIX)."""
COST = parse_cost_matrix(os.environ.get("COST_MATRIX"))
if METRIC not in METRICS:
    raise ValueError(f"AB_DECISION_METRIC={METRIC!r}: one of {', '.join(METRICS)}")


def _arms() -> tuple[str | None, str | None]:
    """Champion and candidate model versions from the alias, when there is a rollout."""
    if not PREDICT_FUNCTION:
        return None, None
    state = Rollouts(boto3.client("lambda"), PREDICT_FUNCTION).state()
    if state.candidate_version is None:
        return None, None
    return state.model_versions.get(state.stable_version), state.model_versions.get(
        state.candidate_version
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    champion, candidate = _arms()
    clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
    out = run_ab_analysis(
        clients,
        BUCKET,
        scheduled.time,
        days=DAYS,
        decision_metric=METRIC,
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "avsev"),
        cost=COST,
        topic_arn=TOPIC,
        champion=champion,
        candidate=candidate,
    )
    report = out["report"]
    logger.info(
        "ab analysis",
        extra={
            "decision": report.decision,
            "reason": report.reason,
            "alert_sent": out["alert_sent"],
        },
    )
    return {
        "decision": report.decision,
        "report": out["keys"]["json"],
        "alert_sent": out["alert_sent"],
    }
