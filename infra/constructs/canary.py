"""Canary rollouts of alias `live` by CodeDeploy: a configurable traffic shift, the smoke
test as pre-traffic hook, and alarms on the new version that roll it back."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import CANARY_ALARMS, LIVE_ALIAS, METRICS_NAMESPACE, alarm_prefix
from infra.nag import acknowledge, ref


def deployment_config(scope: Construct, spec: str) -> codedeploy.ILambdaDeploymentConfig:
    """`canary:<percent>:<minutes>`, `linear:<percent>:<minutes>` or `all_at_once`.

    CodeDeploy shifts a canary in one step (X%, then 100%) and linear in equal steps, so
    "10% then 50% then 100%" is `avsev rollout start/step/promote`, not a deployment config.
    """
    if spec == "all_at_once":
        return codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE
    kind, percent, minutes = spec.split(":")
    interval = Duration.minutes(int(minutes))
    routing: codedeploy.TrafficRouting
    if kind == "canary":
        routing = codedeploy.TrafficRouting.time_based_canary(
            interval=interval, percentage=int(percent)
        )
    elif kind == "linear":
        routing = codedeploy.TrafficRouting.time_based_linear(
            interval=interval, percentage=int(percent)
        )
    else:
        raise ValueError(
            f"deployment={spec!r}: use canary:<percent>:<minutes>, linear:<percent>:<minutes> or all_at_once"
        )
    return codedeploy.LambdaDeploymentConfig(scope, "DeploymentConfig", traffic_routing=routing)


class Canary(Construct):
    """One deployment group per rolled-out function (`name`: its key, in its alarms' names)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        function: lambda_.Function,
        alias: lambda_.Alias,
        model_version: str,
        config: codedeploy.ILambdaDeploymentConfig,
        pre_hook: lambda_.IFunction,
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
        # The handlers' own metrics, of the function version being deployed only: the old
        # version's errors must not roll back a new release of the same model.
        emf_dims = {
            "FunctionVersion": new_version,
            "ModelVersion": model_version,
            "service": stack.stack_name,  # POWERTOOLS_SERVICE_NAME: this stage only
        }
        prefix = alarm_prefix(stack.stack_name, name)
        self.alarm_prefix = prefix
        """The names of this function's rollout alarms start so (the autopilot reads them)."""
        errors, internal, latency = CANARY_ALARMS
        # Validation errors are not here: a client sending bad requests says nothing about
        # the new version, and must not be able to roll a release back. They notify instead
        # (the stack's validation-error-rate alarm).
        # (construct id, name, description, namespace, metric, dimensions, statistic, threshold,
        #  evaluation periods, datapoints to alarm)
        specs = (
            (
                "NewVersionErrors",
                errors,
                "Lambda errors of the version being rolled out",
                "AWS/Lambda",
                "Errors",
                version_dims,
                "Sum",
                1,
                1,
                1,
            ),
            (
                "NewVersion5xx",
                internal,
                "HTTP 5xx answered by the function version being rolled out (handled internal errors)",
                METRICS_NAMESPACE,
                "InternalErrors",
                emf_dims,
                "Sum",
                1,
                1,
                1,
            ),
            (
                "NewVersionP95Latency",
                latency,
                f"p95 duration of the new version above {p95_latency_ms} ms",
                "AWS/Lambda",
                "Duration",
                version_dims,
                "p95",
                p95_latency_ms,
                3,
                2,
            ),
        )
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
        # Our own service role (CDK's default attaches the AWS managed policy
        # AWSCodeDeployRoleForLambdaLimited): move this alias, read alarms, run the hook.
        self.role = iam.Role(
            self, "ServiceRole", assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com")
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "lambda:GetAlias",
                    "lambda:UpdateAlias",
                    "lambda:GetProvisionedConcurrencyConfig",
                ],
                resources=[function.function_arn, f"{function.function_arn}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=["*"])
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "The alias and versions of the one function this group deploys; DescribeAlarms has no "
            "resource-level permissions; the versions of its pre-traffic hook.",
            f"Resource::{ref(function)}:*",
            "Resource::*",
            f"Resource::{ref(pre_hook)}:*",  # type: ignore[arg-type]
        )
        group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            alias=alias,
            role=self.role,
            deployment_config=config,
            alarms=self.alarms,
            pre_hook=pre_hook,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        # The group attaches AWSCodeDeployRoleForLambdaLimited to any role; ours has inline rights.
        self.role.node.default_child.add_property_deletion_override("ManagedPolicyArns")  # type: ignore[union-attr]
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "CDK attaches AWSCodeDeployRoleForLambdaLimited to the construct, but the template's ManagedPolicyArns "
            "is deleted above: the role has only its inline statements (a template test checks this).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited",
        )
        self.group = group
