"""The stored rollups as typed values (avsev.monitoring.rollup_types): a stored rollup reads
and writes back the same bytes; a document that is not a rollup of its kind is refused with
an error naming the key, the row and what is allowed, and the jobs carry on without it (the
report says which day lacked it and why; the rollup job computes it again)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
from avsev.monitoring import rollups
from avsev.monitoring.jobs import (
    ABResult,
    Clients,
    DriftResult,
    RollupResult,
    run_ab_analysis,
    run_drift_check,
    run_rollup,
)
from avsev.monitoring.query import Skipped
from avsev.monitoring.rollup_types import (
    PROBABILITY_SUMS,
    DriftRollup,
    LabelsRollup,
    RollupError,
    ServedRollup,
)
from avsev.serving.bundle import read_card
from avsev.serving.schema import SEVERITIES
from moto import mock_aws

DATA = Path(__file__).resolve().parents[1] / "data" / "reports"
STORED: dict[str, dict] = json.loads((DATA / "rollups.json").read_text())
CARD = read_card(DATA)  # its card.json
BUCKET = "avsev-data"
AT = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
KINDS = {"served": ServedRollup, "labels": LabelsRollup, "drift": DriftRollup}


def kind_of(key: str) -> type:
    return KINDS[key.split("/")[1]]


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def stored_bytes(doc: dict) -> bytes:
    """A rollup as the rollup job writes it."""
    return json.dumps(doc, separators=(",", ":")).encode()


def test_every_stored_rollup_reads_and_writes_back_the_same_bytes(s3):
    assert {key.split("/")[1] for key in STORED} == set(KINDS)
    for key, doc in STORED.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=stored_bytes(doc))
        rollup = rollups.read_rollup(s3, BUCKET, key, kind_of(key))
        assert isinstance(rollup, kind_of(key))
        rollups.write_rollup(s3, BUCKET, f"again/{key}", rollup)
        again = s3.get_object(Bucket=BUCKET, Key=f"again/{key}")["Body"].read()
        assert again == stored_bytes(doc), key


def test_a_rollup_written_before_a_column_existed_keeps_its_shape():
    """Rows without `hour` or the probability sums (older rollups) read, and are written
    back without them; a present column is read as typed."""
    key = "rollups/served/dt=2026-11-19.json"
    doc = STORED[key]
    old = {
        **doc,
        "rows": [{k: v for k, v in r.items() if k not in PROBABILITY_SUMS} for r in doc["rows"]],
    }
    rollup = ServedRollup.from_doc(old)
    assert rollup.to_doc() == old
    assert all(r.hour is None and r.probability_sums is None for r in rollup.rows)
    full = ServedRollup.from_doc(doc).rows[0]
    assert full.probability_sums == tuple(doc["rows"][0][c] for c in PROBABILITY_SUMS)
    assert len(PROBABILITY_SUMS) == len(SEVERITIES)


_SERVED_KEY = "rollups/served/dt=2026-11-19.json"


def _served(**row_change: object) -> dict:
    """The stored served rollup (with hours) with row 1 changed."""
    doc = json.loads(json.dumps(STORED[_SERVED_KEY]))
    for i, row in enumerate(doc["rows"]):
        row["hour"] = i % 24
    doc["rows"][1].update(row_change)
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "allowed"),
    [
        (_served(n="12"), "rows[1].n", "an integer"),
        (_served(predicted="Severe"), "rows[1].predicted", ", ".join(SEVERITIES)),
        (_served(hour=24), "rows[1].hour", "0 to 23"),
        (_served(shadow="no"), "rows[1].shadow", "true, false"),
        (_served(latency_ms=3.2), "rows[1].latency_ms", "model_version, shadow"),
        (
            {"rows": [{"shadow": False, "predicted": "None", "latency_bin": 0, "n": 1}]},
            "rows[0].model_version",
            "model_version is required",
        ),
        (_served() | {"rows": [*_served()["rows"], {"n": 1}]}, "rows[479].model_version", ""),
        (  # a row without the hour the others have
            _served() | {"rows": [*_served()["rows"], STORED[_SERVED_KEY]["rows"][0]]},
            "rows[479].hour",
            "p_max, entropy, hour",
        ),
        ({"rows": {}}, "rows", "a list of rows"),
        ({"computed_at": "x"}, "rows", "rows is required"),
    ],
)
def test_a_served_rollup_that_is_not_one_is_refused_naming_the_key(doc, field, allowed):
    with pytest.raises(RollupError) as refused:
        ServedRollup.from_doc(doc)
    assert refused.value.detail.field == field
    assert allowed in (refused.value.detail.allowed or "")
    assert field in str(refused.value)


def test_a_row_missing_a_key_is_refused_naming_the_row():
    doc = json.loads(json.dumps(STORED["rollups/labels/dt=2026-11-19.json"]))
    del doc["rows"][3]["n"]
    with pytest.raises(RollupError, match=r"rows\[3\].n: missing") as refused:
        LabelsRollup.from_doc(doc)
    assert refused.value.detail.row == 3


def test_a_labels_row_of_the_wrong_kind_or_class_is_refused():
    doc = json.loads(json.dumps(STORED["rollups/labels/dt=2026-11-19.json"]))
    doc["rows"][0]["kind"] = "served_shadow"
    with pytest.raises(RollupError, match=r"rows\[0\].kind: 'served_shadow'.*served, shadow"):
        LabelsRollup.from_doc(doc)
    doc = json.loads(json.dumps(STORED["rollups/labels/dt=2026-11-19.json"]))
    doc["rows"][2]["actual"] = "Unknown"
    with pytest.raises(RollupError, match=r"rows\[2\].actual: 'Unknown' is not a severity class"):
        LabelsRollup.from_doc(doc)


def test_a_drift_rollup_missing_a_count_is_refused_naming_the_feature():
    doc = json.loads(json.dumps(STORED["rollups/drift/1.0.0/dt=2026-11-19.json"]))
    del doc["fields"]["make"]["counts"]
    with pytest.raises(RollupError, match=r"fields.make.counts: missing"):
        DriftRollup.from_doc(doc)
    doc = json.loads(json.dumps(STORED["rollups/drift/1.0.0/dt=2026-11-19.json"]))
    doc["predicted"]["Severe"] = 3
    with pytest.raises(RollupError, match=r"predicted key: 'Severe' is not a severity class"):
        DriftRollup.from_doc(doc)
    doc["predicted"].pop("Severe")
    doc["fields"]["dec_latitude"]["grid"]["98"] = -1
    with pytest.raises(RollupError, match=r"fields.dec_latitude.grid.98: -1 is negative"):
        DriftRollup.from_doc(doc)


def _store(s3, changed: dict[str, dict]) -> None:
    for key, doc in {**STORED, **changed}.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=stored_bytes(doc))


def test_the_reports_leave_out_a_refused_rollup_and_say_why(s3):
    """A row without `n` in one day's served rollup: the A/B report is still written, that
    day named as lacking its rollup, with the object and the key at fault."""
    bad = "rollups/served/dt=2026-11-19.json"
    broken = _served()
    del broken["rows"][1]["n"]
    _store(s3, {bad: broken, "rollups/drift/1.0.0/dt=2026-11-22.json": {"rows": 120}})
    clients = Clients(s3, boto3.client("cloudwatch"), boto3.client("sns"))
    ab = run_ab_analysis(clients, BUCKET, AT)
    assert isinstance(ab, ABResult)
    assert ab.report.skipped is not None
    assert "2026-11-19" in ab.report.skipped.days_without_rollup
    (refused,) = ab.report.skipped.skipped_objects
    assert refused["object"] == bad and "rows[1].n: missing" in refused["reason"]
    drift = run_drift_check(clients, BUCKET, CARD, AT + dt.timedelta(days=2), days=1)
    assert isinstance(drift, DriftResult) and drift.report.status == "insufficient_data"
    assert drift.report.skipped is not None
    assert drift.report.skipped.days_without_rollup == ["2026-11-22"]
    (refused,) = drift.report.skipped.skipped_objects
    assert "predicted: missing" in refused["reason"]


class NoRecords:
    """An engine over no records (every query answers no rows)."""

    def __init__(self) -> None:
        self.skipped = Skipped()

    def query(self, sql: str) -> list[dict]:
        return []


def test_the_rollup_job_computes_a_refused_rollup_again(s3):
    """A stored rollup that lost its `computed_at` (or is not JSON) is due again: recomputed
    and named, not a KeyError."""
    day = AT.date()
    served = rollups.rollup_key("served", day - dt.timedelta(days=1))  # over: final once stamped
    labels = rollups.rollup_key("labels", day - dt.timedelta(days=3))
    kept = rollups.rollup_key("served", day - dt.timedelta(days=3))
    s3.put_object(Bucket=BUCKET, Key=served, Body=b'{"rows": []}')
    s3.put_object(Bucket=BUCKET, Key=labels, Body=b"not json")
    s3.put_object(Bucket=BUCKET, Key=kept, Body=stored_bytes(STORED[kept]))
    out = run_rollup(NoRecords(), s3, BUCKET, None, AT, days=7)
    assert isinstance(out, RollupResult)
    assert served in out.computed and labels in out.computed and kept not in out.computed
    assert [r["object"] for r in out.refused] == [labels]
    assert "not JSON" in out.refused[0]["reason"]
    again = rollups.read_rollup(s3, BUCKET, served, ServedRollup)
    assert again is not None and again.computed_at == AT.isoformat() and again.rows == []
