"""The records extension on the local stack (`-c api=http -c records=extension`): the serving
functions spool their record lines, the extension's own flush logic
(`avsev.serving.records_extension`) runs after each invocation and at stop, and its
PutRecordBatch reaches the local Firehose stand-in (`avsev_tools.local.logs.DirectPut`).
Every answered prediction and accepted outcome lands exactly once in the Parquet tables —
those still in a spool when the stack stops too — and lines PutRecordBatch fails go to
stdout, where the subscription filter's path takes them, instead of being lost."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
from urllib.parse import urlsplit

import boto3
import pytest
from avsev.serving.records_extension import FlushPolicy
from stack_support import REPORT, serving


@pytest.fixture(scope="module")
def stack(real_bundle_dir):
    yield from serving(real_bundle_dir, context={"api": "http", "records": "extension"})


def call(stack, method: str, path: str, body=None) -> tuple[int, dict]:
    url = urlsplit(stack.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Content-Type": "application/json", "X-Api-Key": stack.api_key}
    conn.request(method, path, json.dumps(body), headers)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data


def extensions(stack):
    return [h.records_extension for h in stack.handlers.values() if h.records_extension]


def traffic(stack, tag: str, n: int) -> tuple[set[str], set[str]]:
    """`n` predictions, a batch of 10, an explanation and `n // 5` outcomes: the request ids
    of the answered predictions and the ev_ids of the accepted outcomes."""
    answered: set[str] = set()
    for i in range(n):
        status, body = call(stack, "POST", "/predict", {**REPORT, "ev_id": f"{tag}P{i}"})
        assert status == 200, body
        answered.add(body["request_id"])
        if i == 0:  # loaded now: flush by size, often, so some lines wait in the spool
            for x in extensions(stack):
                x.policy = FlushPolicy(max_bytes=20_000, max_seconds=3600)
    status, body = call(
        stack,
        "POST",
        "/predict/batch",
        {"reports": [{**REPORT, "ev_id": f"{tag}B{i}"} for i in range(10)]},
    )
    assert status == 200
    answered |= {p["request_id"] for p in body["predictions"]}
    status, body = call(stack, "POST", "/predict/explain", {**REPORT, "ev_id": f"{tag}X"})
    assert status == 200
    answered.add(body["request_id"])
    outcomes = {f"{tag}O{i}" for i in range(n // 5)}
    for ev in sorted(outcomes):
        status, body = call(stack, "POST", "/outcomes", {"ev_id": ev, "actual_severity": "Fatal"})
        assert status == 200 and body["accepted"] == 1
    return answered, outcomes


def landed(stack, answered: set[str], outcomes: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    from avsev.monitoring.query import local_engine

    today = dt.datetime.now(dt.UTC).date()
    engine = local_engine(boto3.client("s3"), stack.bucket, [today])
    predictions = {
        r["request_id"]: r["n"]
        for r in engine.query(
            "SELECT request_id, COUNT(*) AS n FROM predictions GROUP BY request_id"
        )
        if r["request_id"] in answered
    }
    got = {
        r["ev_id"]: r["n"]
        for r in engine.query("SELECT ev_id, COUNT(*) AS n FROM outcomes GROUP BY ev_id")
        if r["ev_id"] in outcomes
    }
    return predictions, got


def test_every_answered_prediction_and_outcome_lands_once_spooled_ones_at_stop(stack):
    assert stack.direct_put is not None
    logged_records = stack.router.logged_bytes["record"]
    answered, outcomes = traffic(stack, "EXT", 120)
    assert stack.direct_put.records_put > 0  # flushed while serving
    waiting = sum(os.path.getsize(x.spool) for x in extensions(stack) if os.path.exists(x.spool))
    assert waiting > 0  # and some still in a spool
    stack.shutdown_extensions()  # what stop() does first: the extensions' SHUTDOWN
    stack.flush()
    predictions, got = landed(stack, answered, outcomes)
    assert len(predictions) == len(answered) == 131 and set(predictions.values()) == {1}
    assert len(got) == len(outcomes) == 24 and set(got.values()) == {1}
    # none went through CloudWatch Logs: the log kept only the EMF documents
    assert stack.router.logged_bytes["record"] == logged_records
    assert stack.router.logged_bytes["metrics"] > 0
    assert all(size <= 1000 * 1024 for size in stack.direct_put.bytes_put)


def test_lines_putrecordbatch_fails_go_to_the_log_and_land_once(stack, monkeypatch):
    def failing(*, DeliveryStreamName, Records):
        return {
            "FailedPutCount": len(Records),
            "Encrypted": False,
            "RequestResponses": [
                {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
                for _ in Records
            ],
        }

    monkeypatch.setattr(stack.direct_put, "put_record_batch", failing)
    logged_events = stack.router.logged_events["record"]
    answered, outcomes = traffic(stack, "FAIL", 30)
    stack.shutdown_extensions()
    stack.flush()
    predictions, got = landed(stack, answered, outcomes)
    assert len(predictions) == len(answered) == 41 and set(predictions.values()) == {1}
    assert len(got) == len(outcomes) == 6 and set(got.values()) == {1}
    # each of them reached the log as a record line (the subscription filter's path)
    assert stack.router.logged_events["record"] - logged_events == 41 + 6
