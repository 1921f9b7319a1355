"""Alerts (SNS), schedules for the analysis functions, the dashboard, and the optional WAF."""

from __future__ import annotations

from typing import Any

from avsev.monitoring.record_metrics import namespace
from avsev.serving.limits import MAX_BODY_BYTES
from avsev.serving.routes import ROUTES
from aws_cdk import Annotations, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as lambda_destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constants import METRICS_NAMESPACE
from infra.nag import acknowledge


class Alerts(Construct):
    """One encrypted topic for drift, A/B, records and rollout alarms; email by context.

    CloudWatch publishes alarm notifications as the service principal, so the topic policy
    (which `enforce_ssl` makes hold only a Deny) and the key policy allow
    `cloudwatch.amazonaws.com`, for this stack's alarms in this account only
    (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services,
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html).
    The analysis functions publish with their roles (same account: their IAM policy suffices)."""

    def __init__(
        self, scope: Construct, id: str, *, email: str | None, dead_letters: sqs.IQueue
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.alarm_arns = f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:{stack.stack_name}-*"
        from_our_alarms = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": self.alarm_arns},
        }
        self.key = kms.Key(
            self, "Key", enable_key_rotation=True, description=f"{stack.stack_name} alerts topic"
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisStack",
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],
                conditions=from_our_alarms,
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{stack.stack_name} alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisStack",
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=[self.topic.topic_arn],
                conditions=from_our_alarms,
            )
        )
        if email:
            # A message SNS cannot deliver to the address after its retries is kept, not lost
            # (SNS redrive policy: https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html).
            self.topic.add_subscription(
                subscriptions.EmailSubscription(email, dead_letter_queue=dead_letters)
            )
        else:
            Annotations.of(self).add_info(
                "No alarm_email: nothing subscribes to the alerts topic (output AlertsTopic); "
                "subscribe with -c alarm_email=you@example.org or `aws sns subscribe`."
            )

    def notify(self, alarm: cw.Alarm) -> None:
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))


class Schedule(Construct):
    """An EventBridge rule that invokes a function, retried, with failures kept in a queue."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: lambda_.IFunction,
        expression: str,
        dlq: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        self.rule = events.Rule(
            self,
            "Rule",
            schedule=events.Schedule.expression(expression),
            description=f"scheduled {id}",
            targets=[
                targets.LambdaFunction(
                    function,
                    retry_attempts=2,
                    max_event_age=Duration.hours(2),
                    dead_letter_queue=dlq,
                )
            ],
        )


def failure_queue(scope: Construct, id: str) -> sqs.Queue:
    """A queue for events and invocations that failed after their retries (encrypted, SSL only)."""
    queue = sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    reason = "This queue is itself the dead-letter queue of the schedules and analysis functions."
    acknowledge(queue, "AwsSolutions-SQS3", reason)
    acknowledge(queue, "Serverless-SQSRedrivePolicy", reason)
    return queue


def on_failure(function: lambda_.Function, queue: sqs.IQueue) -> None:
    """Asynchronous invocations: two retries, then the event goes to the queue."""
    function.configure_async_invoke(
        on_failure=lambda_destinations.SqsDestination(queue),
        retry_attempts=2,
        max_event_age=Duration.hours(6),
    )


def _search(expr: str, label: str, stat: str = "Sum", period: int = 60) -> cw.MathExpression:
    return cw.MathExpression(
        expression=f"SEARCH('{expr}', '{stat}', {period})",
        label=label,
        using_metrics={},
        period=Duration.seconds(period),
    )


class Dashboard(Construct):
    """The operators' view, the same panels as `avsev local up`'s `/dashboard`: the alias
    weights and the autopilot's step, requests per minute and latency p50/p95 by version,
    the A/B deltas and their always-valid p, drift per feature; then errors and the API."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: dict[str, lambda_.Function],
        api_dimensions: dict[str, str],
        api_metrics: tuple[str, ...] = ("Count", "4XXError", "5XXError"),
    ) -> None:
        """`api_dimensions`, `api_metrics`: the API's metrics (a REST API's by `ApiName`; an
        HTTP API's by `ApiId`, named `Count`, `4xx`, `5xx`)."""
        super().__init__(scope, id)
        ns = METRICS_NAMESPACE
        stage = Stack.of(self).stack_name  # the handlers' `service` dimension
        # the metrics of the record lines (metric filters): the stage is their namespace
        records = namespace(ns, stage)
        predict = functions["predict"].function_name
        by_version = "{AWS/Lambda,ExecutedVersion,FunctionName,Resource}"
        rollout = f'{{{ns},FunctionName,service}} FunctionName="{predict}" service="{stage}"'
        percent = cw.YAxisProps(min=0, max=100, label="%", show_units=False)
        # Dashboard names are global to the account ("unique within the account": CloudWatch
        # PutDashboard): the region keeps a second region's stack from taking this one's.
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=f"{stage}-{Stack.of(self).region}"
        )
        self.dashboard.add_widgets(
            # the rollout (put by the autopilot each tick)
            cw.GraphWidget(
                title="Alias live: weight by function version (%)",
                left=[
                    _search(
                        f'{{{ns},FunctionName,FunctionVersion,service}} FunctionName="{predict}" '
                        f'service="{stage}" MetricName="AliasWeight"',
                        "",
                        "Maximum",
                        300,
                    )
                ],
                left_y_axis=percent,
                width=12,
            ),
            cw.GraphWidget(
                title="Autopilot: candidate weight (%, 10 → 50 → 100) and how long the step has held (min)",
                left=[
                    _search(
                        f'{rollout} MetricName="CandidateWeight"', "candidate %", "Maximum", 300
                    )
                ],
                right=[
                    _search(
                        f'{rollout} MetricName="AutopilotHeldMinutes"', "held, min", "Maximum", 300
                    ),
                    _search(
                        f'{rollout} MetricName="AutopilotRunning"', "running (1)", "Maximum", 300
                    ),
                ],
                left_y_axis=percent,
                width=12,
            ),
            # traffic and latency by version
            cw.GraphWidget(
                title="Requests per minute by function version (predict)",
                left=[
                    _search(f'{by_version} FunctionName="{predict}" MetricName="Invocations"', "")
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Latency by version (Lambda duration p50 / p95, ms)",
                left=[
                    _search(
                        f'{by_version} FunctionName="{predict}" MetricName="Duration"',
                        "p50",
                        "p50",
                    ),
                    _search(
                        f'{by_version} FunctionName="{predict}" MetricName="Duration"',
                        "p95",
                        "p95",
                    ),
                ],
                width=12,
            ),
            # the A/B evidence (hourly)
            cw.GraphWidget(
                title="A/B: candidate minus champion (accuracy, weighted F1)",
                left=[
                    _search(
                        f'{{{ns},Candidate,Champion,service}} MetricName=~"Delta"',
                        "",
                        "Average",
                        3600,
                    )
                ],
                left_annotations=[cw.HorizontalAnnotation(value=0, label="no difference")],
                width=12,
            ),
            cw.GraphWidget(
                title="A/B: always-valid p (a decision below 0.05) and rollback advice",
                left=[
                    _search(
                        f'{{{ns},Candidate,Champion,service}} MetricName="AlwaysValidP"',
                        "",
                        "Average",
                        3600,
                    )
                ],
                right=[
                    _search(
                        f'{{{ns},Candidate,Champion,service}} MetricName="RollbackAdvised"',
                        "",
                        "Maximum",
                        3600,
                    )
                ],
                left_annotations=[cw.HorizontalAnnotation(value=0.05, label="α = 0.05")],
                left_y_axis=cw.YAxisProps(min=0, max=1, show_units=False),
                width=12,
            ),
            # drift (daily)
            cw.GraphWidget(
                title="Drift score per feature (distance, or 1 − p of a test on ≤ 1,000 values)",
                left=[
                    _search(
                        f'{{{ns},Feature,service}} MetricName="DriftScore"', "", "Maximum", 3600
                    )
                ],
                right=[
                    _search(
                        f'{{{ns},service}} MetricName="DatasetDrift"',
                        "dataset drift",
                        "Maximum",
                        3600,
                    )
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(value=0.1, label="distance threshold 0.1"),
                    cw.HorizontalAnnotation(value=0.95, label="test threshold 1 − α"),
                ],
                left_y_axis=cw.YAxisProps(min=0, max=1, show_units=False),
                width=24,
            ),
            cw.GraphWidget(
                title="Predictions per minute by model version",
                left=[_search(f'Namespace="{records}" MetricName="Predictions"', "")],
                width=12,
            ),
            cw.GraphWidget(
                title="Predicted class per minute (all versions)",
                left=[_search(f'Namespace="{records}" MetricName=~"^Predicted"', "")],
                width=12,
            ),
            cw.GraphWidget(
                title="Errors: Lambda errors, handled 5xx, validation errors",
                left=[fn.metric_errors(label=f"{name} errors") for name, fn in functions.items()]
                + [
                    _search(
                        f'Namespace="{ns}" service="{stage}" MetricName="InternalErrors"', "5xx"
                    ),
                    _search(
                        f'Namespace="{ns}" service="{stage}" MetricName="ValidationErrors"',
                        "4xx validation",
                    ),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="API Gateway requests and errors",
                left=[
                    cw.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name=m,
                        dimensions_map=api_dimensions,
                        statistic="Sum",
                        period=Duration.minutes(1),
                    )
                    for m in api_metrics
                ],
                width=12,
            ),
        )


WAF_INSPECTION_LIMIT = "KB_16"
"""How much of a body API Gateway forwards to AWS WAF: 16 KB, the default (32, 48 and 64 KB
cost more); WAF sees no byte past it
(https://docs.aws.amazon.com/waf/latest/developerguide/web-acl-setting-body-inspection-limit.html)."""
WAF_INSPECTED_BYTES = int(WAF_INSPECTION_LIMIT.removeprefix("KB_")) * 1024
OFF_ROUTE_BODY_BYTES = 8 * 1024
"""A body on a path that is none of the API's routes: blocked above 8 KB (the common rule
set's own size rule)."""


def body_limits() -> dict[str, int]:
    """Each route's path → the largest body the API itself accepts there
    (`avsev.serving.limits.MAX_BODY_BYTES`, answered 413 beyond): what WAF must let through."""
    return {path: MAX_BODY_BYTES for path, _, _ in ROUTES}


class Firewall(Construct):
    """AWS managed rules in front of the API, with body sizes the API's own: a body the API
    accepts on a route is never blocked there.

    - The common rule set blocks bodies over 8 KB (`SizeRestrictions_BODY`): that rule only
      counts; a batch of 1,000 reports or outcomes is far larger.
    - A route whose limit WAF can see (at most what it inspects) gets a rule blocking bodies
      above that limit; a larger body is past WAF's inspection, so its oversize handling
      matches. A route whose limit is above what WAF inspects gets no size rule: WAF sees only
      the first bytes of such a body (oversize handling CONTINUE would inspect those, never
      more than the limit), and the API answers 413 above its limit itself.
    - Any other path: bodies over 8 KB are blocked.
    Oversize handling: https://docs.aws.amazon.com/waf/latest/developerguide/waf-oversize-request-components.html
    """

    def __init__(self, scope: Construct, id: str, *, stage_arn: str) -> None:
        super().__init__(scope, id)
        visibility = lambda name: wafv2.CfnWebACL.VisibilityConfigProperty(  # noqa: E731
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
        )
        no_transform = [wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")]

        def path_is(path: str) -> wafv2.CfnWebACL.StatementProperty:
            # The path WAF sees starts with the stage (/prod/predict) on the execute-api host.
            return wafv2.CfnWebACL.StatementProperty(
                byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                    positional_constraint="ENDS_WITH",
                    search_string=path,
                    text_transformations=no_transform,
                )
            )

        def body_over(size: int) -> wafv2.CfnWebACL.StatementProperty:
            return wafv2.CfnWebACL.StatementProperty(
                size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
                    comparison_operator="GT",
                    size=size,
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                        body={"OversizeHandling": "MATCH"}  # only with size < what WAF inspects
                    ),
                    text_transformations=no_transform,
                )
            )

        def block(name: str, priority: int, *all_of: wafv2.CfnWebACL.StatementProperty) -> Any:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    and_statement=wafv2.CfnWebACL.AndStatementProperty(statements=list(all_of))
                ),
                visibility_config=visibility(name),
            )

        limits = body_limits()
        seen = {path: limit for path, limit in limits.items() if limit < WAF_INSPECTED_BYTES}
        rules: list[Any] = [
            wafv2.CfnWebACL.RuleProperty(
                name="common",
                priority=0,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name="AWSManagedRulesCommonRuleSet",
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name="SizeRestrictions_BODY",
                                action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                            )
                        ],
                    )
                ),
                visibility_config=visibility("common"),
            ),
            block(
                "large-bodies-off-the-routes",
                1,
                body_over(OFF_ROUTE_BODY_BYTES),
                *(
                    wafv2.CfnWebACL.StatementProperty(
                        not_statement=wafv2.CfnWebACL.NotStatementProperty(statement=path_is(path))
                    )
                    for path in limits
                ),
            ),
        ]
        for priority, (path, limit) in enumerate(sorted(seen.items()), start=2):
            name = "body-limit" + path.replace("/", "-")
            rules.append(block(name, priority, path_is(path), body_over(limit)))
        self.acl = wafv2.CfnWebACL(
            self,
            "Acl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{Stack.of(self).stack_name}-waf"),
            association_config=wafv2.CfnWebACL.AssociationConfigProperty(
                request_body={
                    "API_GATEWAY": wafv2.CfnWebACL.RequestBodyAssociatedResourceTypeConfigProperty(
                        default_size_inspection_limit=WAF_INSPECTION_LIMIT
                    )
                }
            ),
            rules=rules,
        )
        wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage_arn, web_acl_arn=self.acl.attr_arn
        )
