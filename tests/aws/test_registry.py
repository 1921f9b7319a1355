"""The model registry in S3 (moto): immutable versions with lineage, approvals that emit an
EventBridge event, aliases that move only to approved versions, deploys that refuse an
unapproved version unless forced, and clear refusals that change nothing."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from avsev.rollout.registry import APPROVED_EVENT, EVENT_SOURCE, Location, Registry, RegistryError
from avsev_tools.cli import main
from moto import mock_aws

BUCKET = "avsev-registry"


@pytest.fixture()
def aws(fake_aws):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="deploys")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="approved", EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
        events.put_targets(Rule="approved", Targets=[{"Id": "q", "Arn": arn}])
        yield {"s3": s3, "events": events, "sqs": sqs, "queue": queue}


def registry(aws) -> Registry:
    return Registry(aws["s3"], Location(BUCKET), events=aws["events"])


def test_publish_is_immutable_with_lineage(aws, real_bundle_dir, real_data_path, tmp_path):
    reg = registry(aws)
    entry = reg.publish(real_bundle_dir, training_data=real_data_path)
    version = entry["version"]
    assert entry["published"] and reg.versions() == [version]
    lineage = entry["lineage"]
    assert len(lineage["training_data"]["sha256"]) == 64 and lineage["training_data"]["rows"] > 1000
    assert lineage["git"]["commit"] and isinstance(lineage["git"]["dirty"], bool)
    assert entry["files"]["model.so"] and entry["card"]["metrics"]["test"]["weighted_f1"] > 0.4
    assert entry["published_by"] and entry["published_at"]
    # the same files again: nothing to do
    assert reg.publish(real_bundle_dir)["published"] is False
    # other files under the same version: refused, nothing changed
    changed = tmp_path / "b"
    shutil.copytree(real_bundle_dir, changed)
    (changed / "trees.bin").write_bytes((changed / "trees.bin").read_bytes() + b"\0")
    with pytest.raises(RegistryError, match="immutable"):
        reg.publish(changed)
    assert reg.entry(version)["files"] == entry["files"]
    assert [a["action"] for a in reg.audit_trail()] == ["publish"]


def test_approval_aliases_and_deploys(aws, real_bundle_dir, tmp_path):
    reg = registry(aws)
    version = reg.publish(real_bundle_dir)["version"]
    # an alias to an unapproved version is refused
    with pytest.raises(RegistryError, match="pending: an alias moves only to an approved"):
        reg.set_alias("production", version)
    # a deploy of an unapproved version is refused unless forced, and the force is audited
    with pytest.raises(RegistryError, match="not approved"):
        reg.for_deploy(version)
    assert reg.for_deploy(version, force="hotfix, approved by phone") == version
    with pytest.raises(RegistryError, match="needs a reason"):
        reg.approve(version, " ")
    reg.approve(version, "beats 1.0.0 on the held-out years")
    # the approval is an EventBridge event a deploy pipeline can follow
    msgs = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)["Messages"]
    event = json.loads(msgs[0]["Body"])
    assert event["source"] == EVENT_SOURCE and event["detail-type"] == APPROVED_EVENT
    assert event["detail"]["version"] == version
    reg.set_alias("production", version, "first production model")
    assert reg.resolve("production") == version
    assert reg.show(version)["aliases"] == ["production"]
    # rejecting what production points at is refused
    with pytest.raises(RegistryError, match="move the alias first"):
        reg.reject(version, "changed my mind")
    # the bundle comes back whole, checked against its sha256s
    fetched = reg.fetch(reg.for_deploy("production"), tmp_path / "deploy")
    assert (fetched / "model.so").read_bytes() == (real_bundle_dir / "model.so").read_bytes()
    actions = [a["action"] for a in reg.audit_trail()]
    assert actions == ["publish", "forced-deploy", "approved", "alias"]


def test_unknown_corrupt_and_bad_references_are_refused(aws, real_bundle_dir):
    reg = registry(aws)
    with pytest.raises(RegistryError, match=r"unknown version 9\.9\.9"):
        reg.show("9.9.9")
    with pytest.raises(RegistryError, match="not a semantic version"):
        reg.approve("latest", "why not")
    with pytest.raises(RegistryError, match="points at no version"):
        reg.resolve("production")
    version = reg.publish(real_bundle_dir)["version"]
    aws["s3"].put_object(
        Bucket=BUCKET, Key=f"registry/versions/{version}/entry.json", Body=b"{not json"
    )
    with pytest.raises(RegistryError, match="corrupt registry entry"):
        reg.approve(version, "looks fine")
    assert reg.list()[0]["status"] == "corrupt"
    assert reg.decision(version)["status"] == "pending"  # nothing half-changed


def test_the_cli_publishes_approves_and_resolves(aws, real_bundle_dir, tmp_path, capsys):
    url = f"s3://{BUCKET}/teams/severity"
    assert main(["registry", "publish", str(real_bundle_dir), "--registry", url]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    assert main(["registry", "alias", version, "--alias", "candidate", "--registry", url]) == 1
    assert "only to an approved version" in capsys.readouterr().err
    assert main(["registry", "approve", version, "--reason", "ok", "--registry", url]) == 0
    capsys.readouterr()
    assert main(["registry", "alias", version, "--alias", "production", "--registry", url]) == 0
    capsys.readouterr()
    into = tmp_path / "bundles"
    assert main(["registry", "resolve", "production", "--registry", url, "--into", str(into)]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (
        resolved["version"] == version
        and (into / f"avsev-severity-{version}" / "card.json").exists()
    )
    assert main(["registry", "list", "--registry", url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "approved" and row["aliases"] == ["production"]
    assert (
        aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="teams/severity/versions/")["KeyCount"] > 0
    )


def test_a_deploy_takes_an_approved_registry_version(aws, real_bundle_dir):
    """`-c model=production -c registry=s3://...` (make deploy MODEL=production): the CDK app
    ships the approved bundle, fetched and checked; an unapproved one only when forced."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT))
    from infra.app import from_registry
    from infra.config import AppConfig

    reg = registry(aws)
    version = reg.publish(real_bundle_dir)["version"]
    url = f"s3://{BUCKET}/registry/"
    with pytest.raises(RegistryError, match="not approved"):
        from_registry(AppConfig(model=version, registry=url))
    forced = from_registry(AppConfig(model=version, registry=url, force="hotfix"))
    assert json.loads((forced.bundle / "card.json").read_text())["version"] == version
    reg.approve(version, "ok")
    reg.set_alias("production", version)
    config = from_registry(AppConfig(model="production", registry=url))
    assert config.bundle.name == f"avsev-severity-{version}"
    assert (config.bundle / "model.so").read_bytes() == (real_bundle_dir / "model.so").read_bytes()
    assert [a["action"] for a in reg.audit_trail()][-1] == "alias"
    assert "forced-deploy" in [a["action"] for a in reg.audit_trail()]
    with pytest.raises(ValueError, match="needs registry"):
        from_registry(AppConfig(model="production"))
