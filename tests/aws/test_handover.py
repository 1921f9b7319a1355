"""The one owner of alias `live`: every deploy sequence, as CloudFormation's custom resource
requests reach the controller (avsev.rollout.handover), against moto's Lambda, CloudWatch and S3,
with the real predict and explain handlers answering the parity check in process (moto cannot
run a function without Docker).

A CloudFormation request: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html
(Create, then Update with OldResourceProperties whenever a property changed, Delete)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import zipfile
from typing import Any

import boto3
import pytest
from avsev.rollout import handover as handover_module
from avsev.rollout.aliases import Rollouts, s3_audit_entries
from avsev.rollout.autopilot import autopilot_for
from avsev.rollout.handover import FOLLOWER, LEADER, golden_property, handle
from avsev.serving.bundle import read_card
from stack_support import promote_report
from test_aws_monitoring import BUCKET, aws  # noqa: F401  (fixture)

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
ROUTES = {"predict": "/predict/batch", "explain": "/predict/explain"}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return {}\n")
    return buf.getvalue()


class Deploys:
    """What CloudFormation does on each `cdk deploy`: publish a version of each rolled-out
    function when its code or model changed, then send the custom resource request."""

    def __init__(self, services: dict[str, Any], bundles: dict[str, Any]) -> None:
        self.aws, self.bundles = services, bundles
        self.lam = boto3.client("lambda")
        self.now = T0
        self.props: dict[str, dict[str, Any]] = {}
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        for name in ROUTES:
            self.lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role["Role"]["Arn"],
                Handler="app.handler",
                Code={"ZipFile": _zip()},
            )

    def pilot(self):
        return autopilot_for(
            lambda_client=self.lam,
            s3=self.aws["s3"],
            bucket=BUCKET,
            function="predict",
            cloudwatch=self.aws["cloudwatch"],
            alarm_prefix="avsev-predict-",
            followers={"explain": "avsev-explain-"},
            clock=lambda: self.now,
        )

    def publish(self, name: str, model: str) -> str:
        self.lam.update_function_configuration(
            FunctionName=name,
            Environment={"Variables": {"MODEL_BUNDLE_PATH": str(self.bundles[model])}},
        )
        return self.lam.publish_version(FunctionName=name)["Version"]

    def request(self, name: str, version: str, model: str, **extra: Any) -> dict[str, Any]:
        card = read_card(self.bundles[model])
        props = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:autopilot",
            "FunctionName": name,
            "AliasName": "live",
            "Version": version,
            "ModelVersion": model,
            "SmokeRoute": ROUTES[name],
            "Golden": golden_property(card),
            "Role": LEADER if name == "predict" else FOLLOWER,
            **extra,
        }
        old = self.props.get(name)
        event = {
            "RequestType": "Create" if old is None else "Update",
            "ResponseURL": "https://cloudformation-custom-resource-response.example/put",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/avsev-prod/1",
            "RequestId": f"req-{name}-{version}",
            "LogicalResourceId": f"{name.title()}LiveAliasHandover",
            "ResourceType": "Custom::LiveAlias",
            "ResourceProperties": props,
        }
        if old is not None:
            event["OldResourceProperties"] = old
            event["PhysicalResourceId"] = f"{name}:live"
        response = handle(event, lambda_client=self.lam, pilot=self.pilot())
        if response["Status"] == "SUCCESS":
            self.props[name] = props
        return response

    def deploy(self, model: str, *, changed: tuple[str, ...] = ("predict", "explain")) -> dict:
        """One stack update: a new version of each changed function, and the requests."""
        out = {}
        for name in ROUTES:
            version = (
                self.publish(name, model) if name in changed else self.props[name]["Version"]
            )
            out[name] = self.request(name, version, model)
        return out

    def weights(self, name: str = "predict") -> dict[str, float]:
        return Rollouts(self.lam, name).state().weights

    def audit(self, name: str = "predict") -> list[dict[str, Any]]:
        return s3_audit_entries(self.aws["s3"], BUCKET, name)


@pytest.fixture(scope="module")
def third_bundle(real_model_dir, tmp_path_factory):
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    out = tmp_path_factory.mktemp("bundles-1.2.0")
    return build_bundle(real_model_dir, "1.2.0", out_root=out, arch=host_arch())


@pytest.fixture()
def deploys(aws, real_bundle_dir, candidate_bundle, third_bundle, monkeypatch):  # noqa: F811
    """Versions answer the parity check from the real handlers with the bundle their
    configuration names (the invocation moto cannot do)."""
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module

    third = third_bundle
    bundles = {"1.0.0": real_bundle_dir, "1.1.0": candidate_bundle, "1.2.0": third}
    world = Deploys(aws, bundles)
    loaded: dict[tuple[str, str], Any] = {}

    def invoker(client: Any, qualified: str):
        name, version = qualified.rsplit(":", 1)
        config = client.get_function_configuration(FunctionName=name, Qualifier=version)
        bundle = config["Environment"]["Variables"]["MODEL_BUNDLE_PATH"]
        key = (name, bundle)
        if key not in loaded:
            loaded[key] = load_handler_module(name, {"MODEL_BUNDLE_PATH": bundle})

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            with contextlib.redirect_stdout(io.StringIO()):
                return loaded[key].handler(event, LocalContext(function_name=name))

        return invoke

    monkeypatch.setattr(handover_module, "lambda_invoker", invoker)
    return world


def test_a_deploy_sequence_has_one_defined_outcome_at_each_step(deploys):
    # first deploy: the alias is created on the first version, nothing canaries
    first = deploys.deploy("1.0.0")
    assert {r["Status"] for r in first.values()} == {"SUCCESS"}
    assert deploys.weights() == {"1": 1.0} and deploys.weights("explain") == {"1": 1.0}
    assert first["predict"]["PhysicalResourceId"] == "predict:live"

    # a new model: parity, handover, 10% canary; explain waits for predict's promotion
    second = deploys.deploy("1.1.0")
    assert second["predict"]["Status"] == "SUCCESS", second["predict"]["Reason"]
    assert deploys.weights() == {"1": 0.9, "2": 0.1}
    assert deploys.weights("explain") == {"1": 1.0}
    assert "waiting" in second["explain"]["Reason"]

    # a deploy mid-rollout supersedes the candidate: the newest version starts from 10% anew
    third = deploys.deploy("1.2.0")
    assert third["predict"]["Status"] == "SUCCESS"
    assert deploys.weights() == {"1": 0.9, "3": 0.1}
    ends = [e for e in deploys.audit() if e["action"] == "autopilot-end"]
    assert ends[-1]["candidate_version"] == "2"
    assert ends[-1]["outcome"] == "superseded by version 3"

    # the evidence promotes it: 50%, then 100%; explain takes the promoted model's version
    pilot = deploys.pilot()
    run = pilot.current_run()
    assert run is not None and run["candidate_version"] == "3"
    for _ in range(2):
        deploys.now += dt.timedelta(hours=2)
        _promote_report(deploys, champion="1.0.0", candidate="1.2.0")
        out = deploys.pilot().tick()
    assert out["state"] == "promoted" and out["followers"] == {"explain": "3"}
    assert deploys.weights() == {"3": 1.0} and deploys.weights("explain") == {"3": 1.0}

    # a deploy that changes no function (an alarm threshold, a schedule): no request reaches
    # the controller (CloudFormation sends Update only for changed properties), and even a
    # repeated request changes nothing: the promoted version keeps serving
    again = deploys.request("predict", "3", "1.2.0")
    assert again["Status"] == "SUCCESS" and "unchanged" in again["Reason"]
    assert deploys.weights() == {"3": 1.0}

    # a code change of predict with the same model: a canary that needs no A/B evidence
    code_change = deploys.deploy("1.2.0", changed=("predict",))
    assert code_change["predict"]["Status"] == "SUCCESS"
    assert deploys.weights() == {"3": 0.9, "4": 0.1}
    for _ in range(2):
        deploys.now += dt.timedelta(hours=2)
        out = deploys.pilot().tick()
    assert out["state"] == "promoted" and "same model" in out["reason"]

    # a hand rollback, then the deploy again: the alias stays where the person left it
    deploys.deploy("1.1.0", changed=("predict",))
    assert deploys.weights() == {"4": 0.9, "5": 0.1}
    deploys.pilot().r.rollback()
    assert deploys.pilot().tick()["state"] == "ended"
    assert deploys.weights() == {"4": 1.0}
    unchanged = deploys.request("predict", "5", "1.1.0")
    assert "unchanged" in unchanged["Reason"] and deploys.weights() == {"4": 1.0}

    # every change of the alias is in the audit, by the controller
    moves = [e for e in deploys.audit() if "after" in e]
    assert moves[-1]["after"] == deploys.weights()
    assert [e["action"] for e in deploys.audit() if e["action"] == "handover"] == ["handover"] * 4


def test_a_version_that_fails_the_parity_check_never_serves(deploys):
    deploys.deploy("1.0.0")
    version = deploys.publish("predict", "1.1.0")
    card = read_card(deploys.bundles["1.1.0"])
    card.golden[0].probabilities = [0.25, 0.25, 0.25, 0.25]
    tampered = json.dumps(card.golden_set().to_dict())
    out = deploys.request("predict", version, "1.1.0", Golden=tampered)
    assert out["Status"] == "FAILED"
    assert f"version {version} of predict fails the parity check" in out["Reason"]
    assert deploys.weights() == {"1": 1.0}  # the stack update rolls back; nothing moved
    assert not [e for e in deploys.audit() if e["action"] == "handover"]


def test_a_stack_rolled_back_after_the_handover_takes_the_candidate_back(deploys):
    """A later resource fails: CloudFormation updates the custom resource back to its old
    properties (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks.html),
    so the version the failed deploy handed over stops serving."""
    deploys.deploy("1.0.0")
    deploys.deploy("1.1.0")
    assert deploys.weights() == {"1": 0.9, "2": 0.1}
    deploys.props["predict"]["Version"] = "2"
    back = deploys.request("predict", "1", "1.0.0")
    assert back["Status"] == "SUCCESS" and "serving" in back["Reason"]
    assert deploys.weights() == {"1": 1.0}
    assert deploys.audit()[-1]["outcome"] == "rolled back: its deploy was rolled back"
    assert deploys.pilot().current_run() is None


def test_delete_leaves_the_alias_and_errors_are_answers(deploys):
    deploys.deploy("1.0.0")
    delete = handle(
        {
            "RequestType": "Delete",
            "ResponseURL": "https://example/put",
            "PhysicalResourceId": "predict:live",
            "ResourceProperties": deploys.props["predict"],
        },
        lambda_client=deploys.lam,
        pilot=deploys.pilot(),
    )
    assert delete["Status"] == "SUCCESS" and delete["PhysicalResourceId"] == "predict:live"
    assert deploys.weights() == {"1": 1.0}
    broken = handle(
        {"RequestType": "Create", "ResponseURL": "x", "ResourceProperties": {"FunctionName": "f"}},
        lambda_client=deploys.lam,
        pilot=deploys.pilot(),
    )
    assert broken["Status"] == "FAILED" and "lacks Version" in broken["Reason"]


def test_an_old_alarm_never_stops_a_new_candidate(deploys):
    """The candidate's alarms are those whose version dimension names it; an alarm still in
    ALARM about version 2 says nothing about version 3."""
    cw = deploys.aws["cloudwatch"]
    deploys.deploy("1.0.0")
    deploys.deploy("1.1.0")
    for version, name in (("2", "avsev-predict-old-errors"), ("3", "avsev-predict-new-errors")):
        cw.put_metric_alarm(
            AlarmName=name,
            MetricName="Errors",
            Namespace="AWS/Lambda",
            Dimensions=[{"Name": "ExecutedVersion", "Value": version}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    cw.set_alarm_state(AlarmName="avsev-predict-old-errors", StateValue="ALARM", StateReason="t")
    deploys.deploy("1.2.0")  # supersedes 2 despite its alarm
    assert deploys.weights() == {"1": 0.9, "3": 0.1}
    deploys.now += dt.timedelta(minutes=5)
    assert deploys.pilot().tick()["state"] == "holding"
    cw.set_alarm_state(AlarmName="avsev-predict-new-errors", StateValue="ALARM", StateReason="t")
    out = deploys.pilot().tick()
    assert out["state"] == "rolled_back" and "avsev-predict-new-errors" in out["reason"]


def test_an_alarm_state_older_than_its_configuration_is_not_counted():
    """PutMetricAlarm on an existing alarm leaves its state as it was until the next evaluation
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html):
    a deploy that re-points an alarm at the new version carries the old version's state."""

    class CloudWatch:
        def describe_alarms(self, **_: Any) -> dict[str, Any]:
            at = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
            return {
                "MetricAlarms": [
                    {
                        "AlarmName": "stale",
                        "StateValue": "ALARM",
                        "Dimensions": [{"Name": "ExecutedVersion", "Value": "3"}],
                        "StateUpdatedTimestamp": at,
                        "AlarmConfigurationUpdatedTimestamp": at + dt.timedelta(minutes=1),
                    },
                    {
                        "AlarmName": "fresh",
                        "StateValue": "ALARM",
                        "Dimensions": [{"Name": "FunctionVersion", "Value": "3"}],
                        "StateUpdatedTimestamp": at + dt.timedelta(minutes=2),
                        "AlarmConfigurationUpdatedTimestamp": at,
                    },
                    {"AlarmName": "other", "StateValue": "ALARM",
                     "Dimensions": [{"Name": "ExecutedVersion", "Value": "2"}]},
                    {"AlarmName": "function-wide", "StateValue": "OK", "Dimensions": []},
                ]
            }  # fmt: skip

    states = Rollouts(None, "predict", cloudwatch=CloudWatch(), alarm_prefix="p").alarm_states("3")
    assert states == {"stale": "INSUFFICIENT_DATA", "fresh": "ALARM", "function-wide": "OK"}


def _promote_report(deploys: Deploys, *, champion: str, candidate: str) -> None:
    report = promote_report(deploys.now, champion, candidate)
    deploys.aws["s3"].put_object(
        Bucket=BUCKET, Key="reports/ab/latest.json", Body=report.model_dump_json().encode()
    )
