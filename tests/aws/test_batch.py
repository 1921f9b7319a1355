"""Batch scoring against moto S3: real files in, outputs checked row by row against the
runtime, rejects, malformed files, duplicate events, the split path, Parquet, the daily run;
odd files (nested JSON lines, formula cells) and AWS's own event shapes (tests/data/events)."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pandas as pd
import pytest
from avsev.batch import Job, OutputName, process
from avsev.data import load
from avsev.parquet import read_parquet
from avsev.serving.schema import AccidentReport
from avsev_tools.pipeline.train import matrix
from aws_events import eventbridge, s3_notification, sample, via_sns, via_sns_sqs, via_sqs
from lambda_support import FakeContext, load_function, scheduled_event
from moto import mock_aws

BUCKET = "avsev-batch"
WHEN = "2026-11-20T06:00:00Z"


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture()
def batch_fn(s3, real_bundle_dir, monkeypatch):
    return load_function(
        "batch_score",
        {
            "MODEL_BUNDLE_PATH": str(real_bundle_dir),
            "BATCH_BUCKET": BUCKET,
            "BATCH_CHUNK_ROWS": "4000",
            "BATCH_SAFETY_MS": "0",
        },
        monkeypatch,
    )


def created(key: str, etag: str = "etag-1") -> dict:
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": WHEN,
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "etag": etag, "size": 1}},
    }


def read_csv(s3, key: str) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()),
        dtype=str,
        keep_default_na=False,
    )


def expected_predictions(bundle, path) -> pd.DataFrame:
    data = load(path, require_label=False)
    proba = np.array(bundle.model.predict_many(matrix(bundle.spec, data.reports()).tolist()))
    return pd.DataFrame(
        {
            "ev_id": data.frame["ev_id"],
            "predicted": np.array(bundle.classes)[proba.argmax(axis=1)],
            "prob_fatal": proba[:, 0],
        }
    )


def test_real_csv_is_scored_row_by_row_like_the_runtime(
    s3, batch_fn, real_data_path, real_bundle, capsys
):
    s3.put_object(Bucket=BUCKET, Key="batch/in/ntsb.csv", Body=real_data_path.read_bytes())
    summary = batch_fn.handler(created("batch/in/ntsb.csv"), FakeContext())
    assert summary["status"] == "ok" and summary["rows_read"] == summary["scored"] == 18_587
    out = read_csv(s3, "batch/out/ntsb.csv")
    assert list(out.columns) == [
        "ev_id",
        "predicted_severity",
        "prob_fatal",
        "prob_serious",
        "prob_minor",
        "prob_none",
        "model_version",
        "scored_at",
        "completeness",
        "warnings",
    ]
    expected = expected_predictions(real_bundle, real_data_path)
    assert list(out["ev_id"]) == list(expected["ev_id"])
    assert list(out["predicted_severity"]) == list(expected["predicted"])
    assert (
        np.abs(out["prob_fatal"].astype(float).to_numpy() - expected["prob_fatal"].to_numpy()).max()
        < 1e-6
    )
    assert set(out["model_version"]) == {"1.0.0"} and set(out["scored_at"]) == {WHEN}
    # completeness and warnings as the API answers each report
    reports = load(real_data_path, require_label=False).reports()[::97]
    fields = [AccidentReport.model_validate(r).fields() for r in reports]
    rows = [real_bundle.spec.encode(f) for f in fields]
    completeness, warnings = real_bundle.inputs.assess_rows(fields, rows)
    sample = out.iloc[::97]
    assert sample["completeness"].astype(float).tolist() == completeness
    assert sample["warnings"].tolist() == [
        ";".join(f"{w['field']}:{w['code']}" for w in ws) for ws in warnings
    ]
    assert 0 < min(completeness) < max(completeness) == 1.0 and any(warnings)
    stored = json.loads(
        s3.get_object(Bucket=BUCKET, Key="batch/out/ntsb.summary.json")["Body"].read()
    )
    assert stored["scored"] == 18_587 and stored["invocations"] == 1  # enough time left: one pass
    assert read_csv(s3, "batch/out/ntsb.rejected.csv").empty
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    assert emf and emf[-1]["BatchScored"] == [18587.0]
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["service"]
    ]  # what the alarm watches


def test_invalid_rows_are_rejected_with_row_and_reason_not_dropped(s3, batch_fn, real_bundle):
    rows = [
        '{"ev_id": "A1", "make": "Cessna", "weather_condition": "IMC"}',
        '{"ev_id": "A2", "pilot_tot_time": 10, "pilot_90_days": 20}',
        "not json",
        '{"ev_id": "A4", "aircraft_age": "old"}',
        '{"ev_id": "A5", "event_date": "2015-06-01"}',
    ]
    s3.put_object(Bucket=BUCKET, Key="batch/in/reports.jsonl", Body="\n".join(rows).encode())
    summary = batch_fn.handler(created("batch/in/reports.jsonl"), FakeContext())
    assert (summary["rows_read"], summary["scored"], summary["rejected"]) == (5, 2, 3)
    assert list(read_csv(s3, "batch/out/reports.csv")["ev_id"]) == ["A1", "A5"]
    rejected = read_csv(s3, "batch/out/reports.rejected.csv")
    assert list(rejected["row"]) == ["2", "3", "4"]
    assert (
        "pilot_90_days" in rejected["reason"][0]
        and "exceeds pilot_tot_time" in rejected["reason"][0]
    )
    assert "not a JSON object" in rejected["reason"][1]
    assert "aircraft_age" in rejected["reason"][2] and "integer" in rejected["reason"][2]


@pytest.mark.parametrize(
    "name, body, message",
    [
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary"),
        ("utf16.csv", "Event_Id,Event_Date\n1,1/1/05\n".encode("utf-16"), "binary"),
        ("noheader.csv", b"ERA05LA001,3/4/05,Cessna\nERA05LA002,3/5/05,Piper\n", "Event_Date"),
        ("empty.csv", b"", "empty"),
    ],
)
def test_malformed_files_give_an_error_summary_and_no_output(s3, batch_fn, name, body, message):
    s3.put_object(Bucket=BUCKET, Key=f"batch/in/{name}", Body=body)
    summary = batch_fn.handler(created(f"batch/in/{name}"), FakeContext())
    assert summary["status"] == "error" and message in summary["error"]
    keys = OutputName.of_output(name).final_keys()
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=keys["summary"])["Body"].read())
    assert stored["status"] == "error"
    listed = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/out/").get("Contents", [])
    ]
    assert keys["output"] not in listed


def test_the_same_event_twice_writes_the_same_output_once(s3, batch_fn, real_data_path):
    s3.put_object(
        Bucket=BUCKET, Key="batch/in/twice.csv", Body=real_data_path.read_bytes()[:200_000]
    )
    first = batch_fn.handler(created("batch/in/twice.csv"), FakeContext())
    output = s3.get_object(Bucket=BUCKET, Key="batch/out/twice.csv")["Body"].read()
    again = batch_fn.handler(created("batch/in/twice.csv"), FakeContext())
    assert again["status"] == "already_done" and again["scored"] == first["scored"]
    assert s3.get_object(Bucket=BUCKET, Key="batch/out/twice.csv")["Body"].read() == output
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="batch/out/twice.csv").get(
        "Versions", []
    )
    assert len(versions) == 1


def test_split_path_gives_the_same_output_as_one_pass(s3, real_data_path, real_bundle, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="batch/in/split.csv", Body=real_data_path.read_bytes())
    whole, _ = process(
        s3, real_bundle, Job(BUCKET, "batch/in/split.csv", "e1", "whole.csv", WHEN), tmp_path
    )
    job: Job | None = Job(BUCKET, "batch/in/split.csv", "e2", "split.csv", WHEN)
    invocations = 0
    while job is not None:  # each round is one invocation that stops after one 3,000-row chunk
        invocations += 1
        summary, job = process(
            s3, real_bundle, job, tmp_path, chunk_rows=3000, keep_going=lambda chunks: False
        )
    assert invocations == 7 and summary["invocations"] == 7
    assert summary["scored"] == whole["scored"] == 18_587
    assert read_csv(s3, "batch/out/split.csv").equals(read_csv(s3, "batch/out/whole.csv"))


def test_parquet_output_when_asked(s3, real_data_path, real_bundle, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="batch/in/p.csv", Body=real_data_path.read_bytes()[:100_000])
    summary, _ = process(
        s3, real_bundle, Job(BUCKET, "batch/in/p.csv", "e", "p.parquet", WHEN), tmp_path
    )
    local = tmp_path / "got.parquet"
    local.write_bytes(s3.get_object(Bucket=BUCKET, Key="batch/out/p.parquet")["Body"].read())
    frame = read_parquet(local)
    assert len(frame) == summary["scored"] > 100 and frame["prob_none"].between(0, 1).all()


def test_daily_run_scores_what_arrived_recently(s3, batch_fn, real_data_path):
    body = real_data_path.read_bytes()
    s3.put_object(Bucket=BUCKET, Key="incoming/a.csv", Body=body[:150_000])
    s3.put_object(Bucket=BUCKET, Key="incoming/b.jsonl", Body=b'{"ev_id": "J1", "make": "Piper"}\n')
    now = pd.Timestamp.now(tz="UTC").isoformat()
    summary = batch_fn.handler(scheduled_event(now), FakeContext())
    day = now[:10]
    out = read_csv(s3, f"batch/out/daily-{day}.csv")
    assert (
        summary["files"] == ["incoming/a.csv", "incoming/b.jsonl"] and len(out) == summary["scored"]
    )
    assert "J1" in set(out["ev_id"])


def test_the_daily_run_returns_a_typed_result_and_stores_what_the_function_answers(
    s3, batch_fn, tmp_path
):
    from avsev.batch import DailyResult, run_daily

    s3.put_object(Bucket=BUCKET, Key="incoming/b.jsonl", Body=b'{"ev_id": "J1", "make": "Piper"}\n')
    s3.put_object(Bucket=BUCKET, Key="incoming/c.parquet", Body=b"not parquet")
    now = pd.Timestamp.now(tz="UTC").isoformat()
    result = run_daily(s3, batch_fn.BUNDLE, BUCKET, now, tmp_path, days=1)
    assert isinstance(result, DailyResult)
    assert result.files == ["incoming/b.jsonl", "incoming/c.parquet"]
    assert result.summary.scored == 1 and result.scored_at == now
    (error,) = result.file_errors
    assert error.startswith("incoming/c.parquet: ")
    key = result.summary.outputs["summary"].removeprefix(f"s3://{BUCKET}/")
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert stored == json.dumps(result.as_dict(), indent=1).encode()
    assert list(json.loads(stored))[-3:] == ["files", "file_errors", "scored_at"]


def test_offline_score_command(real_bundle_dir, real_data_path, tmp_path, capsys):
    from avsev_tools.cli import main

    out = tmp_path / "scored.csv"
    assert (
        main(
            [
                "score",
                "--bundle",
                str(real_bundle_dir),
                "--data",
                str(real_data_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["scored"] == 18_587
        and out.is_file()
        and (tmp_path / "scored.summary.json").is_file()
    )


# ---- odd files and real AWS events ----------------------------------------------------------

ODD_KEY = "batch/in/my report (1).jsonl"
ODD_SENT = "batch/in/my+report+%281%29.jsonl"
"""The key S3 notifications send for `ODD_KEY` (URL-encoded, a space as +)."""
TWO_REPORTS = b'{"ev_id": "A1", "make": "Cessna"}\n{"ev_id": "A2", "make": "Piper"}\n'


def summary_at(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def out_keys(s3) -> list[str]:
    return [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("Contents", [])
    ]


@pytest.mark.parametrize(
    "wrap",
    [lambda e: e, via_sqs, via_sns, via_sns_sqs],
    ids=["s3-notification", "s3-sqs", "s3-sns", "s3-sns-sqs"],
)
def test_a_url_encoded_key_is_decoded_and_scored(s3, batch_fn, wrap):
    s3.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=TWO_REPORTS)
    summary = batch_fn.handler(wrap(s3_notification(BUCKET, ODD_SENT)), FakeContext())
    assert summary["status"] == "ok" and summary["scored"] == 2
    assert list(read_csv(s3, "batch/out/my report (1).csv")["ev_id"]) == ["A1", "A2"]


@pytest.mark.parametrize("sent", [ODD_KEY, ODD_SENT], ids=["as-is", "encoded"])
def test_eventbridge_object_created_finds_the_object_either_way(s3, batch_fn, sent):
    """The stack's own trigger (infra/constructs/batch.py: EventBridge "Object Created")."""
    s3.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=TWO_REPORTS)
    summary = batch_fn.handler(eventbridge(BUCKET, sent), FakeContext())
    assert summary["status"] == "ok" and summary["scored"] == 2


def test_a_key_with_a_real_plus_is_found_by_the_key_as_sent(s3, batch_fn):
    s3.put_object(Bucket=BUCKET, Key="batch/in/c++.jsonl", Body=TWO_REPORTS)
    summary = batch_fn.handler(eventbridge(BUCKET, "batch/in/c++.jsonl"), FakeContext())
    assert summary["status"] == "ok" and summary["scored"] == 2
    assert "batch/out/c++.csv" in out_keys(s3)


@pytest.mark.parametrize(
    "event",
    [
        s3_notification(BUCKET, "batch/in/gone.csv"),
        via_sqs(s3_notification(BUCKET, "batch/in/gone.csv")),
        eventbridge(BUCKET, "batch/in/gone.csv"),
    ],
    ids=["s3-notification", "s3-sqs", "eventbridge"],
)
def test_an_object_deleted_before_the_run_gives_an_error_summary(s3, batch_fn, event):
    summary = batch_fn.handler(event, FakeContext())
    assert summary["status"] == "error" and "batch/in/gone.csv" in summary["error"]
    stored = summary_at(s3, "batch/out/gone.summary.json")
    assert stored["status"] == "error" and "does not exist" in stored["error"]
    assert "batch/out/gone.csv" not in out_keys(s3)


@pytest.mark.parametrize(
    "event",
    [
        s3_notification(BUCKET, "batch/in/kept.jsonl", name="s3EventDeleteObject"),
        via_sqs(s3_notification(BUCKET, "batch/in/kept.jsonl", name="s3EventDeleteObject")),
        eventbridge(BUCKET, "batch/in/kept.jsonl", deleted=True),
        sample("s3TestEventSqs"),
    ],
    ids=["object-removed", "object-removed-sqs", "eventbridge-deleted", "s3-test-event-sqs"],
)
def test_removals_and_the_s3_test_event_are_ignored(s3, batch_fn, event):
    s3.put_object(Bucket=BUCKET, Key="batch/in/kept.jsonl", Body=TWO_REPORTS)
    summary = batch_fn.handler(event, FakeContext())
    assert summary["status"] == "ignored" and summary["skipped"]
    assert out_keys(s3) == ["batch/in/kept.jsonl"]  # nothing scored, nothing written


@pytest.mark.parametrize(
    "event",
    [
        sample("snsEvent"),
        sample("snsSqsEvent"),
        sample("eventBridgeEvent"),
        {"Records": [{"s3": {"object": {}}, "eventName": "ObjectCreated:Put"}]},
        {"avsev_continuation": {"bucket": BUCKET}},
        {},
    ],
    ids=["sns-hello", "sns-sqs-hello", "eventbridge-ec2", "s3-no-key", "bad-continuation", "empty"],
)
def test_an_unknown_event_shape_is_a_logged_error_not_a_crash(s3, batch_fn, event, caplog):
    answer = batch_fn.handler(event, FakeContext())
    assert answer["status"] == "rejected" and answer["error"]["code"] == "invalid_event"
    assert answer["error"]["details"][0]["field"] == "event"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == ["event rejected"] and not errors[0].exc_info


def test_a_deeply_nested_json_line_is_one_rejected_row(s3, batch_fn):
    lines = [
        b'{"ev_id": "A1", "make": "Cessna"}',
        b'{"ev_id": "A2", "make": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 50_000,
        b'{"ev_id": "A4", "make": "Piper"}',
    ]
    s3.put_object(Bucket=BUCKET, Key="batch/in/deep.jsonl", Body=b"\n".join(lines))
    summary = batch_fn.handler(created("batch/in/deep.jsonl"), FakeContext())
    assert (summary["status"], summary["rows_read"], summary["scored"]) == ("ok", 4, 2)
    assert list(read_csv(s3, "batch/out/deep.csv")["ev_id"]) == ["A1", "A4"]
    rejected = read_csv(s3, "batch/out/deep.rejected.csv")
    assert list(rejected["row"]) == ["2", "3"]
    assert all("nested deeper than" in reason for reason in rejected["reason"])


FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tX", "\rY"]


def test_rejected_rows_cannot_run_as_spreadsheet_formulas(s3, real_bundle, tmp_path):
    lines = [json.dumps({"ev_id": f, "make": "Cessna"}) for f in FORMULAS]
    lines.append(json.dumps({"ev_id": "OK1", "aircraft_age": "=1+1"}))
    s3.put_object(Bucket=BUCKET, Key="batch/in/formulas.jsonl", Body="\n".join(lines).encode())
    job = Job(BUCKET, "batch/in/formulas.jsonl", "e", "formulas.csv", WHEN)
    summary, _ = process(s3, real_bundle, job, tmp_path, chunk_rows=2)  # parts joined again
    assert summary["rejected"] == len(FORMULAS) + 1
    rejected = read_csv(s3, "batch/out/formulas.rejected.csv")
    assert rejected["ev_id"].tolist()[: len(FORMULAS)] == ["'" + f for f in FORMULAS]
    for cell in [*rejected["ev_id"], *rejected["reason"], *rejected["row"]]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_a_continuation_whose_parts_are_not_staged_gives_an_error_summary(s3, batch_fn):
    s3.put_object(Bucket=BUCKET, Key="batch/in/late.jsonl", Body=TWO_REPORTS)
    job = Job(BUCKET, "batch/in/late.jsonl", "e", "late.csv", WHEN, skip_rows=1, part=2)
    summary = batch_fn.handler(job.as_event(), FakeContext())
    assert summary["status"] == "error" and "part 0" in summary["error"]
    assert summary_at(s3, "batch/out/late.summary.json")["status"] == "error"
