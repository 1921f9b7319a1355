"""The S3 objects an event announces, on AWS's own sample events (tests/data/events): keys
URL-decoded, removals and S3's test event skipped, S3 events unwrapped from SQS and SNS, and
any other shape named as unknown, never a KeyError."""

from __future__ import annotations

import datetime as dt

import pytest
from avsev.batch import NotAJob, jobs_from_event
from avsev.batch.events import arrivals
from avsev.scheduled import EventRejected, scheduled_time
from aws_events import (
    eventbridge,
    s3_notification,
    sample,
    scheduled,
    via_sns,
    via_sns_sqs,
    via_sqs,
)

BUCKET = "avsev-batch"
SENT = "batch/in/my+report+%281%29.csv"
"""How S3 sends the key of `batch/in/my report (1).csv` in a notification."""
KEY = "batch/in/my report (1).csv"


@pytest.mark.parametrize(
    "wrap",
    [lambda e: e, via_sqs, via_sns, via_sns_sqs],
    ids=["direct", "sqs", "sns", "sns-sqs"],
)
def test_an_s3_notification_names_the_decoded_key_however_it_travels(wrap):
    jobs, found = jobs_from_event(wrap(s3_notification(BUCKET, SENT)))
    assert [(j.bucket, j.key, j.sent_key, j.etag) for j in jobs] == [(BUCKET, KEY, SENT, "etag-1")]
    assert jobs[0].out_name == "my report (1).csv" and jobs[0].scored_at
    assert not found.unknown and not found.skipped


def test_powertools_samples_as_published():
    decoded = arrivals(sample("s3EventDecodedKey")).objects
    assert [o.key for o in decoded] == ["Happy Face.jpg"]  # its urlDecodedKey
    sqs = arrivals(sample("s3SqsEvent")).objects
    assert [(o.bucket, o.key, o.time) for o in sqs] == [
        ("xxx", "test.pdf", "2023-04-12T20:43:38.021Z")
    ]
    created = arrivals(sample("s3EventBridgeNotificationObjectCreatedEvent")).objects
    assert [(o.bucket, o.key, o.etag) for o in created] == [
        ("example-bucket", "IMG_m7fzo3.jpg", "4e68adba0abe2dc8653dc3354e14c01d")
    ]
    # none of them is under batch/in/: no job
    for name in ("s3Event", "s3SqsEvent", "s3EventBridgeNotificationObjectCreatedEvent"):
        assert jobs_from_event(sample(name))[0] == []


def test_eventbridge_object_created_key_is_decoded_and_keeps_the_key_as_sent():
    jobs, _ = jobs_from_event(eventbridge(BUCKET, "batch/in/a+b.csv"))
    assert [(j.key, j.sent_key) for j in jobs] == [("batch/in/a b.csv", "batch/in/a+b.csv")]
    jobs, _ = jobs_from_event(eventbridge(BUCKET, "batch/in/plain.csv"))
    assert [(j.key, j.sent_key) for j in jobs] == [("batch/in/plain.csv", "")]


@pytest.mark.parametrize(
    "event",
    [
        s3_notification(BUCKET, "batch/in/x.csv", name="s3EventDeleteObject"),
        via_sqs(s3_notification(BUCKET, "batch/in/x.csv", name="s3EventDeleteObject")),
        eventbridge(BUCKET, "batch/in/x.csv", deleted=True),
        sample("s3EventDeleteObject"),
        sample("s3EventBridgeNotificationObjectDeletedEvent"),
        sample("s3TestEventSqs"),
    ],
    ids=["removed", "removed-sqs", "eb-deleted", "ps-removed", "ps-eb-deleted", "test-event"],
)
def test_removals_and_the_test_event_are_skipped_not_scored(event):
    jobs, found = jobs_from_event(event)
    assert jobs == [] and found.skipped and not found.unknown and not found.objects


@pytest.mark.parametrize(
    "event",
    [
        sample("snsEvent"),  # a message that is not JSON
        sample("snsSqsEvent"),  # a JSON message that is no S3 event
        sample("eventBridgeEvent"),  # an EC2 event
        {"Records": [{"eventSource": "aws:sqs", "body": "[1]"}]},
        {"Records": [{"eventSource": "aws:sqs", "body": "[" * 100_000}]},
        {},
        {"Records": []},
        {"Records": [None, 3, "x"]},
        {"Records": [{"s3": {}, "eventName": "ObjectCreated:Put"}]},
        {"detail-type": "Object Created", "source": "aws.s3", "detail": []},
        {"Type": "Notification", "Message": "{}"},
        {"x": 1},
        [],
        "text",
        None,
    ],
)
def test_other_shapes_are_named_unknown_not_a_key_error(event):
    jobs, found = jobs_from_event(event)
    assert jobs == [] and found.unknown and all(isinstance(u, str) for u in found.unknown)


def test_wrapping_is_opened_a_bounded_number_of_times():
    event = s3_notification(BUCKET, SENT)
    for _ in range(6):
        event = via_sqs(event)
    jobs, found = jobs_from_event(event)
    assert jobs == [] and "wrapped more than" in found.unknown[0]


def test_a_continuation_that_names_no_job_is_refused():
    with pytest.raises(NotAJob, match="avsev_continuation"):
        jobs_from_event({"avsev_continuation": {"bucket": "b"}})


# ---- scheduled events -----------------------------------------------------------------------


def test_a_scheduled_time_inside_the_rule_is_read_as_utc():
    assert scheduled_time(scheduled("2026-11-20T06:00:00Z")) == dt.datetime(
        2026, 11, 20, 6, tzinfo=dt.UTC
    )
    assert scheduled_time(scheduled()).year == 1970  # the sample's own time, the earliest
    assert scheduled_time(scheduled("2026-11-20T06:00:00")).tzinfo == dt.UTC


@pytest.mark.parametrize(
    "time", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]
)
def test_a_scheduled_time_at_the_edges_is_rejected_naming_time(time):
    with pytest.raises(EventRejected) as caught:
        scheduled_time(scheduled(time), days=7)
    answer = caught.value.answer()
    assert answer["status"] == "rejected" and answer["error"]["status"] == 400
    (detail,) = answer["error"]["details"]
    assert detail["field"] == "time" and "1970-01-01" in detail["allowed"]


def test_a_scheduled_event_without_version_is_rejected_naming_it():
    with pytest.raises(EventRejected) as caught:
        scheduled_time(scheduled("2026-11-20T06:00:00Z", with_version=False))
    assert [d["field"] for d in caught.value.answer()["error"]["details"]] == ["version"]


def test_a_continuation_is_checked_field_by_field():
    good = {
        "bucket": BUCKET,
        "key": "batch/in/x.csv",
        "etag": "e",
        "out_name": "x.csv",
        "scored_at": "t",
        "skip_rows": 3,
        "part": 1,
    }
    jobs, _ = jobs_from_event({"avsev_continuation": good})
    assert [(j.key, j.skip_rows, j.part) for j in jobs] == [("batch/in/x.csv", 3, 1)]
    for bad in ({"skip_rows": "3"}, {"part": None}, {"extra": 1}, {"key": "elsewhere/x.csv"}):
        with pytest.raises(NotAJob):
            jobs_from_event({"avsev_continuation": good | bad})
    with pytest.raises(NotAJob, match="not the batch bucket"):
        jobs_from_event({"avsev_continuation": good}, bucket="other")


def test_objects_that_are_no_input_here_are_skipped_with_the_reason():
    event = s3_notification(BUCKET, "batch/in/x.csv")
    jobs, found = jobs_from_event(event, bucket="another-bucket")
    assert jobs == [] and "not the batch bucket" in found.skipped[0]
    jobs, found = jobs_from_event(s3_notification(BUCKET, "batch/in/" + "x" * 600 + ".csv"))
    assert jobs == [] and "more than S3's 1024" in found.skipped[0]
    jobs, found = jobs_from_event(s3_notification(BUCKET, "batch/in/" + "x" * 400 + ".csv"))
    assert len(jobs) == 1
    jobs, found = jobs_from_event(s3_notification(BUCKET, "elsewhere/x.csv"))
    assert jobs == [] and "not a file under batch/in/" in found.skipped[0]
