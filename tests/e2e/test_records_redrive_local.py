"""End to end on the local stack: a record the delivery stream's conversion rejects (an
outcome whose timestamps carry an offset, as an older handler or a careless writer would log
it) goes, with the rest of its batch, to `firehose-errors/`; `avsev records redrive --local`
puts the batch into the outcomes table, where the DuckDB stand-in of Athena sees it; a second
redrive changes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stack_support import serving

AVSEV = Path(sys.executable).parent / "avsev"
PLUS_FIVE = dt.timezone(dt.timedelta(hours=5))


@pytest.fixture(scope="module")
def local_stack(synthetic_bundle_dir):
    yield from serving(synthetic_bundle_dir)


def text(at: dt.datetime) -> str:
    """`2026-12-06T10:00:00Z` in UTC, with its offset (`+05:00`) otherwise."""
    return at.isoformat().replace("+00:00", "Z")


def outcome(request_id: str, at: dt.datetime, observed: dt.datetime) -> str:
    return json.dumps(
        {
            "record_type": "outcome",
            "schema_version": 1,
            "request_id": request_id,
            "ev_id": f"EV-{request_id}",
            "timestamp": text(at),
            "actual_severity": "Minor",
            "observed_at": text(observed),
        }
    )


def keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def outcomes_seen(s3, bucket: str, days: list[dt.date]) -> list[tuple]:
    from avsev.monitoring.query import local_engine

    engine = local_engine(s3, bucket, days)
    rows = engine.query(
        "SELECT request_id, observed_at FROM outcomes "
        "WHERE request_id LIKE 'redrive-e2e-%' ORDER BY request_id"
    )
    return [(r["request_id"], r["observed_at"]) for r in rows]


def redrive_cli(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [str(AVSEV), "records", "redrive", "--local"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_rejected_batch_is_redriven_into_its_table_once(local_stack, tmp_path):
    import boto3

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    days = [now.date() - dt.timedelta(days=1), now.date(), now.date() + dt.timedelta(days=1)]
    router, bucket = local_stack.router, local_stack.bucket
    log_group = f"/aws/lambda/{local_stack.functions['outcomes']}"
    good = outcome("redrive-e2e-good", now, now)
    offset = outcome("redrive-e2e-offset", now.astimezone(PLUS_FIVE), now.astimezone(PLUS_FIVE))
    neighbour = outcome("redrive-e2e-neighbour", now, now)

    # Given two invocations' log lines through the local log router, one with an offset
    with router.invocation(log_group, "[1]good"):
        router.write(good + "\n")
    with router.invocation(log_group, "[1]careless"):
        router.write(neighbour + "\n" + offset + "\n")
    local_stack.flush()

    # Then the careless batch is under the error prefix, whole and as it arrived
    s3 = boto3.client("s3")
    [error_key] = keys(s3, bucket, "firehose-errors/")
    assert error_key.startswith(
        f"firehose-errors/outcomes/format-conversion-failed/dt={now.date().isoformat()}/"
    )
    [error] = s3.get_object(Bucket=bucket, Key=error_key)["Body"].read().decode().splitlines()
    payload = json.loads(gzip.decompress(base64.b64decode(json.loads(error)["rawData"])))
    assert [e["message"] for e in payload["logEvents"]] == [neighbour, offset]
    assert (payload["logGroup"], payload["logStream"]) == (log_group, "[1]careless")
    # and only the good batch is in the table
    assert outcomes_seen(s3, bucket, days) == [("redrive-e2e-good", now.replace(tzinfo=None))]

    # When `avsev records redrive --local` runs
    state = local_stack.write_state(tmp_path / "local.json")
    env = {**os.environ, "AVSEV_LOCAL_STATE": str(state)}
    first = redrive_cli(env)

    # Then the batch is in the outcomes table, its timestamps in UTC, and the error is gone
    assert (first["lines"], first["written"], first["failed"]) == (2, 2, 0)
    assert first["deleted"] == [error_key] and keys(s3, bucket, "firehose-errors/") == []
    tables = keys(s3, bucket, "outcomes/")
    assert set(first["written_objects"]) <= set(tables)
    naive = now.replace(tzinfo=None)
    assert outcomes_seen(s3, bucket, days) == [
        ("redrive-e2e-good", naive),
        ("redrive-e2e-neighbour", naive),
        ("redrive-e2e-offset", naive),
    ]

    # And a second redrive changes nothing
    second = redrive_cli(env)
    assert (second["objects"], second["written"], second["written_objects"]) == (0, 0, [])
    assert keys(s3, bucket, "outcomes/") == tables
    assert len(outcomes_seen(s3, bucket, days)) == 3


def test_the_embedded_aws_has_no_stream_to_put_to(local_stack):
    """The streams take records from CloudWatch Logs only (decompression on): locally they are
    reached through the log router, and nothing else can put to them."""
    import boto3

    firehose = boto3.client("firehose")
    name = f"{local_stack.stack_name}-outcomes"
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"{}"}])
