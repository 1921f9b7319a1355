"""The local stack's Firehose stand-in fails where the stack's delivery streams fail: a record
(one subscription delivery: the record lines of one invocation) that record format
conversion rejects lands, compressed as it arrived, under the error prefix; the other
records still land in their table."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json

import boto3
import duckdb
import pytest
from moto import mock_aws

BUCKET = "avsev-local-data"


def outcome(request_id: str, **fields: object) -> str:
    doc = {
        "record_type": "outcome",
        "schema_version": 1,
        "request_id": request_id,
        "ev_id": f"EV-{request_id}",
        "timestamp": "2026-12-06T10:00:00.123456Z",
        "actual_severity": "Serious",
        **fields,
    }
    return json.dumps(doc, separators=(",", ":"))


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys(s3, prefix: str) -> list[str]:
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    )


def parquet_rows(s3, key: str, tmp_path) -> list[tuple]:
    path = tmp_path / "o.parquet"
    s3.download_file(BUCKET, key, str(path))
    return (
        duckdb.connect()
        .execute(f"SELECT request_id, observed_at FROM '{path}' ORDER BY 1")
        .fetchall()
    )


def test_a_batch_with_an_offset_timestamp_goes_to_the_error_prefix_whole(s3, tmp_path):
    from avsev_tools.local.logs import FirehoseBuffer

    firehose = FirehoseBuffer(lambda: s3, BUCKET)
    good = [outcome("g1", observed_at="2026-12-06 09:00:00"), outcome("g2", observed_at=1796558400)]
    bad = [outcome("b1"), outcome("b2", observed_at="2026-12-06T10:00:00+05:00")]
    firehose.put_batch(
        "outcome", good, log_group="/aws/lambda/avsev-prod-outcomes", log_stream="s1"
    )
    firehose.put_batch("outcome", bad, log_group="/aws/lambda/avsev-prod-outcomes", log_stream="s2")

    assert firehose.flush() == 2

    today = dt.datetime.now(dt.UTC).date().isoformat()
    [table_object] = keys(s3, "outcomes/")
    assert table_object.startswith(f"outcomes/dt={today}/")
    assert parquet_rows(s3, table_object, tmp_path) == [
        ("g1", dt.datetime(2026, 12, 6, 9, 0)),
        ("g2", dt.datetime(2026, 12, 6, 12, 0)),
    ]
    [error_object] = keys(s3, "firehose-errors/")
    assert error_object.startswith(f"firehose-errors/outcomes/format-conversion-failed/dt={today}/")
    [line] = s3.get_object(Bucket=BUCKET, Key=error_object)["Body"].read().decode().splitlines()
    doc = json.loads(line)
    assert doc["lastErrorCode"] == "DataFormatConversion.MalformedData"
    assert "observed_at" in doc["lastErrorMessage"] and "message 2 of 2" in doc["lastErrorMessage"]
    assert doc["attemptsMade"] == 1 and doc["arrivalTimestamp"] <= doc["attemptEndingTimestamp"]
    payload = json.loads(gzip.decompress(base64.b64decode(doc["rawData"])))
    assert payload["messageType"] == "DATA_MESSAGE"
    assert (payload["logGroup"], payload["logStream"]) == ("/aws/lambda/avsev-prod-outcomes", "s2")
    assert [e["message"] for e in payload["logEvents"]] == bad
    assert firehose.records_failed == 1


def test_the_log_router_sends_an_invocations_records_as_one_record_and_leaves_non_json_in_the_log(
    s3,
):
    from avsev_tools.local.logs import EmfForwarder, FirehoseBuffer, LogRouter

    firehose = FirehoseBuffer(lambda: s3, BUCKET)
    console = io.StringIO()
    router = LogRouter(firehose, EmfForwarder(lambda: None), console=console)
    with router.invocation("/aws/lambda/avsev-prod-outcomes", "[1]local"):
        router.write(outcome("i1") + "\n")
        router.write("a log line\n" + outcome("i2", observed_at="2026-12-06T10:00:00+05:00") + "\n")
        router.write('{"record_type":"outcome", truncated\n')
    router.write(outcome("o1") + "\n" + outcome("o2") + "\n")  # outside: one write, one record

    assert [(r.lines, r.log_stream) for r in firehose._records] == [
        ([outcome("i1"), outcome("i2", observed_at="2026-12-06T10:00:00+05:00")], "[1]local"),
        ([outcome("o1"), outcome("o2")], "local"),
    ]
    # a JSON filter pattern matches JSON log events only: the broken line stays in the log
    assert console.getvalue() == 'a log line\n{"record_type":"outcome", truncated\n'
    assert firehose.flush() == 2
    assert len(keys(s3, "firehose-errors/outcomes/format-conversion-failed/")) == 1


def test_a_direct_record_that_fails_conversion_lands_as_it_was_put(s3, tmp_path):
    """The records extension's direct streams: each PutRecordBatch record is a unit that
    converts or fails whole, and a failed one is kept under the error prefix as it was put
    (JSON lines, no CloudWatch Logs payload), which `avsev records redrive` reads back."""
    from avsev.monitoring.firehose import extract_messages
    from avsev_tools.local.logs import DirectPut, FirehoseBuffer

    firehose = FirehoseBuffer(lambda: s3, BUCKET)
    direct = DirectPut(firehose, {"avsev-prod-outcomes-direct": "outcome"})
    good = "".join(line + "\n" for line in (outcome("g1"), outcome("g2"))).encode()
    bad = "".join(
        line + "\n"
        for line in (outcome("b1"), outcome("b2", observed_at="2026-12-06T10:00:00+05:00"))
    ).encode()
    answer = direct.put_record_batch(
        DeliveryStreamName="avsev-prod-outcomes-direct", Records=[{"Data": good}, {"Data": bad}]
    )
    assert answer["FailedPutCount"] == 0 and len(answer["RequestResponses"]) == 2
    assert all("RecordId" in r for r in answer["RequestResponses"])
    assert firehose.flush() == 2
    [table_object] = keys(s3, "outcomes/")
    assert [r[0] for r in parquet_rows(s3, table_object, tmp_path)] == ["g1", "g2"]
    [error_object] = keys(s3, "firehose-errors/outcomes/")
    [line] = s3.get_object(Bucket=BUCKET, Key=error_object)["Body"].read().decode().splitlines()
    raw = base64.b64decode(json.loads(line)["rawData"])
    assert raw == bad and extract_messages(raw) == bad.decode().splitlines()
    with pytest.raises(ValueError, match="ResourceNotFoundException"):
        direct.put_record_batch(DeliveryStreamName="elsewhere", Records=[{"Data": good}])
