"""What an event that reaches the batch function says about objects in S3.

The stack routes uploads under `batch/in/` to the function through EventBridge ("Object
Created", https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html). The same
function also reads the other shapes an S3 upload can arrive in, so that re-pointing a trigger
never loses a file:

- an S3 event notification (`Records[].s3`), delivered directly, through SQS (the message body
  is the notification) or through SNS (the `Message` is), SNS to SQS included
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html);
- S3's `s3:TestEvent`, sent when a notification configuration is saved: nothing to score;
- removal and other non-arrival events (`ObjectRemoved:*`, EventBridge "Object Deleted"...):
  nothing to score either.

Object keys in S3 event notifications are URL-encoded, a space as `+` ("red flower.jpg"
arrives as "red+flower.jpg", same page): they are decoded with `unquote_plus`. The key as
sent is kept too (`sent_key`), for a key that the decoding would change although it was not
encoded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

MAX_WRAPPING = 3
"""How many envelopes (SQS → SNS → S3 notification) are opened around one notification."""


@dataclass(frozen=True)
class S3Object:
    """An object an event says has arrived."""

    bucket: str
    key: str
    """The key, URL-decoded."""
    sent_key: str
    """The key as the event carried it."""
    etag: str
    time: str


@dataclass
class Arrivals:
    """The objects an event announces, and why any part of it announces none."""

    objects: list[S3Object] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Parts that are valid but not arrivals (a removal, S3's test event)."""
    unknown: list[str] = field(default_factory=list)
    """Parts of a shape this function does not read."""

    def extend(self, other: Arrivals) -> None:
        self.objects += other.objects
        self.skipped += other.skipped
        self.unknown += other.unknown


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:8])
        return f"an object with keys [{keys}]"
    return f"a JSON {type(value).__name__}"


def _eventbridge(event: dict[str, Any]) -> Arrivals:
    kind = event.get("detail-type")
    detail = event.get("detail")
    if kind != "Object Created":
        return Arrivals(skipped=[f"S3 {kind!r} event: not an arrival"])
    bucket = detail.get("bucket") if isinstance(detail, dict) else None
    obj = detail.get("object") if isinstance(detail, dict) else None
    name = _text(bucket.get("name")) if isinstance(bucket, dict) else None
    key = _text(obj.get("key")) if isinstance(obj, dict) else None
    if not name or not key:
        return Arrivals(
            unknown=[
                "EventBridge 'Object Created' without detail.bucket.name and detail.object.key"
            ]
        )
    assert isinstance(obj, dict)
    etag = _text(obj.get("etag")) or ""
    when = _text(event.get("time")) or ""
    return Arrivals([S3Object(name, unquote_plus(key), key, etag.strip('"'), when)])


def _s3_record(record: dict[str, Any]) -> Arrivals:
    name = _text(record.get("eventName")) or ""
    if not name.startswith("ObjectCreated:"):
        return Arrivals(skipped=[f"S3 {name or 'unnamed'!r} event: not an arrival"])
    s3 = record.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    bucket_name = _text(bucket.get("name")) if isinstance(bucket, dict) else None
    key = _text(obj.get("key")) if isinstance(obj, dict) else None
    if not bucket_name or not key:
        return Arrivals(unknown=["S3 notification record without s3.bucket.name and s3.object.key"])
    assert isinstance(obj, dict)
    etag = _text(obj.get("eTag")) or ""
    when = _text(record.get("eventTime")) or ""
    return Arrivals([S3Object(bucket_name, unquote_plus(key), key, etag.strip('"'), when)])


def _json_text(text: Any, where: str, depth: int) -> Arrivals:
    """A notification carried as JSON text (an SQS body, an SNS message)."""
    if not isinstance(text, str):
        return Arrivals(unknown=[f"{where}: not text"])
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError):
        return Arrivals(unknown=[f"{where}: not JSON"])
    return arrivals(inner, depth=depth + 1, where=where)


def _record(record: Any, depth: int) -> Arrivals:
    if not isinstance(record, dict):
        return Arrivals(unknown=[f"a record that is {_describe(record)}"])
    if "s3" in record:
        return _s3_record(record)
    if record.get("eventSource") == "aws:sqs":
        return _json_text(record.get("body"), "SQS message body", depth)
    if record.get("EventSource") == "aws:sns":
        sns = record.get("Sns")
        message = sns.get("Message") if isinstance(sns, dict) else None
        return _json_text(message, "SNS message", depth)
    return Arrivals(unknown=[f"a record that is {_describe(record)}"])


def arrivals(event: Any, *, depth: int = 0, where: str = "event") -> Arrivals:
    """The objects `event` announces, whatever wrapping it came in."""
    if depth > MAX_WRAPPING:
        return Arrivals(unknown=[f"{where}: wrapped more than {MAX_WRAPPING} times"])
    if not isinstance(event, dict):
        return Arrivals(unknown=[f"{where}: {_describe(event)}"])
    if event.get("Event") == "s3:TestEvent":
        return Arrivals(skipped=["S3 's3:TestEvent': sent when notifications are configured"])
    if event.get("source") == "aws.s3" and "detail-type" in event:
        return _eventbridge(event)
    if event.get("Type") == "Notification" and "Message" in event:  # SNS envelope in SQS
        return _json_text(event.get("Message"), "SNS message", depth)
    records = event.get("Records")
    if isinstance(records, list) and records:
        found = Arrivals()
        for record in records:
            found.extend(_record(record, depth))
        return found
    return Arrivals(unknown=[f"{where}: {_describe(event)}"])
