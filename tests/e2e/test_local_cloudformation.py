"""The local CloudFormation (avsev_tools.local.cloudformation) against a moto server, with a
custom resource function of this test's own: requests as CloudFormation sends them (Create;
Update only when the properties changed, with the old ones and the physical id answered; Delete
of the old physical id after an update that answered a new one), the response read from the
pre-signed S3 URL, and the rollback of a failed update (the old properties sent back, the
versions published meanwhile retained) or of a failed create."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import boto3
import pytest
from avsev_tools.local.assembly import Assembly
from avsev_tools.local.cloudformation import STATE_BUCKET, CloudFormation, DeployError

PROVIDER = '''
import json, os, urllib.request

def handler(event, context):
    """A custom resource: logs each request, answers as its properties say."""
    props = event["ResourceProperties"]
    with open(os.environ["REQUEST_LOG"], "a") as log:
        log.write(json.dumps({k: v for k, v in event.items() if k != "ResponseURL"}) + "\\n")
    kind = event["RequestType"]
    fails = props.get("FailCreate" if kind == "Create" else "FailUpdate") == "true"
    if kind == "Delete":
        fails = False
    if props.get("Silent") == "true" and kind != "Delete":
        raise RuntimeError("never answers")
    physical = event.get("PhysicalResourceId") or f"thing-{props['Id']}"
    if kind == "Update" and props["Id"] != event["OldResourceProperties"]["Id"]:
        physical = f"thing-{props['Id']}"
    body = {
        "Status": "FAILED" if fails else "SUCCESS",
        "Reason": "asked to fail" if fails else "done",
        "PhysicalResourceId": physical,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {"Echo": props.get("Value", "")},
    }
    request = urllib.request.Request(
        event["ResponseURL"], data=json.dumps(body).encode(), method="PUT",
        headers={"Content-Type": ""},
    )
    urllib.request.urlopen(request, timeout=30).read()
    return {"answered": body["Status"]}
'''


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def aws(moto_endpoint, monkeypatch):
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=30
    )
    for k, v in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


class Stack:
    """Writes cloud assemblies of a small stack `t` and deploys them with one stand-in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "requests.jsonl"
        self.cfn = CloudFormation()
        self.count = 0

    def assembly(self, *, thing_id="a", value="1", **flags: bool) -> Assembly:
        self.count += 1
        folder = self.root / f"cdk.out.{self.count}"
        for name, code in (("provider", PROVIDER), ("worker", "def handler(e, c): return {}\n")):
            (folder / f"asset.{name}").mkdir(parents=True, exist_ok=True)
            (folder / f"asset.{name}" / "app.py").write_text(code)
        version = f"WorkerVersion{value}"  # as the CDK names a version: by what it pins
        resources = {
            "Data0A1B2C3D": {"Type": "AWS::S3::Bucket"},
            "ProviderFunctionAAAA1111": function("provider", {"REQUEST_LOG": str(self.log)}),
            "WorkerFunctionBBBB2222": function("worker", {"VALUE": value}),
            version: {
                "Type": "AWS::Lambda::Version",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {"FunctionName": {"Ref": "WorkerFunctionBBBB2222"}},
            },
            "Thing": {
                "Type": "Custom::Thing",
                "Properties": {
                    "ServiceToken": {"Fn::GetAtt": ["ProviderFunctionAAAA1111", "Arn"]},
                    "Id": thing_id,
                    "Value": value,
                    "Count": 3,
                    "Version": {"Fn::GetAtt": [version, "Version"]},
                    "Worker": {"Ref": "WorkerFunctionBBBB2222"},
                    **{k: v for k, v in flags.items()},
                },
            },
            "ThingAlarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmName": "t-thing",
                    "Namespace": "T",
                    "MetricName": "Errors",
                    "Dimensions": [{"Name": "Echo", "Value": {"Fn::GetAtt": ["Thing", "Echo"]}}],
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                },
            },
        }
        outputs = {"Echo": {"Value": {"Fn::GetAtt": ["Thing", "Echo"]}}}
        (folder / "t.template.json").write_text(
            json.dumps({"Resources": resources, "Outputs": outputs})
        )
        (folder / "t.assets.json").write_text(
            json.dumps(
                {
                    "files": {
                        name: {
                            "source": {"path": f"asset.{name}", "packaging": "zip"},
                            "destinations": {"d": {"bucketName": "b", "objectKey": f"{name}.zip"}},
                        }
                        for name in ("provider", "worker")
                    }
                }
            )
        )
        return Assembly.read(folder, "t")

    def deploy(self, **kw):
        return self.cfn.deploy(self.assembly(**kw))

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return out

    def worker_versions(self) -> list[str]:
        versions = boto3.client("lambda").list_versions_by_function(
            FunctionName="t-workerfunctionbbbb2222"
        )["Versions"]
        return [v["Version"] for v in versions if v["Version"] != "$LATEST"]


def function(asset: str, env: dict) -> dict:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {"S3Bucket": {"Fn::Sub": "cdk-${AWS::AccountId}"}, "S3Key": f"{asset}.zip"},
            "Handler": "app.handler",
            "Runtime": "python3.12",
            "Environment": {"Variables": env},
        },
    }


def brief(request: dict) -> tuple:
    """(type, physical id, the properties that move, the old ones)."""
    keep = ("Id", "Value", "Version", "FailUpdate")
    props = {k: v for k, v in request["ResourceProperties"].items() if k in keep}
    old = request.get("OldResourceProperties")
    return (
        request["RequestType"],
        request.get("PhysicalResourceId"),
        props,
        {k: v for k, v in old.items() if k in keep} if old else None,
    )


def test_create_then_update_only_when_the_properties_change(aws, tmp_path):
    stack = Stack(tmp_path)
    # Given a first deploy: the custom resource receives Create, as CloudFormation sends it
    first = stack.deploy()
    assert first.status == "CREATE_COMPLETE" and first.versions == {"WorkerVersion1": "1"}
    (create,) = stack.requests()
    assert brief(create) == ("Create", None, {"Id": "a", "Value": "1", "Version": "1"}, None)
    assert create["ResourceProperties"]["Count"] == "3"  # every scalar a string
    assert create["ResourceType"] == "Custom::Thing" and create["LogicalResourceId"] == "Thing"
    assert create["ServiceToken"].endswith(":function:t-providerfunctionaaaa1111")
    assert create["StackId"].startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/t/")
    # its answer's Data is what Fn::GetAtt reads (the alarm's dimension, the output)
    assert first.outputs == {"Echo": "1"}
    alarm = boto3.client("cloudwatch").describe_alarms(AlarmNames=["t-thing"])["MetricAlarms"][0]
    assert alarm["Dimensions"] == [{"Name": "Echo", "Value": "1"}]
    # and the response was read from the stand-in's own bucket (where the URL pointed)
    keys = boto3.client("s3").list_objects_v2(Bucket=STATE_BUCKET, Prefix="responses/t/Thing/")
    assert keys["KeyCount"] == 1

    # When the same template is deployed again: no request at all
    again = stack.deploy()
    assert again.status == "UPDATE_COMPLETE" and stack.requests() == []
    assert "Thing" in again.unchanged and again.versions == {}

    # When a property changes (a new worker version too): one Update, with the old ones
    changed = stack.deploy(value="2")
    (update,) = stack.requests()
    assert brief(update) == (
        "Update",
        "thing-a",
        {"Id": "a", "Value": "2", "Version": "2"},
        {"Id": "a", "Value": "1", "Version": "1"},
    )
    assert changed.versions == {"WorkerVersion2": "2"} and changed.outputs == {"Echo": "2"}
    # the version map is the stack's: the removed version is retained, not in the map
    state = stack.cfn.stack("t")
    assert state["Versions"] == {"WorkerVersion2": "2"} and stack.worker_versions() == ["1", "2"]
    assert any(
        e["LogicalResourceId"] == "WorkerVersion1" and e["ResourceStatus"] == "DELETE_SKIPPED"
        for e in changed.events
    )


def test_a_failed_update_rolls_back_with_the_old_properties(aws, tmp_path):
    stack = Stack(tmp_path)
    stack.deploy(value="1")
    stack.requests()
    # When an update's custom resource answers FAILED
    with pytest.raises(DeployError, match="asked to fail") as failed:
        stack.deploy(value="2", FailUpdate=True)
    assert failed.value.status == "UPDATE_ROLLBACK_COMPLETE"
    # Then it got the Update, then the rollback's Update back to the old properties
    assert [brief(r) for r in stack.requests()] == [
        (
            "Update",
            "thing-a",
            {"Id": "a", "Value": "2", "Version": "2", "FailUpdate": "true"},
            {"Id": "a", "Value": "1", "Version": "1"},
        ),
        (
            "Update",
            "thing-a",
            {"Id": "a", "Value": "1", "Version": "1"},
            {"Id": "a", "Value": "2", "Version": "2", "FailUpdate": "true"},
        ),
    ]
    # the updated function is updated back; the version published meanwhile stays
    config = boto3.client("lambda").get_function_configuration(
        FunctionName="t-workerfunctionbbbb2222"
    )
    assert config["Environment"]["Variables"] == {"VALUE": "1"}
    assert stack.worker_versions() == ["1", "2"]
    state = stack.cfn.stack("t")
    assert state["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert state["Versions"] == {"WorkerVersion1": "1"}
    assert stack.cfn.code_of("t", "t-workerfunctionbbbb2222", "2")["environment"] == {"VALUE": "2"}
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in failed.value.events]
    assert ("Thing", "UPDATE_FAILED") in statuses
    assert statuses[-1] == ("t", "UPDATE_ROLLBACK_COMPLETE")

    # And the next deploy updates from the rolled-back state
    assert stack.deploy(value="3").status == "UPDATE_COMPLETE"
    (update,) = stack.requests()
    assert brief(update)[3] == {"Id": "a", "Value": "1", "Version": "1"}
    assert brief(update)[2]["Version"] == "3"


def test_a_new_physical_id_has_the_old_one_deleted_after_the_update(aws, tmp_path):
    stack = Stack(tmp_path)
    stack.deploy(thing_id="a")
    stack.requests()
    result = stack.deploy(thing_id="b")
    update, delete = stack.requests()
    assert brief(update)[:2] == ("Update", "thing-a")
    assert brief(delete) == ("Delete", "thing-a", {"Id": "a", "Value": "1", "Version": "1"}, None)
    # the Delete is the cleanup's, once every resource is updated
    order = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in result.events]
    cleanup = order.index(("t", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))
    assert order.index(("Thing", "DELETE_COMPLETE")) > cleanup
    assert order.index(("Thing", "UPDATE_COMPLETE")) < cleanup
    assert stack.cfn.stack("t")["Resources"]["Thing"]["PhysicalResourceId"] == "thing-b"


def test_a_failed_create_deletes_what_it_made_and_the_next_deploy_creates_afresh(aws, tmp_path):
    stack = Stack(tmp_path)
    with pytest.raises(DeployError) as failed:
        stack.deploy(FailCreate=True)
    assert failed.value.status == "ROLLBACK_COMPLETE"
    # the failed Create gets a Delete for the physical id it answered
    assert [brief(r)[:2] for r in stack.requests()] == [
        ("Create", None),
        ("Delete", "thing-a"),
    ]
    names = [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]]
    assert names == []  # created in the failed deploy, deleted by its rollback
    assert stack.deploy().status == "CREATE_COMPLETE"
    assert [brief(r)[:2] for r in stack.requests()] == [("Create", None)]


def test_a_function_that_never_answers_fails_the_resource(aws, tmp_path):
    stack = Stack(tmp_path)
    with pytest.raises(
        DeployError, match=r"no response from t-providerfunctionaaaa1111.*never answers"
    ):
        stack.deploy(Silent=True)
