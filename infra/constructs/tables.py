"""The records as tables: a Glue database with the predictions and outcomes tables over
Firehose's Parquet layout (partition projection on the day: no crawler, no partitions to
add), and the Athena workgroup that queries them. The schema is `avsev.monitoring.tables`."""

from __future__ import annotations

from avsev.monitoring.tables import (
    PARTITION_FORMAT,
    PARTITION_KEY,
    PARTITION_START,
    TABLES,
)
from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constants import ATHENA_RESULTS_PREFIX, glue_name

PARQUET = {
    "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output_format": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
GB = 1024**3


def projection(bucket_name: str, table: str) -> dict[str, str]:
    """Table parameters: partition projection on `dt`, one partition a day from PARTITION_START."""
    key = PARTITION_KEY
    return {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        "projection.enabled": "true",
        f"projection.{key}.type": "date",
        f"projection.{key}.format": PARTITION_FORMAT,
        f"projection.{key}.range": f"{PARTITION_START},NOW",
        f"projection.{key}.interval": "1",
        f"projection.{key}.interval.unit": "DAYS",
        "storage.location.template": f"s3://{bucket_name}/{table}/{key}=${{{key}}}/",
    }


class RecordTables(Construct):
    """Glue database `<stack>` (underscores), one table per record type, Athena workgroup `<stack>`."""

    def __init__(
        self, scope: Construct, id: str, *, bucket: s3.IBucket, scan_limit_gb: int
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.database_name = glue_name(stack.stack_name)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"{stack.stack_name}: prediction and outcome records",
            ),
        )
        self.tables: dict[str, glue.CfnTable] = {}
        for table, columns in TABLES.items():
            cfn = glue.CfnTable(
                self,
                table.title(),
                catalog_id=stack.account,
                database_name=self.database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=table,
                    description=f"{table} records, Parquet written by Firehose, one folder a day",
                    table_type="EXTERNAL_TABLE",
                    parameters=projection(bucket.bucket_name, table),
                    partition_keys=[
                        glue.CfnTable.ColumnProperty(name=PARTITION_KEY, type="string")
                    ],
                    storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                        columns=[
                            glue.CfnTable.ColumnProperty(name=c.name, type=c.type) for c in columns
                        ],
                        location=f"s3://{bucket.bucket_name}/{table}/",
                        input_format=PARQUET["input_format"],
                        output_format=PARQUET["output_format"],
                        serde_info=glue.CfnTable.SerdeInfoProperty(
                            serialization_library=PARQUET["serde"],
                            parameters={"serialization.format": "1"},
                        ),
                        compressed=True,
                    ),
                ),
            )
            cfn.add_resource_dependency(self.database)
            self.tables[table] = cfn
        self.workgroup_name = stack.stack_name
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=self.workgroup_name,
            description=f"{stack.stack_name}: rollups over the record tables",
            state="ENABLED",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=scan_limit_gb * GB,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{bucket.bucket_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        arn = f"arn:{stack.partition}:glue:{stack.region}:{stack.account}"
        self.catalog_arn = f"{arn}:catalog"
        self.database_arn = f"{arn}:database/{self.database_name}"
        self.table_arns = {t: f"{arn}:table/{self.database_name}/{t}" for t in TABLES}
        self.workgroup_arn = f"arn:{stack.partition}:athena:{stack.region}:{stack.account}:workgroup/{self.workgroup_name}"

    def glue_statement(self, *actions: str) -> iam.PolicyStatement:
        """`actions` on the catalog, this database and its two tables (Glue authorizes on all three)."""
        return iam.PolicyStatement(
            actions=list(actions),
            resources=[self.catalog_arn, self.database_arn, *self.table_arns.values()],
        )
