"""The A/B and drift reports' JSON, as the jobs write it to S3, is the contract of every
reader (the CLI, the dashboard, the autopilot, people): it must not change shape when the
code that makes it does. The expected files in tests/data/reports were written by the jobs
before the reports became typed models (commit fc27f0d), from the rollups stored next to them
(real NTSB rows served by a model trained on the shipped data, plus synthetic A/B traffic
with a shadow); the reports made from the same rollups today must be the same text, and so must their markdown."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import boto3
import pytest
from avsev.monitoring.jobs import Clients, run_ab_analysis, run_drift_check
from moto import mock_aws

DATA = Path(__file__).resolve().parents[1] / "data" / "reports"
BUCKET = "avsev-data"
AT = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
SMALL_AT = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
EMPTY_AT = AT - dt.timedelta(days=30)
CARD = json.loads((DATA / "card.json").read_text())
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
        kind: clients.s3.get_object(Bucket=BUCKET, Key=out["keys"][kind])["Body"].read().decode()
        for kind in ("json", "markdown")
    }
    return {"json": STAMP.sub('"generated_at": "-"', files["json"]), "markdown": files["markdown"]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_files_are_the_same_text_as_before(clients, case):
    expected = {
        "json": STAMP.sub('"generated_at": "-"', (DATA / f"{case}.json").read_text()),
        "markdown": (DATA / f"{case}.md").read_text(),
    }
    assert written(clients, case) == expected
