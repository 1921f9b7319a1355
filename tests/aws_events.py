"""AWS's sample events (tests/data/events, see its README), pointed at a test's own bucket,
key and time, and wrapped the ways S3 events travel (SQS, SNS, SNS to SQS)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "data" / "events"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def s3_notification(
    bucket: str, key: str, *, etag: str = "etag-1", name: str = "s3Event"
) -> dict[str, Any]:
    """An S3 event notification (`key` as S3 sends it: URL-encoded)."""
    event = sample(name)
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = key
    if "eTag" in record["s3"]["object"]:
        record["s3"]["object"]["eTag"] = etag
    return event


def eventbridge(bucket: str, key: str, *, etag: str = "etag-1", deleted: bool = False) -> dict:
    name = "s3EventBridgeNotificationObject" + ("Deleted" if deleted else "Created") + "Event"
    event = sample(name)
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    if not deleted:
        event["detail"]["object"]["etag"] = etag
    return event


def via_sqs(inner: dict[str, Any]) -> dict[str, Any]:
    """`inner` as the body of an SQS message (S3 → SQS)."""
    event = sample("s3SqsEvent")
    event["Records"][0]["body"] = json.dumps(inner)
    return event


def via_sns(inner: dict[str, Any]) -> dict[str, Any]:
    """`inner` as the message of an SNS notification (S3 → SNS → Lambda)."""
    event = sample("snsEvent")
    event["Records"][0]["Sns"]["Message"] = json.dumps(inner)
    return event


def via_sns_sqs(inner: dict[str, Any]) -> dict[str, Any]:
    """`inner` through SNS then SQS (the SQS body is SNS's envelope)."""
    event = sample("snsSqsEvent")
    record = event["Records"][0]
    envelope = json.loads(record["body"])
    envelope["Message"] = json.dumps(inner)
    record["body"] = json.dumps(envelope)
    return event


def scheduled(time: str | None = None, *, with_version: bool = True) -> dict[str, Any]:
    """Powertools' scheduled-event sample at `time`. The sample lacks `version`, which AWS
    always sends ("0", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html):
    added unless `with_version` is False."""
    event = copy.deepcopy(sample("scheduledEvent"))
    if time is not None:
        event["time"] = time
    if with_version:
        event["version"] = "0"
    return event
