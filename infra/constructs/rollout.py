"""Rollouts of alias `live`, owned by the rollout controller (the autopilot function).

CloudFormation publishes versions and hands the newest one over; it never holds the alias's
routing, so a deploy can never undo a promotion, fight a canary in flight, or show weights in
`cdk diff`:

- `LiveAlias`: a custom resource per rolled-out function whose properties are the version the
  template just published, its model and the card's golden requests. The controller answers it
  (avsev.rollout.handover): parity check, then the alias is created (first deploy) or the
  version becomes the candidate at 10%. The alias is not an `AWS::Lambda::Alias`: that resource
  would hold `FunctionVersion` and `RoutingConfig`, and every stack update would set them back.
- `CandidateAlarms`: alarms on the newest published version (the candidate it hands over); the
  controller counts an alarm only for the version its dimensions name and only once evaluated
  since its last change, so an alarm left in ALARM by an older version never stops a new one.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import CANARY_ALARMS, LIVE_ALIAS, METRICS_NAMESPACE, alarm_prefix

LIVE_ALIAS_TYPE = "Custom::LiveAlias"


def retained_version(function: lambda_.Function) -> lambda_.Version:
    """The function's current version, kept when a later deploy replaces it in the template: the
    alias may still route to it (Lambda refuses to delete a version an alias routes to, and
    CloudFormation's cleanup would fail)."""
    version = function.current_version
    version.apply_removal_policy(RemovalPolicy.RETAIN)
    return version


class LiveAlias(Construct):
    """The handover of one function's new version to the controller, and the alias as
    callers invoke it (`arn:…:function:<name>:live`)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: lambda_.Function,
        controller: lambda_.IFunction,
        model_version: str,
        golden: str,
        smoke_route: str,
        role: str,
    ) -> None:
        super().__init__(scope, id)
        version = retained_version(function)
        self.resource = CustomResource(
            self,
            "Handover",
            service_token=controller.function_arn,
            resource_type=LIVE_ALIAS_TYPE,
            properties={
                "FunctionName": function.function_name,
                "AliasName": LIVE_ALIAS,
                "Version": version.version,
                "ModelVersion": model_version,
                "SmokeRoute": smoke_route,
                "Golden": golden,
                "Role": role,
            },
        )
        self.alias = lambda_.Function.from_function_attributes(
            self,
            "Live",
            function_arn=Fn.join(":", [function.function_arn, LIVE_ALIAS]),
            same_environment=True,  # the alias is this stack's: grant on it (AddPermission)
        )
        """What the API integrates (a qualified ARN): its permissions must wait for the
        resource (the alias exists once the controller answered the first deploy)."""


class CandidateAlarms(Construct):
    """Alarms on the newest version of one rolled-out function (`name`: its key, in the alarms'
    names): Lambda errors and p95 duration of that version behind the alias, and the 5xx the
    handlers answered from it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        function: lambda_.Function,
        model_version: str,
        p95_latency_ms: float,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        new_version = function.current_version.version
        version_dims = {
            "FunctionName": function.function_name,
            "Resource": f"{function.function_name}:{LIVE_ALIAS}",
            "ExecutedVersion": new_version,
        }
        # The handlers' own metrics, of the new version only: the old version's errors must not
        # roll back a new release of the same model.
        emf_dims = {
            "FunctionVersion": new_version,
            "ModelVersion": model_version,
            "service": stack.stack_name,  # POWERTOOLS_SERVICE_NAME: this stage only
        }
        prefix = alarm_prefix(stack.stack_name, name)
        self.alarm_prefix = prefix
        """The names of this function's rollout alarms start so (the controller reads them)."""
        errors, internal, latency = CANARY_ALARMS
        # Validation errors are not here: a client sending bad requests says nothing about the
        # new version, and must not be able to roll a release back (the stack's
        # validation-error-rate alarm notifies instead).
        # (construct id, name, description, namespace, metric, dimensions, statistic,
        #  threshold, evaluation periods, datapoints to alarm)
        specs = (
            ("NewVersionErrors", errors, "Lambda errors of the newest version",
             "AWS/Lambda", "Errors", version_dims, "Sum", 1, 1, 1),
            ("NewVersion5xx", internal,
             "HTTP 5xx answered by the newest version (handled internal errors)",
             METRICS_NAMESPACE, "InternalErrors", emf_dims, "Sum", 1, 1, 1),
            ("NewVersionP95Latency", latency,
             f"p95 duration of the newest version above {p95_latency_ms} ms",
             "AWS/Lambda", "Duration", version_dims, "p95", p95_latency_ms, 3, 2),
        )  # fmt: skip
        self.alarms = [
            cw.Alarm(
                self,
                construct_id,
                alarm_name=f"{prefix}{alarm}",
                alarm_description=description,
                metric=cw.Metric(
                    namespace=namespace,
                    metric_name=metric,
                    dimensions_map=dims,
                    statistic=statistic,
                    period=Duration.minutes(1),
                ),
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=datapoints,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            for construct_id, alarm, description, namespace, metric, dims, statistic, threshold, periods, datapoints in specs
        ]
