"""A deploy sequence on the local stack built from the synthesized template: every model version
goes in as `cdk deploy` puts it into AWS (a new Lambda version, the custom resource's handover,
the controller's parity check and canary), and after each step we check who serves, the audit,
the alarms, and that the stack holds no routing of its own (what `cdk diff` would compare)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import pytest
from avsev.rollout.aliases import Rollouts, s3_audit_entries
from avsev.rollout.autopilot import autopilot_for
from avsev_tools.local.stack import LocalStack
from stack_support import promote_report


@pytest.fixture(scope="module")
def third_bundle(real_model_dir, tmp_path_factory):
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    out = tmp_path_factory.mktemp("sequence-1.2.0")
    return build_bundle(real_model_dir, "1.2.0", out_root=out, arch=host_arch())


class Operator:
    """The controller as the schedule runs it, on a clock the test moves."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.now = dt.datetime.now(dt.UTC)

    def pilot(self) -> Any:
        return autopilot_for(
            lambda_client=boto3.client("lambda"),
            s3=boto3.client("s3"),
            bucket=self.stack.bucket,
            function=self.stack.functions["predict"],
            cloudwatch=boto3.client("cloudwatch"),
            alarm_prefix=self.stack.alarm_prefix("predict"),
            followers={self.stack.functions["explain"]: self.stack.alarm_prefix("explain")},
            clock=lambda: self.now,
        )

    def weights(self, fn: str = "predict") -> dict[str, float]:
        return Rollouts(boto3.client("lambda"), self.stack.functions[fn]).state().weights

    def actions(self) -> list[str]:
        entries = s3_audit_entries(boto3.client("s3"), self.stack.bucket, self.stack.functions["predict"])
        return [e["action"] for e in entries]

    def promote_report(self, champion: str, candidate: str) -> None:
        report = promote_report(self.now, champion, candidate)
        boto3.client("s3").put_object(
            Bucket=self.stack.bucket,
            Key="reports/ab/latest.json",
            Body=report.model_dump_json().encode(),
        )

    def stack_holds_no_routing(self) -> None:
        """What CloudFormation holds for the stack names no serving version and no weight: the
        deployed template has no alias, and each handover's properties are the version the
        stack published, whatever serves now."""
        state = self.stack.cfn.stack(self.stack.stack_name)
        assert state is not None
        types = {r["Type"] for r in state["Template"]["Resources"].values()}
        assert "AWS::Lambda::Alias" not in types
        assert not any(t.startswith("AWS::CodeDeploy::") for t in types)
        assert "RoutingConfig" not in str(state["Template"])

    def alarms_watch(self, version: str) -> None:
        """The predict rollout alarms judge the newest published version."""
        alarms = boto3.client("cloudwatch").describe_alarms(
            AlarmNamePrefix=self.stack.alarm_prefix("predict")
        )["MetricAlarms"]
        assert len(alarms) == 3
        for alarm in alarms:
            dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert version in (dims.get("ExecutedVersion"), dims.get("FunctionVersion")), alarm


def test_deploy_canary_supersede_promote_unrelated_change_hand_rollback_redeploy(
    real_bundle_dir, candidate_bundle, third_bundle
):
    with LocalStack([real_bundle_dir]) as stack:
        op = Operator(stack)
        assert op.weights() == {"1": 1.0} and op.weights("explain") == {"1": 1.0}
        op.stack_holds_no_routing()
        op.alarms_watch("1")

        # deploy 1.1.0: a new version, parity-checked, at 10%; explain waits for the promotion
        stack.deploy(candidate_bundle)
        assert op.weights() == {"1": 0.9, "2": 0.1} and op.weights("explain") == {"1": 1.0}
        op.stack_holds_no_routing()
        op.alarms_watch("2")

        # deploy 1.2.0 mid-rollout: it supersedes 1.1.0, and starts from 10%
        stack.deploy(third_bundle)
        assert op.weights() == {"1": 0.9, "3": 0.1}
        assert op.actions()[-5:] == [
            "rollback", "autopilot-end", "handover", "start", "autopilot-start",
        ]  # fmt: skip
        op.alarms_watch("3")

        # the evidence promotes it: 50%, then 100%; explain takes the same model
        for _ in range(2):
            op.now += dt.timedelta(hours=2)
            op.promote_report("1.0.0", "1.2.0")
            out = op.pilot().tick()
        assert out["state"] == "promoted"
        assert op.weights() == {"3": 1.0} and op.weights("explain") == {"3": 1.0}
        op.stack_holds_no_routing()

        # an unrelated change (an alarm threshold): no version, no handover; 3 keeps serving
        unrelated = stack.deploy(third_bundle, context={"p95_latency_ms": 900})
        assert not unrelated.versions and not any("LiveAlias" in r for r in unrelated.updated)
        assert any("Canary" in r for r in unrelated.updated)  # the latency alarms changed
        assert op.weights() == {"3": 1.0} and op.weights("explain") == {"3": 1.0}

        # an older model deployed again is a new version and a new canary; a person rolls it
        # back by hand, and the controller's next tick ends its run
        stack.deploy(candidate_bundle, context={"p95_latency_ms": 900})
        candidate = next(v for v in op.weights() if v != "3")
        assert op.weights() == {"3": 0.9, candidate: 0.1}
        op.pilot().r.rollback()
        assert op.pilot().tick()["state"] == "ended"
        assert op.weights() == {"3": 1.0}

        # the same deploy again changes nothing: the alias stays where the person left it
        again = stack.deploy(candidate_bundle, context={"p95_latency_ms": 900})
        assert not again.versions and op.weights() == {"3": 1.0}
        op.stack_holds_no_routing()
        assert op.actions().count("handover") == 3
