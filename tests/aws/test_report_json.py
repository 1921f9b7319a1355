"""The A/B and drift reports' JSON, as the jobs write it to S3, is the contract of every
reader (the CLI, the dashboard, the autopilot, people): it must not change shape when the
code that makes it does. The expected files in tests/data/reports were written by the jobs
before the reports became typed models (commit fc27f0d), from the rollups stored next to them
(real NTSB rows served by a model trained on the shipped data, plus synthetic A/B traffic
with a shadow); the reports made from the same rollups today must keep that contract: the same
shape, field names, order, strings and integers, and floats to a relative 1e-9 (tests/contract.py
says why), and the markdown the same text with each number to its last printed digit."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import boto3
import pytest
from avsev.monitoring.jobs import Clients, run_ab_analysis, run_drift_check
from avsev.serving.card import Card
from contract import assert_same_json, assert_same_text, json_differences
from moto import mock_aws

DATA = Path(__file__).resolve().parents[1] / "data" / "reports"
BUCKET = "avsev-data"
AT = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
SMALL_AT = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
EMPTY_AT = AT - dt.timedelta(days=30)
CARD = Card.from_dict(json.loads((DATA / "card.json").read_text()))
CASES = {
    "ab": lambda c: run_ab_analysis(c, BUCKET, AT),
    "ab_accuracy": lambda c: run_ab_analysis(c, BUCKET, AT, decision_metric="accuracy"),
    "ab_empty": lambda c: run_ab_analysis(c, BUCKET, EMPTY_AT),
    "drift_big": lambda c: run_drift_check(c, BUCKET, CARD, AT, days=2),
    "drift_small": lambda c: run_drift_check(c, BUCKET, CARD, SMALL_AT, days=1),
    "drift_empty": lambda c: run_drift_check(c, BUCKET, CARD, EMPTY_AT),
}
STAMP = re.compile(r'"generated_at": "[^"]+"')


@pytest.fixture()
def clients(fake_aws):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for key, doc in json.loads((DATA / "rollups.json").read_text()).items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
        yield Clients(s3, boto3.client("cloudwatch"), boto3.client("sns"))


def written(clients: Clients, case: str) -> dict[str, str]:
    """The report's JSON (its time stamp blanked) and markdown, as written to S3."""
    out = CASES[case](clients)
    files = {
        kind: clients.s3.get_object(Bucket=BUCKET, Key=out.keys[kind])["Body"].read().decode()
        for kind in ("json", "markdown")
    }
    return {"json": STAMP.sub('"generated_at": "-"', files["json"]), "markdown": files["markdown"]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_files_keep_their_contract(clients, case):
    files = written(clients, case)
    assert_same_json(files["json"], STAMP.sub('"generated_at": "-"', (DATA / f"{case}.json").read_text()))
    assert_same_text(files["markdown"], (DATA / f"{case}.md").read_text())


def test_the_comparison_can_fail():
    """A last-digit move passes; a field renamed, reordered or retyped, or a number moved past
    the precision, fails."""
    assert not json_differences({"a": 2.534118729856513}, {"a": 2.5341187298565124})
    assert json_differences({"a": 2.5341}, {"a": 2.5342})
    assert json_differences({"b": 1, "a": 2}, {"a": 2, "b": 1})
    assert json_differences({"a": 1.0}, {"a": 1})
    assert json_differences({"a": "x"}, {"a": "y"})
    assert json_differences({"a": [1, 2]}, {"a": [1, 2, 3]})
    with pytest.raises(AssertionError):
        assert_same_text("p = 0.1236", "p = 0.1234")
    with pytest.raises(AssertionError):
        assert_same_text("promote at p = 0.1234", "rollback at p = 0.1234")
    assert_same_text("p = 0.1235 (n 12)", "p = 0.1234 (n 12)")
