"""Fuzzing what reaches the batch path and the scheduled functions: hostile files (random
bytes, random CSV and JSON-lines shapes, huge and nested lines) through the reader and the
batch function, and AWS's sample events mutated at random (tests/data/events). No exception
escapes: a file is scored or gets an error summary, an event is acted on, skipped or rejected
with a logged error. In process against moto; each a few seconds (`max_examples`)."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import boto3
import pytest
from adversarial import batch_files, mutated_events
from avsev.batch.reading import read_chunks
from avsev.batch.s3jobs import UNREADABLE_INPUT
from avsev.monitoring.jobs import window_days
from avsev.scheduled import EARLIEST, UNTIL, EventRejected, scheduled_time
from aws_events import EVENTS, eventbridge, s3_notification, sample, scheduled, via_sqs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lambda_support import FakeContext, load_function
from moto import mock_aws

BUCKET = "avsev-batch"


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


@fuzz(150)
@given(file=batch_files, chunk_rows=st.sampled_from([1, 3, 20_000]))
def test_the_reader_yields_rows_and_rejects_or_calls_the_file_unreadable(file, chunk_rows):
    name, body = file
    try:
        chunks = list(read_chunks(io.BytesIO(body), name, chunk_rows=chunk_rows))
    except UNREADABLE_INPUT:
        return
    for chunk in chunks:
        assert chunk.scored + len(chunk.rejected) <= chunk.read
        assert len(chunk.numbers) == chunk.scored
        for row in chunk.rejected:
            assert isinstance(row["row"], int) and isinstance(row["reason"], str)
            assert row["ev_id"] is None or isinstance(row["ev_id"], str)


@pytest.fixture(scope="module")
def batch(synthetic_bundle_dir):
    """moto S3 with the batch bucket, and the batch function (synthetic bundle)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            env = {
                "MODEL_BUNDLE_PATH": str(synthetic_bundle_dir),
                "BATCH_BUCKET": BUCKET,
                "BATCH_CHUNK_ROWS": "5",
                "BATCH_SAFETY_MS": "0",
            }
            yield s3, load_function("batch_score", env, mp)


@fuzz(40)
@given(file=batch_files)
def test_the_batch_function_scores_a_file_or_writes_an_error_summary(batch, file):
    s3, fn = batch
    name, body = file
    key = f"batch/in/{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    summary = fn.handler(eventbridge(BUCKET, key, etag=""), FakeContext())
    assert summary["status"] in ("ok", "error", "already_done"), summary
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stored = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"batch/out/{stem}.summary.json")["Body"].read()
    )
    if summary["status"] != "already_done":  # (the same bytes as an earlier example)
        assert stored["status"] == summary["status"]
    assert stored["error"] is None or "Traceback" not in stored["error"]


def event_samples() -> list[dict]:
    """Every sample event, and the S3 ones pointed at objects the bucket holds or not."""
    samples = [sample(p.stem) for p in sorted(EVENTS.glob("*.json"))]
    for key in ("batch/in/there.jsonl", "batch/in/gone.csv", "batch/in/my+odd+%28x%29.jsonl"):
        samples += [
            s3_notification(BUCKET, key),
            via_sqs(s3_notification(BUCKET, key)),
            eventbridge(BUCKET, key),
        ]
    samples.append(
        {
            "avsev_continuation": {
                "bucket": BUCKET,
                "key": "batch/in/there.jsonl",
                "etag": "e",
                "out_name": "there.csv",
                "scored_at": "t",
                "skip_rows": 1,
                "part": 1,
            }
        }
    )
    return samples


ANSWERS = {"ok", "error", "already_done", "ignored", "rejected", "continuing"}


@fuzz(150)
@given(event=mutated_events(event_samples()))
def test_the_batch_function_answers_every_event(batch, event):
    s3, fn = batch
    s3.put_object(
        Bucket=BUCKET,
        Key="batch/in/there.jsonl",
        Body=b'{"ev_id": "A1"}\n{"ev_id": "A2"}\n{"ev_id": "A3"}\n',
    )
    s3.put_object(Bucket=BUCKET, Key="batch/in/my odd (x).jsonl", Body=b'{"ev_id": "A1"}\n')
    answer = fn.handler(event, FakeContext())
    assert isinstance(answer, dict) and answer["status"] in ANSWERS, answer
    if answer["status"] == "rejected":
        assert answer["error"]["details"] and answer["error"]["code"] == "invalid_event"


times: st.SearchStrategy[Any] = st.one_of(  # wrong types on purpose
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.datetimes().map(dt.datetime.isoformat),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "", "now", "2026-13-01"]),
    st.integers() | st.none(),
)


@fuzz(300)
@given(
    event=mutated_events([scheduled("2026-11-20T06:00:00Z")]) | times.map(scheduled),
    days=st.integers(1, 400),
)
def test_a_scheduled_event_is_rejected_or_leaves_room_for_its_days(event, days):
    """What every scheduled function checks first: a time it accepts is one whose days the
    jobs can step through (the window before it, and a day past it)."""
    try:
        at = scheduled_time(event, days=days)
    except EventRejected as e:
        answer = e.answer()
        assert answer["error"]["details"] and all(d["field"] for d in answer["error"]["details"])
        return
    assert EARLIEST <= at < UNTIL
    covered = window_days(at, days)
    assert len(covered) == days and covered[-1] + dt.timedelta(days=1) > at.date()
