"""Prediction and outcome records: log subscription → one Firehose stream per record type →
Parquet in S3 under `predictions/dt=YYYY-MM-DD/` and `outcomes/dt=YYYY-MM-DD/`, read as the
Glue tables of `tables.py`.

Why this path works (and the old one, dynamic partitioning by a JQ key, was unproven): a
CloudWatch Logs subscription delivers one Firehose record per batch of log events. After the
Decompression and CloudWatchLogProcessing (message extraction) processors the record holds
many JSON documents one after another, which record format conversion takes as input: "{"a":
1}{"b": 1} is correct input" (https://docs.aws.amazon.com/firehose/latest/dev/record-format-
conversion.html). Each stream gets one record type (the subscription filter picks it), so
the S3 prefix needs only Firehose's arrival timestamp, no partition key. A record that fails
conversion lands, still compressed, under `firehose-errors/<table>/<error type>/`
(https://docs.aws.amazon.com/firehose/latest/dev/decomp-faq.html); alarms fire on it, and
`avsev records redrive` writes it into its table's day partition as Parquet (a stream that
decompresses CloudWatch Logs payloads takes records from CloudWatch Logs only)."""

from __future__ import annotations

from avsev.monitoring.tables import OUTCOMES, PARTITION_KEY, PREDICTIONS
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constants import (
    ATHENA_RESULTS_PREFIX,
    ERRORS_PREFIX,
    REPORTS_PREFIX,
    ROLLUPS_PREFIX,
    record_filter,
)
from infra.constructs.tables import RecordTables
from infra.nag import acknowledge, ref

ERROR_METRICS_FILTER = ERRORS_PREFIX.rstrip("/")
"""S3 request-metrics filter on the error prefix: any PUT there raises an alarm."""
BUFFER_MB = 128
"""Record format conversion needs a buffer of at least 64 MB."""


class Records(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        scan_limit_gb: int = 100,
        buffer_seconds: int = 300,
        direct: bool = False,
    ) -> None:
        """`direct`: also a DirectPut stream per record type that takes the records extension's
        plain JSON records (`-c records=extension`, `avsev.serving.records_extension`)."""
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.prefix = stack.stack_name
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # no ACL: S3 server access logging is granted by bucket policy (feature flag
            # @aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy)
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = private_bucket(
            self,
            "Data",
            access_logs=self.access_logs,
            log_prefix="data/",
            lifecycle_rules=[
                *(
                    s3.LifecycleRule(
                        id=f"records-{table}",
                        prefix=f"{table}/",
                        transitions=[
                            s3.Transition(
                                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                transition_after=Duration.days(30),
                            )
                        ],
                        expiration=Duration.days(730),
                        noncurrent_version_expiration=Duration.days(30),
                    )
                    for table in (PREDICTIONS, OUTCOMES)
                ),
                s3.LifecycleRule(
                    id="reports",
                    prefix=REPORTS_PREFIX,
                    noncurrent_version_expiration=Duration.days(90),
                ),
                s3.LifecycleRule(
                    id="rollups",
                    prefix=ROLLUPS_PREFIX,
                    noncurrent_version_expiration=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="athena-results",
                    prefix=ATHENA_RESULTS_PREFIX,
                    expiration=Duration.days(3),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="errors",
                    prefix=ERRORS_PREFIX,
                    expiration=Duration.days(90),
                    noncurrent_version_expiration=Duration.days(30),
                ),
            ],
            metrics=[s3.BucketMetrics(id=ERROR_METRICS_FILTER, prefix=ERRORS_PREFIX)],
        )
        self.tables = RecordTables(self, "Tables", bucket=self.bucket, scan_limit_gb=scan_limit_gb)

        # Firehose's role: the documented trust (sts:ExternalId = this account) and writes only.
        role = iam.Role(
            self,
            "FirehoseRole",
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com").with_conditions(
                {"StringEquals": {"sts:ExternalId": stack.account}}
            ),
            description=f"{self.prefix}: Firehose writes records and reads their table schema",
        )
        write_prefixes = [f"{t}/" for t in (PREDICTIONS, OUTCOMES)] + [ERRORS_PREFIX]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(f"{p}*") for p in write_prefixes],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[self.bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            self.tables.glue_statement(
                "glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"
            )
        )
        self.firehose_logs = logs.LogGroup(
            self,
            "FirehoseLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:PutLogEvents"],
                resources=[f"{self.firehose_logs.log_group_arn}:*"],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Firehose puts objects under the two record prefixes and the error prefix of the data bucket (no "
            "reads, no deletes) and log events into streams of its own log group.",
            *(f"Resource::{ref(self.bucket)}/{p}*" for p in write_prefixes),
            f"Resource::{ref(self.firehose_logs)}:*",
        )
        self.role = role

        # CloudWatch Logs' role: put into these streams only, for this account's log groups.
        self.logs_role = iam.Role(
            self,
            "LogsToFirehose",
            assumed_by=iam.ServicePrincipal("logs.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                    },
                }
            ),
            description=f"{self.prefix}: CloudWatch Logs subscriptions put records into Firehose",
        )
        self.streams: dict[str, firehose.CfnDeliveryStream] = {}
        for table in (PREDICTIONS, OUTCOMES):
            self.streams[table] = self._stream(table, role, buffer_seconds)
        # A stream that decompresses CloudWatch Logs payloads refuses any other producer
        # (InvalidSourceException, https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html):
        # the extension's records (JSON documents one after another) get streams of their own,
        # converted by the same table schema into the same prefixes.
        self.direct_streams: dict[str, firehose.CfnDeliveryStream] = {}
        if direct:
            for table in (PREDICTIONS, OUTCOMES):
                self.direct_streams[table] = self._stream(table, role, buffer_seconds, direct=True)
        self.logs_role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[s.attr_arn for s in self.streams.values()],
            )
        )
        self.alarms = self._alarms(buffer_seconds)

    def _stream(
        self, table: str, role: iam.Role, buffer_seconds: int, *, direct: bool = False
    ) -> firehose.CfnDeliveryStream:
        """The stream of a record type: from the CloudWatch Logs subscription (decompressed,
        messages extracted), or `direct` (PutRecordBatch of JSON documents, no processing)."""
        stack = Stack.of(self)
        name = f"{table}-direct" if direct else table
        construct = f"{table.title()}Direct" if direct else table.title()
        stream_logs = logs.LogStream(
            self, f"{construct}Delivery", log_group=self.firehose_logs, log_stream_name=name
        )
        processing = firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
            enabled=True,
            processors=[
                _processor("Decompression", CompressionFormat="GZIP"),
                _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
            ],
        )
        stream = firehose.CfnDeliveryStream(
            self,
            f"{construct}Stream",
            delivery_stream_name=f"{self.prefix}-{name}",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="AWS_OWNED_CMK"
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=role.role_arn,
                prefix=f"{table}/{PARTITION_KEY}=!{{timestamp:yyyy-MM-dd}}/",
                error_output_prefix=f"{ERRORS_PREFIX}{table}/!{{firehose:error-output-type}}/{PARTITION_KEY}=!{{timestamp:yyyy-MM-dd}}/",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=buffer_seconds, size_in_m_bs=BUFFER_MB
                ),
                compression_format="UNCOMPRESSED",  # Parquet pages are SNAPPY-compressed
                processing_configuration=None if direct else processing,
                data_format_conversion_configuration=firehose.CfnDeliveryStream.DataFormatConversionConfigurationProperty(
                    enabled=True,
                    input_format_configuration=firehose.CfnDeliveryStream.InputFormatConfigurationProperty(
                        deserializer=firehose.CfnDeliveryStream.DeserializerProperty(
                            open_x_json_ser_de=firehose.CfnDeliveryStream.OpenXJsonSerDeProperty(
                                case_insensitive=True
                            )
                        )
                    ),
                    output_format_configuration=firehose.CfnDeliveryStream.OutputFormatConfigurationProperty(
                        serializer=firehose.CfnDeliveryStream.SerializerProperty(
                            parquet_ser_de=firehose.CfnDeliveryStream.ParquetSerDeProperty(
                                compression="SNAPPY"
                            )
                        )
                    ),
                    schema_configuration=firehose.CfnDeliveryStream.SchemaConfigurationProperty(
                        catalog_id=stack.account,
                        database_name=self.tables.database_name,
                        table_name=table,
                        region=stack.region,
                        role_arn=role.role_arn,
                        version_id="LATEST",
                    ),
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.firehose_logs.log_group_name,
                    log_stream_name=stream_logs.log_stream_name,
                ),
            ),
        )
        stream.node.add_dependency(role)
        stream.add_resource_dependency(self.tables.tables[table])
        return stream

    def _alarms(self, buffer_seconds: int) -> list[cw.Alarm]:
        """Delivery failing, data going stale, records failing conversion, anything in errors."""
        alarms = []
        streams = [(t.title(), t, s) for t, s in self.streams.items()] + [
            (f"{t.title()}Direct", f"{t}-direct", s) for t, s in self.direct_streams.items()
        ]
        for construct, table, stream in streams:
            name = str(stream.delivery_stream_name)  # set in _stream
            dims = {"DeliveryStreamName": name}
            for construct_id, metric, statistic, op, threshold, text in (
                (
                    "DeliveryFailing",
                    "DeliveryToS3.Success",
                    "Minimum",
                    cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                    1,
                    "some deliveries to S3 failed",
                ),
                (
                    "DataStale",
                    "DeliveryToS3.DataFreshness",
                    "Maximum",
                    cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    buffer_seconds + 900,
                    "the oldest record waiting is older than the buffer interval plus 15 minutes",
                ),
                (
                    "ConversionFailed",
                    "FailedConversion.Records",
                    "Sum",
                    cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    1,
                    f"records failed Parquet conversion (see {ERRORS_PREFIX}; `avsev records redrive`)",
                ),
            ):
                alarms.append(
                    cw.Alarm(
                        self,
                        f"{construct}{construct_id}",
                        alarm_name=f"{self.prefix}-records-{table}-{construct_id.lower()}",
                        alarm_description=f"{name}: {text}",
                        metric=cw.Metric(
                            namespace="AWS/Firehose",
                            metric_name=metric,
                            dimensions_map=dims,
                            statistic=statistic,
                            period=Duration.minutes(5),
                        ),
                        threshold=threshold,
                        evaluation_periods=1,
                        comparison_operator=op,
                        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    )
                )
        alarms.append(
            cw.Alarm(
                self,
                "ErrorObjects",
                alarm_name=f"{self.prefix}-records-error-objects",
                alarm_description=f"an object was written under {ERRORS_PREFIX}: records failed; "
                "`avsev records redrive` writes them into their tables",
                metric=cw.Metric(
                    namespace="AWS/S3",
                    metric_name="PutRequests",
                    dimensions_map={
                        "BucketName": self.bucket.bucket_name,
                        "FilterId": ERROR_METRICS_FILTER,
                    },
                    statistic="Sum",
                    period=Duration.minutes(5),
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        )
        return alarms

    def subscribe(
        self, id: str, log_group: logs.ILogGroup, table: str
    ) -> logs.CfnSubscriptionFilter:
        """Send a function's records of one type to that type's stream."""
        sub = logs.CfnSubscriptionFilter(
            self,
            id,
            log_group_name=log_group.log_group_name,
            destination_arn=self.streams[table].attr_arn,
            filter_pattern=record_filter(table),
            role_arn=self.logs_role.role_arn,
        )
        # CloudWatch Logs tests delivery on creation: the role's policy must be in place first.
        policy = self.logs_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            sub.node.add_dependency(policy)
        return sub


def private_bucket(
    scope: Construct,
    id: str,
    *,
    access_logs: s3.IBucket,
    log_prefix: str,
    lifecycle_rules: list[s3.LifecycleRule],
    metrics: list[s3.BucketMetrics] | None = None,
) -> s3.Bucket:
    """Encrypted, public access blocked, SSL only, versioned, access-logged, kept on stack deletion."""
    ids = [r.id for r in lifecycle_rules]
    if None in ids or len(set(ids)) != len(ids):
        raise ValueError(f"bucket {id}: lifecycle rules need unique ids (S3 rejects others): {ids}")
    return s3.Bucket(
        scope,
        id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=log_prefix,
        lifecycle_rules=lifecycle_rules,
        metrics=metrics,
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
