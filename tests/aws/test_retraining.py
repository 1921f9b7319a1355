"""One retraining on moto's S3, from the record tables as Firehose leaves them: the real NTSB
reports served and their outcomes, the real training file, a real XGBoost fit compiled with
tl2cgen, every gate against the shipped model, and the registry entry it publishes; then the
loop around it when the retraining crashes half-way (nothing published, once more, an alert)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import pytest
from avsev.monitoring.offline import write_tables
from avsev.rollout.lifecycle import Lifecycle, Policy
from avsev.rollout.registry import Location, Registry
from avsev.serving.bundle import read_card
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.schema import SEVERITIES, AccidentReport
from avsev_tools.local.retraining import retrain_tick
from avsev_tools.pipeline import build
from avsev_tools.pipeline.retrain import MIN_HOLDOUT, RetrainingFailed, run_retraining
from card_support import card_with
from moto import mock_aws

BUCKET = "avsev-data"
AT = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
QUICK = {"rounds": 40}
"""A quicker fit than the shipped one: the test is about the path, not the model's quality."""


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def serve_and_label(s3, real_data, tmp_path: Path, n: int) -> None:
    """The newest `n` reports of the file served over the last days, each with its outcome,
    written as the record tables and uploaded where Firehose puts them."""
    reports = real_data.reports()[-n:]
    truth = list(real_data.frame["severity"])[-n:]
    records: list = []
    for i, (report, severity) in enumerate(zip(reports, truth, strict=True)):
        parsed = AccidentReport.model_validate(report)
        served = AT - dt.timedelta(days=3) + dt.timedelta(minutes=5 * i)
        records.append(
            PredictionRecord(
                request_id=f"r-{i}",
                ev_id=parsed.ev_id,
                timestamp=served,
                model_name="avsev-severity",
                model_version="1.0.0",
                function_version="1",
                features=parsed.model_dump(mode="json", exclude={"ev_id"}),
                probabilities={s: 0.25 for s in SEVERITIES},
                predicted="None",
                latency_ms=1.0,
            )
        )
        records.append(
            OutcomeRecord(
                request_id=f"o-{i}",
                ev_id=parsed.ev_id,
                timestamp=served + dt.timedelta(hours=6),
                actual_severity=severity,
            )
        )
    root = tmp_path / "tables"
    write_tables(root, records)
    for path in root.rglob("*.parquet"):
        s3.upload_file(str(path), BUCKET, path.relative_to(root).as_posix())


def registry_of(s3) -> Registry:
    return Registry(s3, Location.parse(f"s3://{BUCKET}/registry/"))


def test_a_retraining_publishes_a_candidate_with_its_lineage_and_gates(
    s3, real_data, shipped_data_path, real_bundle_dir, tmp_path
):
    serve_and_label(s3, real_data, tmp_path, 900)
    registry = registry_of(s3)
    out = run_retraining(
        s3=s3,
        bucket=BUCKET,
        registry=registry,
        data_path=shipped_data_path,
        champion_bundle=real_bundle_dir,
        work=tmp_path / "work",
        at=AT,
        run_id="retrain-test",
        train_options=QUICK,
    )
    champion = read_card(real_bundle_dir).version
    assert out["version"] == "1.1.0" and champion == "1.0.0"  # a retrain is a MINOR version
    shown = registry.show("1.1.0")
    lineage = shown["lineage"]["retraining"]
    assert lineage["traffic_rows"] == 900 and lineage["holdout_rows"] == 225
    assert lineage["traffic_rows_trained"] == 675 and lineage["file_rows_relabelled"] == 900
    assert lineage["champion"] == "1.0.0" and lineage["run_id"] == "retrain-test"
    assert lineage["outcome_window"][1] == AT.date().isoformat()
    assert len(lineage["snapshot_sha256"]) == 64
    assert shown["lineage"]["training_data"]["sha256"]  # the file, as any publish records it
    names = [g["name"] for g in shown["gates"]["gates"]]
    assert names[:3] == ["reproducible", "numerically_stable", "parity"]
    assert {"not_worse_than_champion", "slices", "calibration", "serving_cost"} <= set(names)
    by_name = {g["name"]: g for g in shown["gates"]["gates"]}
    assert by_name["reproducible"]["passed"] and by_name["parity"]["passed"]
    assert by_name["numerically_stable"]["passed"]
    # the decision follows the gates: approved only when every one passed (policy auto)
    all_passed = all(g["passed"] for g in shown["gates"]["gates"])
    assert shown["decision"]["status"] == ("approved" if all_passed else "pending")
    assert out["decision"]["status"] == shown["decision"]["status"]


def test_too_little_labelled_traffic_publishes_nothing(
    s3, real_data, shipped_data_path, real_bundle_dir, tmp_path
):
    serve_and_label(s3, real_data, tmp_path, MIN_HOLDOUT - 1)
    registry = registry_of(s3)
    with pytest.raises(RetrainingFailed, match=f"{MIN_HOLDOUT - 1} labelled rows"):
        run_retraining(
            s3=s3,
            bucket=BUCKET,
            registry=registry,
            data_path=shipped_data_path,
            champion_bundle=real_bundle_dir,
            work=tmp_path / "work",
            at=AT,
        )
    assert registry.versions() == []


def test_a_retraining_that_crashes_half_way_publishes_nothing_is_retried_once_then_alerts(
    s3, real_data, shipped_data_path, real_bundle_dir, tmp_path, monkeypatch
):
    serve_and_label(s3, real_data, tmp_path, 300)
    compiles: list[str] = []

    def crash(model_dir, version, **kwargs):
        compiles.append(version)
        raise MemoryError("the compiler was killed")

    monkeypatch.setattr(build, "build_bundle", crash)
    alerts: list[tuple[str, str]] = []
    registry = registry_of(s3)
    result = retrain_tick(
        s3=s3,
        bucket=BUCKET,
        registry=registry,
        data_path=shipped_data_path,
        champion_bundle=real_bundle_dir,
        card=read_card(real_bundle_dir),
        at=AT,
        alert=lambda subject, message: alerts.append((subject, message)),
        policy=Policy(),
        by_hand="new labels",
        work_root=tmp_path / "runs",
        train_options=QUICK,
    )
    assert compiles == ["1.1.0", "1.1.0"]  # trained and compiling, twice
    assert [r["attempt"] for r in result.runs] == [1, 2]
    assert all("the compiler was killed" in r["failed"] for r in result.runs)
    assert result.decision.action == "failed" and len(alerts) == 1
    assert "MemoryError" in alerts[0][1]
    assert registry.versions() == [] and registry.audit_trail() == []
    actions = [e["action"] for e in Lifecycle(s3, BUCKET).audit()]
    assert actions == [
        "retrain-start",
        "retrain-failed",
        "retrain-restart",
        "retrain-failed",
        "retrain-gave-up",
    ]


def produced(version: str, *, approved: bool) -> dict:
    """What a retraining returns (the candidate's gates and the registry's decision)."""
    gates = [
        {"name": "calibration", "passed": approved, "reason": "ECE 0.05 vs 0.03"},
        {"name": "parity", "passed": True, "reason": "within 1e-6"},
    ]
    status = "approved" if approved else "pending"
    return {
        "version": version,
        "bundle": f"/work/retrain/bundles/avsev-severity-{version}",
        "decision": {"status": status, "reason": "gates"},
        "gates": gates,
    }


def test_the_loop_deploys_an_approved_candidate_by_its_registry_version_and_never_a_held_one(s3):
    """What the retraining build does after `avsev lifecycle run` (`make deploy MODEL=<version>`
    for an approved candidate, nothing but an alert for a held one), the local loop does: every
    outcome in the loop's audit."""
    deploys: list[str] = []
    alerts: list[tuple[str, str]] = []
    outcomes = iter([produced("1.1.0", approved=True), produced("1.2.0", approved=False)])

    def deploy(version: str) -> dict:
        deploys.append(version)
        if version == "1.3.0":
            raise RuntimeError("the parity check failed: the stack rolled back")
        return {"status": "UPDATE_COMPLETE", "versions": {"predict": "2"}, "created": []}

    def tick(at: dt.datetime) -> object:
        return retrain_tick(
            s3=s3,
            bucket=BUCKET,
            registry=None,
            data_path=Path("unused"),
            champion_bundle=Path("unused"),
            card=card_with(version="1.0.0"),
            at=at,
            deploy=deploy,
            alert=lambda subject, message: alerts.append((subject, message)),
            by_hand="new labels",
            execute=lambda run, work: next(outcomes),
        )

    approved = tick(AT)
    assert deploys == ["1.1.0"] and approved.deployed["status"] == "UPDATE_COMPLETE"
    assert alerts == []
    held = tick(AT + dt.timedelta(days=4))
    assert deploys == ["1.1.0"] and held.deployed is None  # a held candidate never deploys
    assert len(alerts) == 1 and "calibration" in alerts[0][1]
    outcomes = iter([produced("1.3.0", approved=True)])
    failed = tick(AT + dt.timedelta(days=8))
    assert deploys == ["1.1.0", "1.3.0"] and failed.deployed is None
    assert "not deployed" in alerts[1][0] and "parity" in alerts[1][1]

    audit = Lifecycle(s3, BUCKET).audit()
    assert [e["action"] for e in audit] == [
        "retrain-start",
        "retrain-end",
        "candidate-deployed",
        "retrain-start",
        "retrain-end",
        "candidate-held",
        "retrain-start",
        "retrain-end",
        "candidate-deploy-failed",
    ]
    deployed, held_entry, failed_entry = audit[2], audit[5], audit[8]
    assert deployed["version"] == "1.1.0" and deployed["run_id"] == audit[0]["run_id"]
    assert deployed["deploy"] == {"status": "UPDATE_COMPLETE", "versions": {"predict": "2"}}
    assert held_entry["version"] == "1.2.0" and held_entry["status"] == "pending"
    assert failed_entry["version"] == "1.3.0" and "parity" in failed_entry["reason"]
