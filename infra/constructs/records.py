"""Prediction and outcome records: log subscription → Firehose → S3 under
`predictions/dt=YYYY-MM-DD/` and `outcomes/dt=YYYY-MM-DD/` (JSON lines), and the bucket the
analysis functions read and write reports to."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constants import RECORD_FILTER
from infra.nag import acknowledge, ref


class Records(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = private_bucket(
            self,
            "Data",
            access_logs=self.access_logs,
            log_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="records",
                    prefix=prefix,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    expiration=Duration.days(730),
                    noncurrent_version_expiration=Duration.days(30),
                )
                for prefix in ("predictions/", "outcomes/")
            ]
            + [
                s3.LifecycleRule(
                    id="reports", prefix="reports/", noncurrent_version_expiration=Duration.days(90)
                ),
                s3.LifecycleRule(
                    id="errors", prefix="firehose-errors/", expiration=Duration.days(30)
                ),
            ],
        )
        role = iam.Role(
            self, "FirehoseRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com")
        )
        self.bucket.grant_write(role, "predictions/*")
        self.bucket.grant_write(role, "outcomes/*")
        self.bucket.grant_write(role, "firehose-errors/*")
        self.firehose_logs = logs.LogGroup(
            self, "FirehoseLogs", retention=logs.RetentionDays.ONE_MONTH
        )
        stream_logs = logs.LogStream(self, "FirehoseDelivery", log_group=self.firehose_logs)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:PutLogEvents"],
                resources=[f"{self.firehose_logs.log_group_arn}:*"],
            )
        )
        self.stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="AWS_OWNED_CMK"
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=role.role_arn,
                # record_type is "prediction" or "outcome": the prefix reads predictions/ or outcomes/
                prefix="!{partitionKeyFromQuery:record_type}s/dt=!{timestamp:yyyy-MM-dd}/",
                error_output_prefix="firehose-errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=60, size_in_m_bs=64
                ),
                compression_format="UNCOMPRESSED",
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        _processor("Decompression", CompressionFormat="GZIP"),
                        _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
                        _processor(
                            "MetadataExtraction",
                            MetadataExtractionQuery="{record_type: .record_type}",
                            JsonParsingEngine="JQ-1.6",
                        ),
                        _processor("AppendDelimiterToRecord"),
                    ],
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.firehose_logs.log_group_name,
                    log_stream_name=stream_logs.log_stream_name,
                ),
            ),
        )
        self.stream.node.add_dependency(role)
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Firehose writes objects under its three prefixes of the data bucket (CDK's grant_write actions) "
            "and log streams of its own log group.",
            "Action::s3:DeleteObject*",
            "Action::s3:Abort*",
            *(
                f"Resource::{ref(self.bucket)}/{p}/*"
                for p in ("predictions", "outcomes", "firehose-errors")
            ),
            f"Resource::{ref(self.firehose_logs)}:*",
        )
        self.stream_arn = self.stream.attr_arn
        self.logs_role = iam.Role(
            self,
            "LogsToFirehose",
            assumed_by=iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com"),
        )
        self.logs_role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[self.stream_arn],
            )
        )

    def subscribe(self, id: str, log_group: logs.ILogGroup) -> logs.SubscriptionFilter:
        """Send a function's prediction and outcome records to the stream."""
        stream = firehose.DeliveryStream.from_delivery_stream_arn(
            self, f"{id}Stream", self.stream_arn
        )
        return logs.SubscriptionFilter(
            self,
            id,
            log_group=log_group,
            destination=destinations.FirehoseDestination(stream, role=self.logs_role),
            filter_pattern=logs.FilterPattern.literal(RECORD_FILTER),
        )


def private_bucket(
    scope: Construct,
    id: str,
    *,
    access_logs: s3.IBucket,
    log_prefix: str,
    lifecycle_rules: list[s3.LifecycleRule],
) -> s3.Bucket:
    """Encrypted, public access blocked, SSL only, versioned, access-logged, kept on stack deletion."""
    return s3.Bucket(
        scope,
        id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=log_prefix,
        lifecycle_rules=lifecycle_rules,
        removal_policy=RemovalPolicy.RETAIN,
    )


def _processor(kind: str, **params: str) -> firehose.CfnDeliveryStream.ProcessorProperty:
    return firehose.CfnDeliveryStream.ProcessorProperty(
        type=kind,
        parameters=[
            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                parameter_name=k, parameter_value=v
            )
            for k, v in params.items()
        ],
    )
