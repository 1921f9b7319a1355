"""Scheduled drift check: recent prediction records against the serving card's reference."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from avsev.monitoring.jobs import Clients, run_drift_check
from avsev.serving.observability import logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

BUCKET = os.environ["DATA_BUCKET"]
TOPIC = os.environ.get("ALERTS_TOPIC_ARN")
DAYS = int(os.environ.get("DRIFT_WINDOW_DAYS", "1"))
SHARE = float(os.environ.get("DATASET_DRIFT_SHARE", "0.5"))
CARD = json.loads((Path(os.environ["MODEL_BUNDLE_PATH"]) / "card.json").read_text())


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
    out = run_drift_check(
        clients,
        BUCKET,
        CARD,
        scheduled.time,
        days=DAYS,
        topic_arn=TOPIC,
        dataset_drift_share=SHARE,
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "avsev"),
    )
    report = out["report"]
    logger.info(
        "drift check",
        extra={
            "dataset_drift": report.dataset_drift,
            "rows": report.rows,
            "drifted": report.drifted_features,
            "alert_sent": out["alert_sent"],
        },
    )
    return {
        "dataset_drift": report.dataset_drift,
        "report": out["keys"]["json"],
        "alert_sent": out["alert_sent"],
    }
