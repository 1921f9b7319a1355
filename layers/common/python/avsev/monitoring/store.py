"""Reports in S3: under `reports/<kind>/` at keys derived from their window, so a retried
run rewrites the same report and alerts once; alerts sent once per window; metrics.
(Records are read by the query engines only: see avsev.monitoring.query and rollups.)"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

from avsev import clock
from avsev.constants import REPORTS_PREFIX as REPORTS
from avsev.monitoring.reports import ABReport, DriftReport, ReportPart


def days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def report_keys(kind: str, window_id: str) -> dict[str, str]:
    base = f"{REPORTS}{kind}/{window_id}"
    return {
        "json": f"{base}/report.json",
        "markdown": f"{base}/report.md",
        "latest": f"{REPORTS}{kind}/latest.json",
        "alert": f"{base}/alert-sent.json",
    }


def write_report(
    s3: Any, bucket: str, kind: str, window_id: str, report: ReportPart, markdown: str
) -> dict[str, str]:
    keys = report_keys(kind, window_id)
    body = json.dumps(report.dump(), indent=1, default=str).encode()
    s3.put_object(Bucket=bucket, Key=keys["json"], Body=body, ContentType="application/json")
    s3.put_object(
        Bucket=bucket, Key=keys["markdown"], Body=markdown.encode(), ContentType="text/markdown"
    )
    s3.put_object(Bucket=bucket, Key=keys["latest"], Body=body, ContentType="application/json")
    return keys


def read_latest(s3: Any, bucket: str, kind: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=report_keys(kind, "-")["latest"])["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def latest_ab_report(s3: Any, bucket: str) -> ABReport | None:
    doc = read_latest(s3, bucket, "ab")
    return None if doc is None else ABReport.model_validate(doc)


def latest_drift_report(s3: Any, bucket: str) -> DriftReport | None:
    doc = read_latest(s3, bucket, "drift")
    return None if doc is None else DriftReport.model_validate(doc)


def alert_once(
    s3: Any, sns: Any, bucket: str, marker_key: str, topic_arn: str, subject: str, message: str
) -> bool:
    """Publish an alert unless one was already sent for this window; True if sent now."""
    try:
        s3.head_object(Bucket=bucket, Key=marker_key)
        return False
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    sns.publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)
    s3.put_object(
        Bucket=bucket,
        Key=marker_key,
        Body=json.dumps({"sent_at": clock.now().isoformat()}).encode(),
    )
    return True


def put_metrics(cloudwatch: Any, namespace: str, data: list[dict[str, Any]]) -> None:
    for i in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + 1000])


def metric(
    name: str, value: float, dimensions: Mapping[str, str], unit: str = "None"
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Value": float(value),
        "Unit": unit,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
    }
