"""Quality gates in the registry (moto S3): recorded with the version, shown with it, audited;
policy `auto` approves a version whose gates all pass, `manual` leaves it for a person, and a
failing gate keeps it pending with the reasons and refuses a manual approval."""

from __future__ import annotations

import boto3
import pytest
from avsev.rollout.registry import Location, Registry, RegistryError
from avsev_tools.pipeline.gates import GateResult, record
from moto import mock_aws

BUCKET = "avsev-registry"


@pytest.fixture()
def reg(fake_aws, synthetic_bundle_dir):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        registry = Registry(s3, Location(BUCKET))
        registry.publish(synthetic_bundle_dir)
        yield registry


def results(*failing: str) -> list[GateResult]:
    names = ("reproducible", "parity", "not_worse_than_champion", "slices")
    return [
        GateResult(
            n,
            n not in failing,
            0.5,
            0.1,
            f"{n} measured 0.5 against 0.1" if n in failing else f"{n} fine",
        )
        for n in names
    ]


def test_auto_policy_approves_when_every_gate_passes(reg):
    version = reg.versions()[0]
    assert reg.show(version)["gates"] is None and reg.decision(version)["status"] == "pending"
    decision = record(reg, version, results(), policy="auto")
    assert decision["status"] == "approved" and "all 4 gates passed" in decision["reason"]
    shown = reg.show(version)
    assert shown["gates"]["passed"] and shown["gates"]["policy"] == "auto"
    assert [g["name"] for g in shown["gates"]["gates"]] == [
        "reproducible",
        "parity",
        "not_worse_than_champion",
        "slices",
    ]
    assert {"name", "passed", "value", "threshold", "reason"} <= set(shown["gates"]["gates"][0])
    assert [a["action"] for a in reg.audit_trail()] == ["publish", "gates", "approved"]
    reg.set_alias("candidate", version, "gates passed")


def test_manual_policy_waits_for_a_person(reg):
    version = reg.versions()[0]
    decision = record(reg, version, results(), policy="manual")
    assert decision["status"] == "pending" and "awaiting a person" in decision["reason"]
    with pytest.raises(RegistryError, match="only to an approved version"):
        reg.set_alias("candidate", version)
    assert reg.approve(version, "read the gates, looks right")["status"] == "approved"


@pytest.mark.parametrize("policy", ["auto", "manual"])
def test_a_failing_gate_keeps_the_version_pending_with_its_reasons(reg, policy):
    version = reg.versions()[0]
    decision = record(reg, version, results("slices", "parity"), policy=policy)
    assert decision["status"] == "pending"
    assert "parity: parity measured 0.5 against 0.1" in decision["reason"]
    assert "slices: slices measured 0.5" in decision["reason"]
    assert reg.gates(version)["failed"] == ["parity", "slices"]
    with pytest.raises(RegistryError, match=r"failed its quality gates \(parity, slices\)"):
        reg.approve(version, "ship it anyway")
    assert reg.decision(version)["status"] == "pending"
    # gates that pass, recorded later, let it through
    assert record(reg, version, results(), policy="auto")["status"] == "approved"


def test_bad_records_are_refused_and_a_decided_version_keeps_its_decision(reg):
    version = reg.versions()[0]
    with pytest.raises(RegistryError, match="gate policy 'yolo'"):
        reg.record_gates(version, [r.to_dict() for r in results()], policy="yolo")
    with pytest.raises(RegistryError, match="missing reason"):
        reg.record_gates(version, [{"name": "x", "passed": True, "value": 1, "threshold": 1}])
    with pytest.raises(RegistryError, match="no gate results"):
        reg.record_gates(version, [])
    with pytest.raises(RegistryError, match="unknown version"):
        record(reg, "9.9.9", results())
    assert reg.gates(version) is None
    reg.reject(version, "superseded")
    assert record(reg, version, results(), policy="auto")["status"] == "rejected"
    assert reg.gates(version)["passed"]
