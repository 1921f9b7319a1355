"""`avsev records redrive` against moto: the records of Firehose's error objects land as Parquet
in their table's day partitions, once; what still cannot be taken stays in an error object
and is reported."""

from __future__ import annotations

import base64
import gzip
import json

import boto3
import duckdb
import pytest
from moto import mock_aws

BUCKET = "avsev-test-data"
KEY = "firehose-errors/outcomes/format-conversion-failed/dt=2026-12-06/avsev-prod-outcomes-1-x"


def error_line(raw: bytes, code: str = "DataFormatConversion.MalformedData") -> str:
    """One line of a Firehose format-conversion error object (rawData is what counts)."""
    return json.dumps(
        {
            "attemptsMade": 1,
            "arrivalTimestamp": 1796558400000,
            "lastErrorCode": code,
            "lastErrorMessage": "Data does not match the schema",
            "attemptEndingTimestamp": 1796558400100,
            "rawData": base64.b64encode(raw).decode(),
        }
    )


def cloudwatch_payload(*messages: str) -> bytes:
    return gzip.compress(
        json.dumps(
            {
                "messageType": "DATA_MESSAGE",
                "owner": "123456789012",
                "logGroup": "/aws/lambda/avsev-prod-outcomes",
                "logStream": "2026/12/06/[3]abc",
                "subscriptionFilters": ["outcomes"],
                "logEvents": [
                    {"id": str(i), "timestamp": 1, "message": m} for i, m in enumerate(messages)
                ],
            }
        ).encode()
    )


def outcome(request_id: str, timestamp: str, **extra: str) -> str:
    return json.dumps(
        {
            "record_type": "outcome",
            "schema_version": 1,
            "request_id": request_id,
            "ev_id": f"EV-{request_id}",
            "timestamp": timestamp,
            "actual_severity": "Fatal",
            **extra,
        }
    )


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def rows(s3, key: str, tmp_path) -> list[dict]:
    path = tmp_path / key.replace("/", "_")
    s3.download_file(BUCKET, key, str(path))
    cursor = duckdb.connect().execute(f"SELECT * FROM read_parquet('{path}') ORDER BY request_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def test_an_error_object_becomes_parquet_in_the_day_partition_once(s3, tmp_path):
    from avsev_tools.records_redrive import redrive

    # Given a failed subscription delivery: an offset timestamp failed the whole batch
    batch = cloudwatch_payload(
        outcome("a", "2026-12-06T10:00:00Z"),
        outcome("b", "2026-12-06T10:30:00+05:00", observed_at="2026-12-06T09:00:00+05:00"),
        outcome("c", "2026-12-05 23:59:59.5"),
    )
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=(error_line(batch) + "\n").encode())

    dry = redrive(s3, BUCKET, dry_run=True)
    assert (dry.objects, dry.lines, dry.written, dry.failed) == (1, 3, 3, 0)
    assert keys(s3, "outcomes/") == [] and keys(s3, "firehose-errors/") == [KEY]

    # When it is redriven
    result = redrive(s3, BUCKET)

    # Then the rows are in the partitions of their timestamps' days, in UTC, one object a day
    assert (result.lines, result.written, result.failed, result.deleted) == (3, 3, 0, [KEY])
    written = keys(s3, "outcomes/")
    assert [k.split("/")[1] for k in written] == ["dt=2026-12-05", "dt=2026-12-06"]
    assert written == sorted(result.written_objects)
    assert [r["request_id"] for r in rows(s3, written[0], tmp_path)] == ["c"]
    day = rows(s3, written[1], tmp_path)
    assert [r["request_id"] for r in day] == ["a", "b"]
    assert str(day[1]["timestamp"]) == "2026-12-06 05:30:00"
    assert str(day[1]["observed_at"]) == "2026-12-06 04:00:00"
    assert keys(s3, "firehose-errors/") == []  # deleted: a delete marker over the version
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="firehose-errors/")
    assert [v["Key"] for v in versions["Versions"]] == [KEY]

    # And a second run writes nothing
    again = redrive(s3, BUCKET)
    assert (again.objects, again.written, again.written_objects) == (0, 0, [])
    assert keys(s3, "outcomes/") == written


def test_a_run_that_stopped_before_the_delete_is_finished_without_writing_twice(
    s3, tmp_path, monkeypatch
):
    from avsev_tools import records_redrive

    s3.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=error_line(cloudwatch_payload(outcome("a", "2026-12-06T10:00:00+01:00"))).encode(),
    )

    class Stop(Exception):
        pass

    def stop(**kwargs):
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(s3, "delete_object", stop)
        with pytest.raises(Stop):
            records_redrive.redrive(s3, BUCKET)
    first = keys(s3, "outcomes/")
    assert len(first) == 1 and keys(s3, "firehose-errors/") == [KEY]

    result = records_redrive.redrive(s3, BUCKET)
    assert result.written_objects == [] and result.existing_objects == first
    assert result.deleted == [KEY] and keys(s3, "outcomes/") == first
    assert len(rows(s3, first[0], tmp_path)) == 1


def test_a_line_that_still_fails_is_kept_and_reported_and_the_good_ones_land(s3, tmp_path):
    from avsev.monitoring.firehose import extract_messages
    from avsev_tools.records_redrive import redrive

    bad = outcome("bad", "2026-12-06T10:00:00Z").replace('"Fatal"', '"FATL"')
    plain = "\n".join([outcome("a", "2026-12-06T10:00:00Z"), bad, "not json at all"]).encode()
    key = "firehose-errors/outcomes/processing-failed/dt=2026-12-06/y"
    s3.put_object(Bucket=BUCKET, Key=key, Body=error_line(plain, "Lambda.Error").encode())

    result = redrive(s3, BUCKET)
    assert (result.lines, result.written, result.failed, result.kept) == (3, 1, 2, [key])
    assert "actual_severity" in result.reasons[0] and "'Fatal'" in result.reasons[0]
    assert "not JSON" in result.reasons[1]
    [written] = keys(s3, "outcomes/dt=2026-12-06/")
    assert [r["request_id"] for r in rows(s3, written, tmp_path)] == ["a"]
    # the error object now holds exactly the lines not taken, each with its reason
    kept = [
        json.loads(line)
        for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()
    ]
    assert [extract_messages(base64.b64decode(d["rawData"])) for d in kept] == [
        [bad],
        ["not json at all"],
    ]
    assert "actual_severity" in kept[0]["lastErrorMessage"]
    assert [d["arrivalTimestamp"] for d in kept] == [1796558400000] * 2  # when Firehose got them

    # a second run takes nothing more and writes nothing twice
    again = redrive(s3, BUCKET)
    assert (again.written, again.failed, again.written_objects, again.kept) == (0, 2, [], [key])
    assert keys(s3, "outcomes/") == [written]


def test_the_table_filter_dry_run_and_odd_objects(s3):
    from avsev_tools.records_redrive import redrive, table_of

    with pytest.raises(ValueError, match="not an error object"):
        table_of("predictions/dt=2026-12-06/x")
    s3.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=error_line(cloudwatch_payload(outcome("a", "1796558400"))).encode(),
    )
    odd = "firehose-errors/other/x/y"
    s3.put_object(Bucket=BUCKET, Key=odd, Body=b"{}")
    only = redrive(s3, BUCKET, table="predictions")
    assert only.objects == 0
    result = redrive(s3, BUCKET)
    assert result.kept == [odd] and "no record table 'other'" in result.reasons[0]
    assert result.deleted == [KEY] and keys(s3, "outcomes/dt=2026-12-06/")


def test_cli_reads_the_data_bucket_from_the_stack_outputs(s3, capsys):
    from avsev_tools.cli import main

    s3.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=error_line(cloudwatch_payload(outcome("a", "2026-12-06 10:00:00"))).encode(),
    )
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName="avsev-test",
        TemplateBody=json.dumps(
            {
                "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"DataBucket": {"Value": BUCKET}},
            }
        ),
    )
    assert main(["records", "redrive", "--stack", "avsev-test", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 1
    assert main(["records", "redrive", "--stack", "avsev-test"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["lines"], out["written"], out["deleted"]) == (1, 1, [KEY])
    assert main(["records", "redrive", "--stack", "missing"]) == 2
    assert "stack missing" in capsys.readouterr().err
