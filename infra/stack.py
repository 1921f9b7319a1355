"""The avsev stack: layers, functions, API, rollouts (handed to the controller), records,
schedules, alerts, dashboard. Grants live here, where the pieces meet.

`AvsevStack.__init__` is the table of contents: each `_build_*` step takes plain inputs and
returns what a later step needs. What a function needs is a field of its `FunctionSpec`
(infra/catalog.py), never a test of its name."""

from __future__ import annotations

import json
from typing import Any

from avsev.monitoring.record_metrics import namespace
from avsev.monitoring.tables import OUTCOMES, PREDICTIONS
from avsev.rollout.handover import golden_property
from avsev.serving.bundle import read_card
from avsev.serving.records import SPOOL_ENV
from avsev.serving.records_extension import (
    METRICS_ENV,
    METRICS_NAMESPACE_ENV,
    RECORDS_SPOOL,
    STREAMS_ENV,
)
from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.catalog import function_specs
from infra.config import AppConfig
from infra.constants import (
    AB_REPORTS,
    API_4XX_ALARM,
    ATHENA_RESULTS_PREFIX,
    AUDIT_PREFIX,
    METRICS_NAMESPACE,
    RECORD_PREFIXES,
    RECORD_TYPES,
    REGISTRY_PREFIX,
    ROLLUPS_PREFIX,
    Env,
    report_prefix,
)
from infra.constructs.access import s3_access
from infra.constructs.api import Api
from infra.constructs.batch import Batch
from infra.constructs.functions import FunctionSpec, Layers, ServingFunction
from infra.constructs.http_api import HttpApiGateway
from infra.constructs.operations import (
    Alerts,
    Dashboard,
    Firewall,
    Schedule,
    failure_queue,
    on_failure,
)
from infra.constructs.records import Records
from infra.constructs.retraining import Retraining
from infra.constructs.rollout import CandidateAlarms, LiveAlias
from infra.constructs.tables import RecordTables
from infra.nag import acknowledge, ref

TRACING = {"active": lambda_.Tracing.ACTIVE, "passthrough": lambda_.Tracing.PASS_THROUGH}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}

ASYNC_FAILURES = (
    "Failed asynchronous invocations go to an SQS on-failure destination (EventInvokeConfig), which "
    "keeps more context than a DLQ."
)
NO_DLQ = {
    "api": "Invoked synchronously by API Gateway: the caller gets the error; there is no event to keep.",
    "authorizer": "Invoked synchronously by API Gateway as the HTTP API's authorizer: a failure is the "
    "caller's 500; there is no event to keep.",
}


def model_version(config: AppConfig) -> str:
    """The served bundle's version, once both bundles are checked against the stack's arch."""
    card = read_card(config.bundle)
    if card.arch != config.arch:
        raise ValueError(
            f"bundle {config.bundle} is built for {card.arch}, the stack for {config.arch}"
        )
    if config.shadow_bundle is not None:
        shadow = read_card(config.shadow_bundle)
        if shadow.arch != config.arch:
            raise ValueError(f"shadow bundle {config.shadow_bundle} is built for {shadow.arch}")
    return card.version


class AvsevStack(Stack):
    """Shared resources (layers, records, alerts, the failure queue), the functions of the
    catalog, then one step per concern: monitoring (records, rollup, A/B and drift reports),
    batch, rollouts (alarms, the controller and the handover), asynchronous invocation, the
    serving API, and
    operations (WAF, dashboard, the validation alarm, outputs)."""

    def __init__(self, scope: Construct, id: str, *, config: AppConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        version = model_version(config)
        specs = function_specs(config)
        arch = ARCHITECTURES[config.arch]

        # Shared resources: layers, the records pipeline and its tables, alerts, failures.
        layers = Layers(
            self,
            "Layers",
            arch=arch,
            arch_name=config.arch,
            bundle=config.bundle,
            shadow=config.shadow_bundle,
            records_extension=config.records == "extension",
        )
        records = Records(
            self,
            "Records",
            scan_limit_gb=config.athena_scan_limit_gb,
            buffer_seconds=config.record_buffer_seconds,
            direct=config.records == "extension",
        )
        failures = failure_queue(self, "Failures")
        alerts = Alerts(self, "Alerts", email=config.alarm_email, dead_letters=failures)

        # The functions, each with the shared resources its spec names.
        fns = self._build_functions(
            specs=specs,
            layers=layers,
            arch=arch,
            tracing=TRACING[config.tracing_mode],
            shared_env={
                Env.DATA_BUCKET: records.bucket.bucket_name,
                Env.ALERTS_TOPIC_ARN: alerts.topic.topic_arn,
                Env.ATHENA_WORKGROUP: records.tables.workgroup_name,
                Env.GLUE_DATABASE: records.tables.database_name,
            },
        )
        # Monitoring.
        self._build_records(
            functions=fns, specs=specs, records=records, alerts=alerts, layers=layers
        )
        self._build_rollup(fn=fns["rollup"], bucket=records.bucket, tables=records.tables)
        self._build_reports(
            functions=fns,
            specs=specs,
            bucket=records.bucket,
            alerts=alerts,
            predict=fns["predict"].function,
        )
        # Batch scoring.
        batch = self._build_batch(
            fn=fns["batch_score"],
            spec=specs["batch_score"],
            access_logs=records.access_logs,
            failures=failures,
            schedule=config.batch_schedule,
            alerts=alerts,
        )
        # The retraining loop: its decider, and the CodeBuild project that retrains.
        retraining = self._build_retraining(
            decider=fns["lifecycle"],
            bucket=records.bucket,
            config=config,
            failures=failures,
            alerts=alerts,
        )
        # Rollouts: alarms on each new version, the controller, and the handover to it.
        canaries = self._build_alarms(
            functions=fns, specs=specs, model_version=version, alerts=alerts
        )
        self._build_autopilot(
            fn=fns["autopilot"],
            functions=fns,
            specs=specs,
            canaries=canaries,
            bucket=records.bucket,
            alerts=alerts,
        )
        handovers = self._build_handovers(
            functions=fns,
            specs=specs,
            controller=fns["autopilot"].function,
            model_version=version,
            golden=golden_property(read_card(config.bundle)),
        )
        # Retries, the failure queue and schedules of the asynchronous functions. Placed after
        # the grants above and before the A/B job's alias read, so every role's statements keep
        # the order a deployed stack has (a reorder would be a needless policy update).
        self._build_invocation(functions=fns, specs=specs, failures=failures)
        self._build_ab_analysis(
            fn=fns["ab_analysis"],
            predict=fns["predict"].function,
            metric=config.ab_metric,
            cost_matrix=config.cost_matrix,
            margin=config.ab_margin,
        )
        # The serving API, then operations.
        targets = {key: fns[key].target for key, spec in specs.items() if spec.invocation == "api"}
        api: Api | HttpApiGateway
        if config.api == "http":
            api = HttpApiGateway(
                self,
                "HttpApi",
                config=config,
                targets=targets,
                authorizer=fns["authorizer"].function,
            )
        else:
            api = Api(self, "Api", config=config, targets=targets)
        for handover in handovers:  # the alias exists once the controller has answered
            api.node.add_dependency(handover)
        self.validation_alarm = self._build_operations(
            api=api,
            functions={key: fn.function for key, fn in fns.items()},
            alerts=alerts,
            waf=config.waf,
            validation_error_rate=config.validation_error_rate,
        )
        self._build_outputs(
            config=config,
            model_version=version,
            api=api,
            records=records,
            batch=batch,
            functions=fns,
            alerts=alerts,
            retraining=retraining,
        )
        if isinstance(api, Api):
            self._acknowledge(config=config, api=api.api)

        self.config = config
        self.functions = fns
        self.records = records
        self.alerts = alerts
        self.batch = batch
        self.canaries = canaries
        self.api = api

    # ---- the functions ------------------------------------------------------------------
    def _build_functions(
        self,
        *,
        specs: dict[str, FunctionSpec],
        layers: Layers,
        arch: lambda_.Architecture,
        tracing: lambda_.Tracing,
        shared_env: dict[str, str],
    ) -> dict[str, ServingFunction]:
        """One function per spec, with the shared resources it names in its environment;
        `tracing` for those API Gateway invokes (the scheduled and asynchronous ones trace
        actively: a few runs a day)."""
        return {
            key: ServingFunction(
                self,
                key.title().replace("_", ""),
                spec=spec,
                layers=layers,
                arch=arch,
                environment={name: shared_env[name] for name in spec.environment},
                tracing=tracing
                if spec.invocation in ("api", "authorizer")
                else lambda_.Tracing.ACTIVE,
            )
            for key, spec in specs.items()
        }

    def _build_invocation(
        self,
        *,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        failures: sqs.IQueue,
    ) -> None:
        """Asynchronous functions: two retries, then the failure queue; their schedules.
        Functions called synchronously keep no event."""
        for key, spec in specs.items():
            fn = functions[key].function
            if spec.invocation != "async":
                acknowledge(fn, "Serverless-LambdaDLQ", NO_DLQ[spec.invocation])
                continue
            on_failure(fn, failures)
            acknowledge(fn, "Serverless-LambdaDLQ", ASYNC_FAILURES)
            if spec.schedule is not None:
                Schedule(
                    self,
                    spec.schedule.id,
                    function=fn,
                    expression=spec.schedule.expression,
                    dlq=failures,
                )

    # ---- monitoring: records, rollups, A/B and drift reports ------------------------------
    def _build_records(
        self,
        *,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        records: Records,
        alerts: Alerts,
        layers: Layers,
    ) -> None:
        """Predictions (predict, explain) and outcomes, each to its own stream. With the
        records extension (`-c records=extension`) the functions spool their record lines
        and the extension puts them on the direct streams; the subscription stays, for the
        lines the extension could not put (it prints them)."""
        for key, spec in specs.items():
            if spec.records is not None:
                records.subscribe(f"{key.title()}Records", functions[key].log_group, spec.records)
                if records.direct_streams:
                    self._records_extension(functions[key], spec, records, layers)
        for alarm in records.alarms:
            alerts.notify(alarm)

    def _records_extension(
        self, fn: ServingFunction, spec: FunctionSpec, records: Records, layers: Layers
    ) -> None:
        """The extension's layer, its settings (`avsev.serving.records_extension`) and
        PutRecordBatch on the direct streams."""
        fn.function.add_layers(layers.by_name["records-extension"])
        streams = records.direct_streams
        for name, value in {
            SPOOL_ENV: RECORDS_SPOOL,
            STREAMS_ENV: json.dumps(
                {RECORD_TYPES[t]: str(s.delivery_stream_name) for t, s in streams.items()}
            ),
            METRICS_ENV: spec.record_metrics or "",
            METRICS_NAMESPACE_ENV: namespace(METRICS_NAMESPACE, self.stack_name),
        }.items():
            fn.function.add_environment(name, value)
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecordBatch"],
                resources=[s.attr_arn for s in streams.values()],
            )
        )

    def _build_rollup(
        self, *, fn: ServingFunction, bucket: s3.IBucket, tables: RecordTables
    ) -> None:
        """The rollup job: Athena over the record tables, results and rollups in the bucket."""
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
            bucket,
            read=[*RECORD_PREFIXES, ATHENA_RESULTS_PREFIX, ROLLUPS_PREFIX],
            write=[ATHENA_RESULTS_PREFIX, ROLLUPS_PREFIX],
            list_all=True,
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetBucketLocation"], resources=[bucket.bucket_arn])
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListMultipartUploadParts"],
                resources=[bucket.arn_for_objects(f"{ATHENA_RESULTS_PREFIX}*")],
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

    def _build_reports(
        self,
        *,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        bucket: s3.IBucket,
        alerts: Alerts,
        predict: lambda_.IFunction,
    ) -> None:
        """A/B and drift: read rollups, write their own reports, publish metrics and alerts."""
        for key, spec in specs.items():
            if spec.reports is None:
                continue
            fn = functions[key]
            reports = report_prefix(spec.reports)
            # the A/B job reads when the rollout's step began from the audit (its evidence)
            audit = [AUDIT_PREFIX] if spec.reports == AB_REPORTS else []
            findings = s3_access(
                fn.role,
                bucket,
                read=[ROLLUPS_PREFIX, reports, *audit],
                write=[reports],
                list_all=True,
            )
            alerts.topic.grant_publish(fn.role)
            fn.role.add_to_policy(self._put_metrics())
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
                f"Resource::{ref(predict)}:*",
            )

    def _build_ab_analysis(
        self,
        *,
        fn: ServingFunction,
        predict: lambda_.IFunction,
        metric: str,
        cost_matrix: str | None,
        margin: float | None,
    ) -> None:
        """The A/B job reads the predict alias (which versions serve) and decides on `metric`,
        against the non-inferiority `margin` (the metric's default when None)."""
        fn.function.add_environment(Env.PREDICT_FUNCTION_NAME, predict.function_name)
        fn.function.add_environment(Env.AB_DECISION_METRIC, metric)
        if margin is not None:
            fn.function.add_environment(Env.AB_MARGIN, str(margin))
        if cost_matrix:
            fn.function.add_environment(Env.COST_MATRIX, cost_matrix)
        fn.role.add_to_policy(self._read_alias(predict))

    # ---- batch ----------------------------------------------------------------------------
    def _build_batch(
        self,
        *,
        fn: ServingFunction,
        spec: FunctionSpec,
        access_logs: s3.IBucket,
        failures: sqs.IQueue,
        schedule: str,
        alerts: Alerts,
    ) -> Batch:
        """The batch bucket, its upload and daily rules, and its alarms."""
        batch = Batch(
            self,
            "Batch",
            function=fn,
            access_logs=access_logs,
            dlq=failures,
            schedule=schedule,
            function_name=f"{self.stack_name}-{spec.physical_name}",
        )
        for alarm in batch.alarms:
            alerts.notify(alarm)
        return batch

    def _build_retraining(
        self,
        *,
        decider: ServingFunction,
        bucket: s3.IBucket,
        config: AppConfig,
        failures: sqs.IQueue,
        alerts: Alerts,
    ) -> Retraining:
        """The loop's decider (its schedule is the catalog's) may start the retraining project
        and hears each build's end; it alerts when a run fails twice."""
        retraining = Retraining(
            self,
            "Retraining",
            decider=decider,
            bucket=bucket,
            registry=config.registry or f"s3://{bucket.bucket_name}/{REGISTRY_PREFIX}",
            stage=config.stage,
            approval=config.retrain_approval,
            alerts=alerts.topic,
            dlq=failures,
        )
        alerts.topic.grant_publish(decider.role)
        return retraining

    # ---- rollouts -------------------------------------------------------------------------
    def _build_alarms(
        self,
        *,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        model_version: str,
        alerts: Alerts,
    ) -> dict[str, CandidateAlarms]:
        """Alarms on the newest version of each rolled-out function (the candidate handed over)."""
        canaries: dict[str, CandidateAlarms] = {}
        for key, spec in specs.items():
            if spec.rollout is None:
                continue
            canary = CandidateAlarms(
                self,
                f"{key.title()}Canary",  # the construct path the alarms always had
                name=key,
                function=functions[key].function,
                model_version=model_version,
                p95_latency_ms=spec.rollout.p95_latency_ms,
            )
            for alarm in canary.alarms:
                alerts.notify(alarm)
            canaries[key] = canary
        return canaries

    def _build_handovers(
        self,
        *,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        controller: lambda_.Function,
        model_version: str,
        golden: str,
    ) -> list[Construct]:
        """Each rolled-out function's new version goes to the controller (LiveAlias), which owns
        alias `live`; callers invoke that alias."""
        handovers: list[Construct] = []
        for key, spec in specs.items():
            if spec.rollout is None:
                continue
            live = LiveAlias(
                self,
                f"{key.title()}LiveAlias",
                function=functions[key].function,
                controller=controller,
                model_version=model_version,
                golden=golden,
                smoke_route=spec.rollout.smoke_route,
                role="follower" if spec.rollout.follows else "leader",
            )
            functions[key].alias = live.alias
            handovers.append(live.resource)
        return handovers

    def _build_autopilot(
        self,
        *,
        fn: ServingFunction,
        functions: dict[str, ServingFunction],
        specs: dict[str, FunctionSpec],
        canaries: dict[str, CandidateAlarms],
        bucket: s3.IBucket,
        alerts: Alerts,
    ) -> None:
        """The rollout controller: the one writer of the rolled-out functions' alias `live`.
        It answers the handover (parity check: it invokes the new versions), reads their
        alarms and the latest A/B report, moves the weights, writes the audit, alerts."""
        predict = functions["predict"].function
        leaders = [k for k, s in specs.items() if s.rollout and not s.rollout.follows]
        if leaders != ["predict"]:
            raise ValueError(f"the controller canaries predict alone, not {leaders}")
        followers = {
            functions[k].function.function_name: canaries[k].alarm_prefix
            for k, s in specs.items()
            if s.rollout and s.rollout.follows == "predict"
        }
        fn.function.add_environment(Env.PREDICT_FUNCTION_NAME, predict.function_name)
        fn.function.add_environment(Env.ALARM_PREFIX, canaries["predict"].alarm_prefix)
        fn.function.add_environment(Env.FOLLOWER_FUNCTIONS, self.to_json_string(followers))
        rolled = [functions[k].function for k, s in specs.items() if s.rollout]
        for target in rolled:
            fn.role.add_to_policy(
                self._read_alias(target, "lambda:CreateAlias", "lambda:UpdateAlias")
            )
            # the parity check invokes the new version itself, before anyone is served by it
            fn.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[f"{target.function_arn}:*"]
                )
            )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[
                    f"arn:{self.partition}:cloudwatch:{self.region}:{self.account}:alarm:{c.alarm_prefix}*"
                    for c in canaries.values()
                ],
            )
        )
        # the alias weights and the step, for the dashboard (PutMetricData has no resource)
        fn.role.add_to_policy(self._put_metrics())
        findings = s3_access(
            fn.role,
            bucket,
            read=[report_prefix(AB_REPORTS), AUDIT_PREFIX],
            write=[AUDIT_PREFIX],
            list_all=True,
        )
        alerts.topic.grant_publish(fn.role)
        acknowledge(
            fn.role,
            "AwsSolutions-IAM5",
            "Creates and moves the rolled-out functions' alias and invokes their versions for the parity "
            "check (a version is the function ARN with a qualifier), reads this stage's rollout alarms (by "
            "name prefix), reads the A/B reports and reads/writes the rollout audit (no deletes); ListBucket "
            "unconditioned so a report not written yet reads as 404. Publishes alerts (the topic's KMS key). "
            "Puts the rollout metrics in our namespace only (PutMetricData takes no resource).",
            "Action::kms:GenerateDataKey*",
            *findings,
            "Resource::*",
            *(f"Resource::{ref(target)}:*" for target in rolled),
            *(
                f"Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{c.alarm_prefix}*"
                for c in canaries.values()
            ),
        )

    # ---- operations -------------------------------------------------------------------------
    def _build_operations(
        self,
        *,
        api: Api | HttpApiGateway,
        functions: dict[str, lambda_.Function],
        alerts: Alerts,
        waf: bool,
        validation_error_rate: float,
    ) -> cw.Alarm:
        """The optional WAF, the dashboard, and the validation-error-rate alarm."""
        if waf and isinstance(api, Api):  # AWS WAF protects REST APIs, not HTTP APIs
            Firewall(self, "Waf", stage_arn=api.api.deployment_stage.stage_arn)
        Dashboard(
            self,
            "Ops",
            functions=functions,
            api_dimensions={"ApiName": api.api.rest_api_name}
            if isinstance(api, Api)
            else api.metric_dimensions,
            api_metrics=tuple(api.metric_names.values()),
        )
        # Validation errors as a rate of all requests: notifies, never rolls back (see Canary).
        alarm = cw.Alarm(
            self,
            "ValidationErrorRate",
            alarm_name=f"{self.stack_name}-{API_4XX_ALARM}",
            alarm_description=f"more than {validation_error_rate:.0%} of API requests answered 4xx "
            "for 3 of 5 minutes (a schema break, or a misbehaving client); does not roll back",
            metric=cw.Metric(
                namespace="AWS/ApiGateway",
                metric_name=api.metric_names["4xx"],
                dimensions_map=api.metric_dimensions,
                statistic="Average",
                period=Duration.minutes(1),
            ),
            threshold=validation_error_rate,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alerts.notify(alarm)
        return alarm

    def _build_outputs(
        self,
        *,
        config: AppConfig,
        model_version: str,
        api: Api | HttpApiGateway,
        records: Records,
        batch: Batch,
        functions: dict[str, ServingFunction],
        alerts: Alerts,
        retraining: Retraining,
    ) -> None:
        outputs = {
            "Stage": config.stage,
            "ApiUrl": api.url,
            # the client's key: `aws apigateway get-api-key --include-value --api-key <ApiKeyId>`,
            # or for the HTTP API `aws secretsmanager get-secret-value --secret-id <ApiKeySecret>`
            **(
                {"ApiKeyId": api.key.key_id}
                if isinstance(api, Api)
                else {"ApiKeySecret": api.key_secret.secret_arn}
            ),
            "DataBucket": records.bucket.bucket_name,
            "BatchBucket": batch.bucket.bucket_name,
            "ModelVersion": model_version,
            "PredictFunction": functions["predict"].function.function_name,
            "PredictVersion": functions["predict"].function.current_version.version,
            "ExplainFunction": functions["explain"].function.function_name,
            "RolloutController": functions["autopilot"].function.function_name,
            "AlarmPrefix": f"{self.stack_name}-",
            "AlertsTopic": alerts.topic.topic_arn,
            "PredictionsStream": records.streams[PREDICTIONS].ref,
            "OutcomesStream": records.streams[OUTCOMES].ref,
            "GlueDatabase": records.tables.database_name,
            "AthenaWorkgroup": records.tables.workgroup_name,
            "RetrainProject": retraining.project.project_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)

    def _acknowledge(self, *, config: AppConfig, api: apigw.RestApi) -> None:
        """Findings accepted for the whole stack, each with its reason (others sit on their constructs)."""
        if not config.waf:
            acknowledge(
                api,
                "AwsSolutions-APIG3",
                "The WAF web ACL is optional (context waf=true); throttling and per-client usage plans always apply.",
            )
        if config.auth == "iam":
            acknowledge(
                api,
                "AwsSolutions-COG4",
                "Every method uses IAM (SigV4) authorization; context auth=cognito switches to a Cognito authorizer.",
            )

    # ---- statements used by several steps ---------------------------------------------------
    @staticmethod
    def _read_alias(function: lambda_.IFunction, *more: str) -> iam.PolicyStatement:
        """Read (and with `more`, change) a rolled-out function's alias and versions."""
        actions = ["lambda:GetAlias", *more, "lambda:GetFunctionConfiguration"]
        return iam.PolicyStatement(
            actions=actions, resources=[function.function_arn, f"{function.function_arn}:*"]
        )

    @staticmethod
    def _put_metrics() -> iam.PolicyStatement:
        """PutMetricData takes no resource: our namespace only, by condition."""
        return iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
        )
