"""The avsev stack: layers, functions, API, canary rollouts, records, schedules, alerts,
dashboard. Grants live here, where the pieces meet."""

from __future__ import annotations

import json

from avsev.monitoring.tables import OUTCOMES, PREDICTIONS
from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import AppConfig
from infra.constants import (
    ATHENA_RESULTS_PREFIX,
    CANARY_FUNCTIONS,
    METRICS_NAMESPACE,
    RECORD_PREFIXES,
    REPORTS_PREFIX,
    ROLLUPS_PREFIX,
)
from infra.constructs.access import s3_access
from infra.constructs.api import Api
from infra.constructs.batch import Batch
from infra.constructs.canary import Canary, deployment_config
from infra.constructs.functions import FunctionSpec, Layers, ServingFunction
from infra.constructs.operations import (
    Alerts,
    Dashboard,
    Firewall,
    Schedule,
    failure_queue,
    on_failure,
)
from infra.constructs.records import Records
from infra.nag import acknowledge, ref

SPECS = {
    # Serving: enough memory for a full vCPU share at low latency; short timeouts.
    "predict": FunctionSpec(
        "predict",
        1024,
        10,
        "POST /predict, /predict/batch; GET /model, /health",
        model=True,
        shadow=True,
    ),
    "explain": FunctionSpec(
        "explain", 1024, 10, "POST /predict/explain (exact TreeSHAP)", model=True
    ),
    "outcomes": FunctionSpec("outcomes", 256, 10, "POST /outcomes"),
    # Monitoring jobs: the rollup aggregates new records in Athena (it needs the card's drift
    # bins, and imports the monitoring jobs module: numpy/scipy); A/B and drift read only rollups.
    "rollup": FunctionSpec(
        "rollup",
        512,
        900,
        "hourly rollup of new records (Athena)",
        ("common", "deps", "analysis"),
        model=True,
    ),
    "ab_analysis": FunctionSpec(
        "ab_analysis", 1024, 300, "hourly A/B report", ("common", "deps", "analysis")
    ),
    "drift_check": FunctionSpec(
        "drift_check", 1024, 300, "daily drift check", ("common", "deps", "analysis"), model=True
    ),
    # Rollout autopilot: one tick every few minutes (alias, alarms, audit, the A/B report).
    "autopilot": FunctionSpec(
        "autopilot", 256, 60, "rollout autopilot: 10% → 50% → 100% on evidence"
    ),
    # Batch: streams files in chunks; 1 GB and the longest timeout, then continues itself.
    "batch_score": FunctionSpec(
        "batch_score",
        1024,
        900,
        "batch scoring of files",
        ("common", "deps", "analysis", "tabular"),
        model=True,
    ),
    # Pre-traffic hooks: a handful of invocations.
    "smoke_predict": FunctionSpec(
        "smoke_test", 256, 60, "pre-traffic smoke test of predict", model=True
    ),
    "smoke_explain": FunctionSpec(
        "smoke_test", 256, 60, "pre-traffic smoke test of explain", model=True
    ),
}


class AvsevStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: AppConfig, **kwargs: object) -> None:
        super().__init__(scope, id, **kwargs)
        arch = (
            lambda_.Architecture.ARM_64 if config.arch == "arm64" else lambda_.Architecture.X86_64
        )
        card = json.loads((config.bundle / "card.json").read_text())
        if card["arch"] != config.arch:
            raise ValueError(
                f"bundle {config.bundle} is built for {card['arch']}, the stack for {config.arch}"
            )
        model_version = card["version"]
        bundle_env = {"MODEL_BUNDLE_PATH": f"/opt/{config.bundle.name}"}

        shadow_card = (
            json.loads((config.shadow_bundle / "card.json").read_text())
            if config.shadow_bundle
            else None
        )
        if shadow_card and shadow_card["arch"] != config.arch:
            raise ValueError(
                f"shadow bundle {config.shadow_bundle} is built for {shadow_card['arch']}"
            )
        layers = Layers(
            self,
            "Layers",
            arch=arch,
            arch_name=config.arch,
            bundle=config.bundle,
            shadow=config.shadow_bundle,
        )
        records = Records(
            self,
            "Records",
            scan_limit_gb=config.athena_scan_limit_gb,
            buffer_seconds=config.record_buffer_seconds,
        )
        alerts = Alerts(self, "Alerts", email=config.alarm_email)
        failures = failure_queue(self, "Failures")

        common_env = {
            "DATA_BUCKET": records.bucket.bucket_name,
            "ALERTS_TOPIC_ARN": alerts.topic.topic_arn,
        }
        rollup_env = {
            "DATA_BUCKET": records.bucket.bucket_name,
            "ATHENA_WORKGROUP": records.tables.workgroup_name,
            "GLUE_DATABASE": records.tables.database_name,
        }
        # Reserved concurrency: batch (invoked per upload, and by itself) and the scheduled
        # jobs can never take the account's concurrency from predict and explain.
        reserved = {
            "batch_score": config.batch_concurrency,
            "rollup": config.job_concurrency,
            "ab_analysis": config.job_concurrency,
            "drift_check": config.job_concurrency,
            "autopilot": 1,  # one controller at a time: two ticks never race on the alias
        }

        def job_env(key: str) -> dict[str, str]:
            return rollup_env if key == "rollup" else common_env

        fns: dict[str, ServingFunction] = {}
        for key, spec in SPECS.items():
            if key.startswith("smoke_"):
                continue
            shadow = spec.shadow and config.shadow_bundle is not None
            layer_names = (
                spec.layers + (("model",) if spec.model else ()) + (("shadow",) if shadow else ())
            )
            fns[key] = ServingFunction(
                self,
                key.title().replace("_", ""),
                spec=FunctionSpec(
                    spec.name, spec.memory_mb, spec.timeout_s, spec.description, layer_names
                ),
                layers=layers,
                arch=arch,
                environment={
                    **(bundle_env if spec.model else {}),
                    **(
                        {"SHADOW_BUNDLE_PATH": f"/opt/{config.shadow_bundle.name}"}  # type: ignore[union-attr]
                        if shadow
                        else {}
                    ),
                    **({} if key in ("predict", "explain", "outcomes") else job_env(key)),
                },
                with_alias=key in CANARY_FUNCTIONS,
                function_name=f"{self.stack_name}-batch-score" if key == "batch_score" else None,
                reserved_concurrency=reserved.get(key) if config.reserved_concurrency else None,
            )

        # Records: predictions (predict, explain) and outcomes, each to its own stream.
        for key, table in (
            ("predict", PREDICTIONS),
            ("explain", PREDICTIONS),
            ("outcomes", OUTCOMES),
        ):
            records.subscribe(f"{key.title()}Records", fns[key].log_group, table)
        for alarm in records.alarms:
            alerts.notify(alarm)

        self._rollup(fns["rollup"], records, failures, config)

        # A/B and drift: read rollups, write their own reports, publish metrics and alerts.
        for key, prefix in (("ab_analysis", "ab"), ("drift_check", "drift")):
            fn = fns[key]
            reports = f"{REPORTS_PREFIX}{prefix}/"
            findings = s3_access(
                fn.role,
                records.bucket,
                read=[ROLLUPS_PREFIX, reports],
                write=[reports],
                list_all=True,
            )
            alerts.topic.grant_publish(fn.role)
            fn.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
                )
            )
            on_failure(fn.function, failures)
            acknowledge(
                fn.role,
                "AwsSolutions-IAM5",
                "Reads rollups and its own report prefix, writes its report prefix (no deletes); ListBucket on the "
                "data bucket is unconditioned because S3 answers a missing key (a report or alert marker not written "
                "yet) with 404 only to a caller that may list; listing shows key names, not records. Publishes to the "
                "alerts topic (its KMS key) and puts metrics in our namespace only.",
                "Action::kms:GenerateDataKey*",
                *findings,
                "Resource::*",
                f"Resource::{ref(fns['predict'].function)}:*",
            )
            acknowledge(
                fn.function,
                "Serverless-LambdaDLQ",
                "Failed asynchronous invocations go to an SQS on-failure destination (EventInvokeConfig), which "
                "keeps more context than a DLQ.",
            )
        fns["ab_analysis"].function.add_environment(
            "PREDICT_FUNCTION_NAME", fns["predict"].function.function_name
        )
        fns["ab_analysis"].function.add_environment("AB_DECISION_METRIC", config.ab_metric)
        if config.cost_matrix:
            fns["ab_analysis"].function.add_environment("COST_MATRIX", config.cost_matrix)
        fns["ab_analysis"].role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetAlias", "lambda:GetFunctionConfiguration"],
                resources=[
                    fns["predict"].function.function_arn,
                    f"{fns['predict'].function.function_arn}:*",
                ],
            )
        )
        Schedule(
            self,
            "DriftSchedule",
            function=fns["drift_check"].function,
            expression=config.drift_schedule,
            dlq=failures,
        )
        Schedule(
            self,
            "AbSchedule",
            function=fns["ab_analysis"].function,
            expression=config.ab_schedule,
            dlq=failures,
        )
        batch = Batch(
            self,
            "Batch",
            function=fns["batch_score"],
            access_logs=records.access_logs,
            dlq=failures,
            schedule=config.batch_schedule,
            function_name=f"{self.stack_name}-batch-score",
        )
        on_failure(fns["batch_score"].function, failures)
        acknowledge(
            fns["batch_score"].function,
            "Serverless-LambdaDLQ",
            "Failed asynchronous invocations go to an SQS on-failure destination (EventInvokeConfig).",
        )
        for alarm in batch.alarms:
            alerts.notify(alarm)
        self.batch = batch

        # Canary rollouts of predict and explain, each guarded by its own smoke test.
        self.canaries: dict[str, Canary] = {}
        for key, route in (("predict", "/predict/batch"), ("explain", "/predict/explain")):
            target = fns[key]
            smoke_spec = SPECS[f"smoke_{key}"]
            smoke = ServingFunction(
                self,
                f"Smoke{key.title()}",
                spec=FunctionSpec(
                    smoke_spec.name,
                    smoke_spec.memory_mb,
                    smoke_spec.timeout_s,
                    smoke_spec.description,
                    (*smoke_spec.layers, "model"),
                ),
                layers=layers,
                arch=arch,
                environment={
                    **bundle_env,
                    "TARGET_FUNCTION_ARN": target.function.current_version.function_arn,
                    "SMOKE_ROUTE": route,
                },
            )
            target.function.current_version.grant_invoke(smoke.role)
            acknowledge(
                smoke.function,
                "Serverless-LambdaDLQ",
                "A CodeDeploy hook: a failed or silent hook fails the deployment, which rolls back; no event to keep.",
            )
            canary = Canary(
                self,
                f"{key.title()}Canary",
                function=target.function,
                alias=target.alias,  # type: ignore[arg-type]
                model_version=model_version,
                config=deployment_config(self, config.deployment)
                if key == "predict"
                else self._shared_config,
                pre_hook=smoke.function,
                p95_latency_ms=config.p95_latency_ms * (4 if key == "explain" else 1),
            )
            self._shared_config = canary.group.deployment_config
            smoke.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["codedeploy:PutLifecycleEventHookExecutionStatus"],
                    resources=[canary.group.deployment_group_arn],
                )
            )
            for alarm in canary.alarms:
                alerts.notify(alarm)
            self.canaries[key] = canary

        self._autopilot(fns["autopilot"], fns["predict"], records, alerts, failures, config)

        api = Api(
            self,
            "Api",
            config=config,
            targets={
                "predict": fns["predict"].target,
                "explain": fns["explain"].target,
                "outcomes": fns["outcomes"].target,
            },
        )
        if config.waf:
            Firewall(self, "Waf", stage_arn=api.api.deployment_stage.stage_arn)
        Dashboard(
            self,
            "Ops",
            functions={k: v.function for k, v in fns.items()},
            api_name=api.api.rest_api_name,
        )

        # Validation errors as a rate of all requests: notifies, never rolls back (see Canary).
        self.validation_alarm = cw.Alarm(
            self,
            "ValidationErrorRate",
            alarm_name=f"{self.stack_name}-api-4xx-rate",
            alarm_description=f"more than {config.validation_error_rate:.0%} of API requests answered 4xx "
            "for 3 of 5 minutes (a schema break, or a misbehaving client); does not roll back",
            metric=cw.Metric(
                namespace="AWS/ApiGateway",
                metric_name="4XXError",
                dimensions_map={
                    "ApiName": api.api.rest_api_name,
                    "Stage": api.api.deployment_stage.stage_name,
                },
                statistic="Average",
                period=Duration.minutes(1),
            ),
            threshold=config.validation_error_rate,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alerts.notify(self.validation_alarm)

        self.functions = fns
        self.records = records
        self.api = api
        self.alerts = alerts
        self.config = config
        outputs = {
            "Stage": config.stage,
            "ApiUrl": api.api.url,
            "ApiKeyId": api.key.key_id,
            "DataBucket": records.bucket.bucket_name,
            "BatchBucket": batch.bucket.bucket_name,
            "ModelVersion": model_version,
            "PredictFunction": fns["predict"].function.function_name,
            "ExplainFunction": fns["explain"].function.function_name,
            "PredictDeploymentGroup": self.canaries["predict"].group.deployment_group_name,
            "PredictCodeDeployApplication": self.canaries[
                "predict"
            ].group.application.application_name,
            "AlarmPrefix": f"{self.stack_name}-",
            "AlertsTopic": alerts.topic.topic_arn,
            "PredictionsStream": records.streams[PREDICTIONS].ref,
            "OutcomesStream": records.streams[OUTCOMES].ref,
            "GlueDatabase": records.tables.database_name,
            "AthenaWorkgroup": records.tables.workgroup_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
        self._acknowledge(config)

    def _autopilot(
        self,
        fn: ServingFunction,
        predict: ServingFunction,
        records: Records,
        alerts: Alerts,
        failures: object,
        config: AppConfig,
    ) -> None:
        """The rollout controller: reads the alias, its alarms, CodeDeploy and the latest A/B
        report; moves the alias weights; writes the audit; alerts."""
        group = self.canaries["predict"].group
        alarm_prefix = f"{self.stack_name}-predict-"
        for name, value in {
            "PREDICT_FUNCTION_NAME": predict.function.function_name,
            "ALARM_PREFIX": alarm_prefix,
            "CODEDEPLOY_APPLICATION": group.application.application_name,
            "CODEDEPLOY_GROUP": group.deployment_group_name,
        }.items():
            fn.function.add_environment(name, value)
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "lambda:GetAlias",
                    "lambda:UpdateAlias",
                    "lambda:GetFunctionConfiguration",
                ],
                resources=[predict.function.function_arn, f"{predict.function.function_arn}:*"],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[
                    f"arn:{self.partition}:cloudwatch:{self.region}:{self.account}:alarm:{alarm_prefix}*"
                ],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["codedeploy:ListDeployments"], resources=[group.deployment_group_arn]
            )
        )
        # the alias weights and the step, for the dashboard (PutMetricData has no resource)
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        audit = f"{REPORTS_PREFIX}rollout/audit/"
        findings = s3_access(
            fn.role,
            records.bucket,
            read=[f"{REPORTS_PREFIX}ab/", audit],
            write=[audit],
            list_all=True,
        )
        alerts.topic.grant_publish(fn.role)
        on_failure(fn.function, failures)  # type: ignore[arg-type]
        acknowledge(
            fn.role,
            "AwsSolutions-IAM5",
            "Moves the predict alias (its versions are the function ARN with a qualifier), reads this stage's "
            "predict alarms (by name prefix), reads the A/B reports and reads/writes the rollout audit (no "
            "deletes); ListBucket unconditioned so a report not written yet reads as 404. Publishes alerts "
            "(the topic's KMS key). Puts the rollout metrics in our namespace only (PutMetricData takes no "
            "resource).",
            "Action::kms:GenerateDataKey*",
            *findings,
            "Resource::*",
            f"Resource::{ref(predict.function)}:*",
            f"Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{alarm_prefix}*",
        )
        acknowledge(
            fn.function,
            "Serverless-LambdaDLQ",
            "Failed asynchronous invocations go to an SQS on-failure destination (EventInvokeConfig).",
        )
        Schedule(
            self,
            "AutopilotSchedule",
            function=fn.function,
            expression=config.autopilot_schedule,
            dlq=failures,  # type: ignore[arg-type]
        )

    def _rollup(
        self, fn: ServingFunction, records: Records, failures: object, config: AppConfig
    ) -> None:
        """The rollup job: Athena over the record tables, results and rollups in the bucket."""
        tables = records.tables
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[tables.workgroup_arn],
            )
        )
        fn.role.add_to_policy(
            tables.glue_statement(
                "glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions"
            )
        )
        # Athena reads the records and writes results with the caller's credentials.
        findings = s3_access(
            fn.role,
            records.bucket,
            read=[*RECORD_PREFIXES, ATHENA_RESULTS_PREFIX, ROLLUPS_PREFIX],
            write=[ATHENA_RESULTS_PREFIX, ROLLUPS_PREFIX],
            list_all=True,
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation"], resources=[records.bucket.bucket_arn]
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListMultipartUploadParts"],
                resources=[records.bucket.arn_for_objects(f"{ATHENA_RESULTS_PREFIX}*")],
            )
        )
        acknowledge(
            fn.role,
            "AwsSolutions-IAM5",
            "Reads the record prefixes (Athena scans them with the caller's credentials), reads and writes Athena "
            "results and rollups under their prefixes (no deletes). ListBucket on the data bucket is unconditioned: "
            "the job reads a rollup not written yet as S3's 404, which S3 gives only to a caller that may list "
            "(else 403); listing shows key names, not records.",
            *findings,
        )
        on_failure(fn.function, failures)  # type: ignore[arg-type]
        acknowledge(
            fn.function,
            "Serverless-LambdaDLQ",
            "Failed asynchronous invocations go to an SQS on-failure destination (EventInvokeConfig).",
        )
        Schedule(
            self,
            "RollupSchedule",
            function=fn.function,
            expression=config.rollup_schedule,
            dlq=failures,  # type: ignore[arg-type]
        )

    def _acknowledge(self, config: AppConfig) -> None:
        """Findings accepted for the whole stack, each with its reason (others sit on their constructs)."""
        if not config.waf:
            acknowledge(
                self.api.api,
                "AwsSolutions-APIG3",
                "The WAF web ACL is optional (context waf=true); throttling and per-client usage plans always apply.",
            )
        if config.auth == "iam":
            acknowledge(
                self.api.api,
                "AwsSolutions-COG4",
                "Every method uses IAM (SigV4) authorization; context auth=cognito switches to a Cognito authorizer.",
            )
        for key in ("predict", "explain", "outcomes"):
            acknowledge(
                self.functions[key].function,
                "Serverless-LambdaDLQ",
                "Invoked synchronously by API Gateway: the caller gets the error; there is no event to keep.",
            )
