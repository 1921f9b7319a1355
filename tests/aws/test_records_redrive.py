"""`avsev records redrive` against moto: failed records go back into their own stream, in the
form the stream's processors expect, and error objects are removed only when all went back."""

from __future__ import annotations

import base64
import gzip
import json

import boto3
import pytest
from moto import mock_aws

BUCKET = "avsev-test-data"
OUT = "avsev-test-delivered"


def error_line(raw: bytes) -> str:
    """One line of a Firehose error object (its documented fields; rawData is what counts)."""
    return json.dumps(
        {
            "attemptsMade": 1,
            "arrivalTimestamp": 1764144000000,
            "errorCode": "DataFormatConversion.MalformedData",
            "errorMessage": "test",
            "rawData": base64.b64encode(raw).decode(),
        }
    )


def cloudwatch_payload(*messages: str) -> bytes:
    return gzip.compress(
        json.dumps(
            {
                "messageType": "DATA_MESSAGE",
                "logEvents": [{"id": "1", "timestamp": 1, "message": m} for m in messages],
            }
        ).encode()
    )


@pytest.fixture()
def aws(fake_aws):
    with mock_aws():
        s3 = boto3.client("s3")
        firehose = boto3.client("firehose")
        for b in (BUCKET, OUT):
            s3.create_bucket(Bucket=b)
        for table in ("predictions", "outcomes"):
            firehose.create_delivery_stream(
                DeliveryStreamName=f"s-{table}",
                ExtendedS3DestinationConfiguration={
                    "RoleARN": "arn:aws:iam::123456789012:role/f",
                    "BucketARN": f"arn:aws:s3:::{OUT}",
                    "Prefix": f"{table}/",
                },
            )
        yield s3, firehose


def delivered(s3, table: str) -> list[bytes]:
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=OUT, Prefix=f"{table}/").get("Contents", [])
    ]
    return [s3.get_object(Bucket=OUT, Key=k)["Body"].read() for k in keys]


def test_redrive_puts_each_record_back_into_its_stream_and_removes_the_object(aws):
    from avsev.records_redrive import redrive

    s3, firehose = aws
    compressed = cloudwatch_payload('{"record_type": "prediction", "ev_id": "A1"}')
    plain = b'{"record_type": "outcome", "ev_id": "B1"}\n{"record_type": "outcome", "ev_id": "B2"}'
    key_p = "firehose-errors/predictions/format-conversion-failed/dt=2026-11-26/x-1"
    key_o = "firehose-errors/outcomes/processing-failed/dt=2026-11-26/y-1"
    s3.put_object(Bucket=BUCKET, Key=key_p, Body=error_line(compressed).encode())
    s3.put_object(Bucket=BUCKET, Key=key_o, Body=(error_line(plain) + "\n").encode())
    streams = {"predictions": "s-predictions", "outcomes": "s-outcomes"}

    dry = redrive(s3, firehose, BUCKET, streams, dry_run=True)
    assert (dry.objects, dry.records, dry.redelivered) == (2, 2, 0)
    assert delivered(s3, "predictions") == []

    result = redrive(s3, firehose, BUCKET, streams)
    assert (result.objects, result.records, result.redelivered, result.failed) == (2, 2, 2, 0)
    assert sorted(result.deleted) == sorted([key_p, key_o])
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="firehose-errors/")
    # the compressed CloudWatch Logs payload goes back unchanged, to the predictions stream
    assert compressed in b"".join(delivered(s3, "predictions"))
    # plain JSON lines are wrapped as a CloudWatch Logs payload, for the stream's processors
    sent = b"".join(delivered(s3, "outcomes"))
    start = sent.index(b"\x1f\x8b")
    payload = json.loads(gzip.decompress(sent[start:]))
    assert payload["messageType"] == "DATA_MESSAGE"
    assert [json.loads(e["message"])["ev_id"] for e in payload["logEvents"]] == ["B1", "B2"]


def test_records_refused_by_firehose_keep_their_error_object(aws, monkeypatch):
    from avsev import records_redrive

    s3, firehose = aws
    key = "firehose-errors/predictions/processing-failed/dt=2026-11-26/z"
    s3.put_object(Bucket=BUCKET, Key=key, Body=error_line(b'{"ev_id": "C"}').encode())
    monkeypatch.setattr(records_redrive.time, "sleep", lambda s: None)

    class Refusing:
        exceptions = firehose.exceptions

        def put_record_batch(self, **kw):
            n = len(kw["Records"])
            return {
                "FailedPutCount": n,
                "RequestResponses": [{"ErrorCode": "ServiceUnavailable"}] * n,
            }

    result = records_redrive.redrive(s3, Refusing(), BUCKET, {"predictions": "s-predictions"})
    assert (result.failed, result.kept, result.deleted) == (1, [key], [])
    assert s3.get_object(Bucket=BUCKET, Key=key)


def test_unknown_table_and_odd_keys_are_clear_errors(aws):
    from avsev.records_redrive import redrive, table_of

    s3, firehose = aws
    with pytest.raises(ValueError, match="not an error object"):
        table_of("predictions/dt=2026-11-26/x")
    s3.put_object(Bucket=BUCKET, Key="firehose-errors/other/x/y", Body=error_line(b"{}").encode())
    with pytest.raises(ValueError, match="no stream for table 'other'"):
        redrive(s3, firehose, BUCKET, {"predictions": "s-predictions"})


def test_cli_reads_the_stack_outputs(aws, capsys):
    from avsev.cli import main

    s3, _ = aws
    s3.put_object(
        Bucket=BUCKET,
        Key="firehose-errors/predictions/processing-failed/dt=2026-11-26/w",
        Body=error_line(cloudwatch_payload('{"ev_id": "D"}')).encode(),
    )
    cfn = boto3.client("cloudformation")
    outputs = {
        "DataBucket": BUCKET,
        "PredictionsStream": "s-predictions",
        "OutcomesStream": "s-outcomes",
    }
    cfn.create_stack(
        StackName="avsev-test",
        TemplateBody=json.dumps(
            {
                "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()},
            }
        ),
    )
    assert main(["records", "redrive", "--stack", "avsev-test"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["records"], out["redelivered"]) == (1, 1)
    assert main(["records", "redrive", "--stack", "missing"]) == 2
