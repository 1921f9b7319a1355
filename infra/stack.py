"""The avsev stack: layers, functions, API, canary rollouts, records, schedules, alerts,
dashboard. Grants live here, where the pieces meet."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import AppConfig
from infra.constants import (
    CANARY_FUNCTIONS,
    METRICS_NAMESPACE,
    OUTCOMES_PREFIX,
    PREDICTIONS_PREFIX,
    REPORTS_PREFIX,
)
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
from infra.nag import S3_GRANT_ACTIONS, acknowledge, ref

SPECS = {
    # Serving: enough memory for a full vCPU share at low latency; short timeouts.
    "predict": FunctionSpec(
        "predict", 1024, 10, "POST /predict, /predict/batch; GET /model, /health", model=True
    ),
    "explain": FunctionSpec(
        "explain", 1024, 10, "POST /predict/explain (exact TreeSHAP)", model=True
    ),
    "outcomes": FunctionSpec("outcomes", 256, 10, "POST /outcomes"),
    # Analysis: numpy/scipy over a day of records.
    "ab_analysis": FunctionSpec(
        "ab_analysis", 1024, 300, "hourly A/B report", ("common", "deps", "analysis")
    ),
    "drift_check": FunctionSpec(
        "drift_check", 1024, 300, "daily drift check", ("common", "deps", "analysis"), model=True
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

        layers = Layers(self, "Layers", arch=arch, arch_name=config.arch, bundle=config.bundle)
        records = Records(self, "Records")
        alerts = Alerts(self, "Alerts", email=config.alarm_email)
        failures = failure_queue(self, "Failures")

        common_env = {
            "DATA_BUCKET": records.bucket.bucket_name,
            "ALERTS_TOPIC_ARN": alerts.topic.topic_arn,
        }
        fns: dict[str, ServingFunction] = {}
        for key, spec in SPECS.items():
            if key.startswith("smoke_"):
                continue
            layer_names = spec.layers + (("model",) if spec.model else ())
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
                    **({} if key in ("predict", "explain", "outcomes") else common_env),
                },
                with_alias=key in CANARY_FUNCTIONS,
                function_name=f"{self.stack_name}-batch-score" if key == "batch_score" else None,
            )

        # Records: every serving function's prediction/outcome lines go to the stream.
        for key in ("predict", "explain", "outcomes"):
            records.subscribe(f"{key.title()}Records", fns[key].log_group)

        # Analysis functions: read records, write their reports, publish metrics and alerts.
        for key, prefix in (("ab_analysis", "ab"), ("drift_check", "drift")):
            fn = fns[key]
            records.bucket.grant_read(fn.role, f"{PREDICTIONS_PREFIX}*")
            records.bucket.grant_read(fn.role, f"{OUTCOMES_PREFIX}*")
            records.bucket.grant_read_write(fn.role, f"{REPORTS_PREFIX}{prefix}/*")
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
                "Reads the record prefixes and writes its own report prefix of the data bucket (CDK's grant "
                "actions), publishes to the alerts topic (its KMS key), and puts metrics in our namespace.",
                *S3_GRANT_ACTIONS,
                "Action::kms:GenerateDataKey*",
                *(
                    f"Resource::{ref(records.bucket)}/{p}*"
                    for p in (PREDICTIONS_PREFIX, OUTCOMES_PREFIX, f"{REPORTS_PREFIX}{prefix}/")
                ),
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
                validation_error_threshold=config.validation_error_threshold,
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

        self.functions = fns
        self.records = records
        self.api = api
        self.alerts = alerts
        CfnOutput(self, "ApiUrl", value=api.api.url)
        CfnOutput(self, "ApiKeyId", value=api.key.key_id)
        CfnOutput(self, "DataBucket", value=records.bucket.bucket_name)
        CfnOutput(self, "BatchBucket", value=batch.bucket.bucket_name)
        CfnOutput(self, "ModelVersion", value=model_version)
        CfnOutput(self, "PredictFunction", value=fns["predict"].function.function_name)
        self._acknowledge(config)

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
        acknowledge(
            self,
            "CloudFormation-Validate::W7001",
            "aws-cdk-lib's Firehose module adds a region CIDR mapping that this stack does not need.",
        )
        for key in ("predict", "explain", "outcomes"):
            acknowledge(
                self.functions[key].function,
                "Serverless-LambdaDLQ",
                "Invoked synchronously by API Gateway: the caller gets the error; there is no event to keep.",
            )
