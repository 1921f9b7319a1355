"""Batch scoring: a bucket whose `batch/in/` uploads (and a daily run over `incoming/`)
invoke the batch_score function, which writes `batch/out/`."""

from __future__ import annotations

from avsev.batch import IN_PREFIX, INCOMING_PREFIX, OUT_PREFIX, TMP_PREFIX
from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import (
    BATCH_ERRORS_ALARM,
    BATCH_FAILURES_ALARM,
    METRICS_NAMESPACE,
    Env,
)
from infra.constructs.access import s3_access
from infra.constructs.functions import ServingFunction
from infra.constructs.records import private_bucket
from infra.nag import acknowledge


class Batch(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: ServingFunction,
        access_logs: s3.IBucket,
        dlq: sqs.IQueue,
        schedule: str,
        function_name: str,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.bucket = private_bucket(
            self,
            "Bucket",
            access_logs=access_logs,
            log_prefix="batch/",
            lifecycle_rules=[
                s3.LifecycleRule(id="tmp", prefix=TMP_PREFIX, expiration=Duration.days(7)),
                s3.LifecycleRule(
                    id="old-versions", noncurrent_version_expiration=Duration.days(30)
                ),
            ],
        )
        # S3 → EventBridge natively (CDK's event_bridge_enabled adds a custom-resource Lambda
        # with a managed-policy role; CloudFormation can set it on the bucket itself).
        self.bucket.node.default_child.add_property_override(  # type: ignore[union-attr]
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        fn, role = function.function, function.role
        fn.add_environment(Env.BATCH_BUCKET, self.bucket.bucket_name)
        # exactly these prefixes: read inputs, read and write parts and outputs (no deletes)
        findings = s3_access(
            role,
            self.bucket,
            read=[IN_PREFIX, INCOMING_PREFIX, OUT_PREFIX, TMP_PREFIX],
            write=[OUT_PREFIX, TMP_PREFIX],
            list_all=True,
        )
        # continuation: the function invokes itself (by name: a reference would be circular)
        own_arn = stack.format_arn(
            service="lambda",
            resource="function",
            resource_name=function_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[own_arn])
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Objects under the four batch prefixes only (read; write under out/ and tmp/, no deletes). ListBucket "
            "is on the whole batch bucket, unconditioned: S3 answers a missing key with 404 only to a caller that "
            "may list, and the function tells 'not scored yet' from an error by that 404; the bucket holds batch "
            "files only, and listing shows their names, not their contents.",
            *findings,
        )
        target = targets.LambdaFunction(
            fn, retry_attempts=2, max_event_age=Duration.hours(6), dead_letter_queue=dlq
        )
        self.upload_rule = events.Rule(
            self,
            "Uploaded",
            description="a file put under batch/in/ is scored",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": [{"prefix": IN_PREFIX}]},
                },
            ),
            targets=[target],
        )
        self.daily_rule = events.Rule(
            self,
            "Daily",
            schedule=events.Schedule.expression(schedule),
            description="score what arrived under incoming/ in the last days",
            targets=[target],
        )
        self.alarms = [
            cw.Alarm(
                self,
                "Failures",
                alarm_name=f"{stack.stack_name}-{BATCH_FAILURES_ALARM}",
                alarm_description="a batch file could not be scored (see its .summary.json)",
                metric=cw.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="BatchFailures",
                    statistic="Sum",
                    dimensions_map={"service": stack.stack_name},
                    period=Duration.minutes(5),
                ),
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "Errors",
                alarm_name=f"{stack.stack_name}-{BATCH_ERRORS_ALARM}",
                alarm_description="the batch function failed (after its retries the event is in the DLQ)",
                metric=fn.metric_errors(period=Duration.minutes(5)),
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]
