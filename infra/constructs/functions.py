"""Layers, and a function with its own role, log group and (optionally) alias `live`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avsev.monitoring.record_metrics import RECORD_METRICS, namespace
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import ROOT
from infra.constants import METRICS_NAMESPACE, Env
from infra.nag import acknowledge, ref

RUNTIME = lambda_.Runtime.PYTHON_3_14
"""The newest Python runtime aws-cdk-lib knows (the model needs glibc ≥ 2.27: 3.12 or newer)."""

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
LOG_FORMAT = lambda_.LoggingFormat.JSON
SYSTEM_LOG_LEVEL = lambda_.SystemLogLevel.WARN
"""Lambda's per-invocation system lines (START/END/REPORT; platform.start and platform.report
in JSON, both INFO) are ~0.4 KB a request that nobody reads: WARN keeps only the system events
at WARN, and Lambda's metrics (Duration, Errors, Invocations) do not come from these lines
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
Log-level filtering needs the JSON log format
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html)."""
APPLICATION_LOG_LEVEL = lambda_.ApplicationLogLevel.INFO
"""The record lines and EMF blobs the functions print carry no "level": Lambda takes them as
INFO, so INFO (not WARN) keeps every record for the subscription filter and every metric."""
UNITS = {"Count": cw.Unit.COUNT, "Milliseconds": cw.Unit.MILLISECONDS}
COMMON_LAYER = ROOT / "layers/common"
"""The avsev library's layer folder (its python/ lands on Lambda's sys.path)."""
RECORDS_EXTENSION_LAYER = ROOT / "layers/records-extension"
"""The records extension's launcher, `extensions/avsev-records` (`/opt/extensions/`, where
Lambda starts external extensions: https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html);
its code is the library's `avsev.serving.records_extension` (the common layer)."""

LAYER_EXCLUDES = ["**/__pycache__", "*.egg-info"]
"""The layer ships the library as it is; the offline tools live outside its tree (tools/avsev_tools)."""


Invocation = Literal["api", "authorizer", "async"]
"""How a function is called: by API Gateway (synchronously: the caller gets the error), as the
HTTP API's Lambda authorizer (synchronously, before the route's function), or by
EventBridge, CloudFormation or itself (asynchronously: retried, then kept in the failure
queue)."""


@dataclass(frozen=True, kw_only=True)
class Scheduled:
    """An EventBridge schedule that invokes the function."""

    id: str
    """Construct id of the schedule (its rule's description says `scheduled <id>`)."""
    expression: str
    """`rate(1 hour)`, `cron(...)`."""


@dataclass(frozen=True, kw_only=True)
class Rollout:
    """A function behind alias `live`, whose new versions the stack hands to the rollout
    controller (infra/constructs/rollout.py)."""

    smoke_route: str
    """The route the parity check calls on the new version (the card's golden requests)."""
    p95_latency_ms: float
    """Above this p95 duration the new version's latency alarm rolls it back."""
    follows: str | None = None
    """The function whose rollout this one follows: it takes a new model when that one
    promotes it (explain follows predict), instead of a canary of its own."""


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """One function of the stack: its code, size and layers, and what the stack wires to it.
    The stack reads these fields; it never asks a function's name what to do."""

    name: str
    """Folder under functions/."""
    memory_mb: int
    timeout_s: int
    description: str
    layers: tuple[str, ...] = ("common", "deps")
    model: bool = False
    """Carries the model bundle layer (MODEL_BUNDLE_PATH)."""
    shadow: bool = False
    """Scores the shadow bundle too, when the stack has one (`-c shadow=VERSION`)."""
    invocation: Invocation = "async"
    environment: tuple[str, ...] = ()
    """Environment variables (`Env` names) the stack fills in from its shared resources."""
    records: str | None = None
    """The record table its log lines feed (a subscription to that table's stream)."""
    reports: str | None = None
    """The report kind it writes (`reports/<kind>/`) from the rollups, with metrics and alerts."""
    schedule: Scheduled | None = None
    reserved_concurrency: int | None = None
    physical_name: str | None = None
    """`<stack>-<physical_name>`: for a function that must know its own name (it invokes itself)."""
    rollout: Rollout | None = None
    record_metrics: str | None = None
    """The metrics its record lines give (`avsev.monitoring.record_metrics.RECORD_METRICS`):
    metric filters on its log group."""


class Layers(Construct):
    """The avsev library, its runtime dependencies, numpy+scipy, and the model bundle."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        arch: lambda_.Architecture,
        arch_name: str,
        bundle: Path,
        shadow: Path | None = None,
        records_extension: bool = False,
    ) -> None:
        super().__init__(scope, id)
        built = {
            "deps": "pydantic and Powertools for the Lambda platform",
            "analysis": "numpy, scipy and the pinned AWS SDK for the functions that call AWS",
            "tabular": "pandas and fastparquet for batch scoring",
        }
        codes = {
            "common": (
                lambda_.Code.from_asset(str(COMMON_LAYER), exclude=LAYER_EXCLUDES),
                "avsev library: serving, monitoring, rollout",
            ),
            **{
                name: (lambda_.Code.from_asset(str(_built(name, arch_name))), text)
                for name, text in built.items()
            },
            # The bundle lands at /opt/<bundle name>/ (card.json, model.so, trees.bin).
            "model": (
                lambda_.Code.from_asset(
                    str(bundle.parent), exclude=["*", f"!{bundle.name}", f"!{bundle.name}/**"]
                ),
                f"model bundle {bundle.name}",
            ),
        }
        if records_extension:
            codes["records-extension"] = (
                lambda_.Code.from_asset(str(RECORDS_EXTENSION_LAYER), exclude=LAYER_EXCLUDES),
                "avsev records extension: record lines to Firehose in batches",
            )
        if shadow is not None:  # a second bundle, scored beside the served one (never returned)
            codes["shadow"] = (
                lambda_.Code.from_asset(
                    str(shadow.parent), exclude=["*", f"!{shadow.name}", f"!{shadow.name}/**"]
                ),
                f"shadow model bundle {shadow.name}",
            )
        self.paths = {
            name: f"/opt/{path.name}"
            for name, path in (("model", bundle), ("shadow", shadow))
            if path is not None
        }
        """Where a bundle layer lands in the function: MODEL_BUNDLE_PATH, SHADOW_BUNDLE_PATH."""
        self.by_name: dict[str, lambda_.LayerVersion] = {
            name: lambda_.LayerVersion(
                self,
                name.title().replace("-", ""),
                code=code,
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[arch],
                description=description,
            )
            for name, (code, description) in codes.items()
        }


def _built(name: str, arch: str) -> Path:
    path = ROOT / "layers" / name / "build" / arch
    if not (path / "python").is_dir():
        raise FileNotFoundError(f"{path}: layer not built; run `make layers ARCH={arch}`")
    return path


class ServingFunction(Construct):
    """A Lambda function with a least-privilege role of its own and a log group with a
    retention; `alias` points at the current version for the ones that roll out. The layers
    and bundle paths follow the spec: the model bundle when it scores, the shadow bundle when
    it scores that too and the stack has one."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        spec: FunctionSpec,
        layers: Layers,
        arch: lambda_.Architecture,
        environment: dict[str, str],
        tracing: lambda_.Tracing = lambda_.Tracing.ACTIVE,
    ) -> None:
        """`tracing`: Active (Lambda samples and records traces) or PassThrough (only a
        request an upstream service sampled is traced; `AppConfig.tracing_mode`). Powertools'
        Tracer is off with PassThrough (POWERTOOLS_TRACE_DISABLED): nothing loads the X-Ray
        SDK for requests that are not traced."""
        super().__init__(scope, id)
        stack = Stack.of(self)
        bundles = {
            Env.MODEL_BUNDLE_PATH: "model" if spec.model else None,
            Env.SHADOW_BUNDLE_PATH: "shadow" if spec.shadow and "shadow" in layers.paths else None,
        }
        bundle_layers = [layer for layer in bundles.values() if layer is not None]
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{stack.stack_name} {spec.name}: its own log group, nothing else unless granted",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=arch,
            handler="app.handler",
            function_name=f"{stack.stack_name}-{spec.physical_name}"
            if spec.physical_name
            else None,
            code=lambda_.Code.from_asset(
                str(ROOT / "functions" / spec.name), exclude=["__pycache__"]
            ),
            layers=[layers.by_name[n] for n in (*spec.layers, *bundle_layers)],
            memory_size=spec.memory_mb,
            reserved_concurrent_executions=spec.reserved_concurrency,
            timeout=Duration.seconds(spec.timeout_s),
            description=spec.description,
            role=self.role,
            log_group=self.log_group,
            logging_format=LOG_FORMAT,
            system_log_level_v2=SYSTEM_LOG_LEVEL,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            tracing=tracing,
            environment={
                **(
                    {"POWERTOOLS_TRACE_DISABLED": "true"}
                    if tracing == lambda_.Tracing.PASS_THROUGH
                    else {}
                ),
                # the `service` dimension of the handlers' metrics: one per stage
                Env.SERVICE_NAME: stack.stack_name,
                Env.METRICS_NAMESPACE: METRICS_NAMESPACE,
                **{name: layers.paths[layer] for name, layer in bundles.items() if layer},
                **environment,
            },
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Log streams of this function's own log group; X-Ray segments have no resource-level permissions.",
            f"Resource::{ref(self.log_group)}:*",
            "Resource::*",
        )
        for metric in RECORD_METRICS.get(spec.record_metrics or "", ()):
            # free; the metric is a custom metric (avsev.monitoring.record_metrics)
            logs.MetricFilter(
                self,
                f"Metric{metric.name}",
                log_group=self.log_group,
                filter_pattern=logs.FilterPattern.literal(metric.filter_pattern),
                metric_namespace=namespace(METRICS_NAMESPACE, stack.stack_name),
                metric_name=metric.name,
                metric_value=metric.value,
                unit=UNITS[metric.unit],
                dimensions=metric.dimensions or None,
            )
        if tracing == lambda_.Tracing.PASS_THROUGH:
            acknowledge(
                self.function,
                "Serverless-LambdaTracing",
                "Invoked by an HTTP API, which does not trace: Active tracing would sample by "
                "Lambda's own fixed rule (1 a second and 5%); PassThrough records what a caller "
                "sampled (-c tracing=active turns Active on).",
            )
        self.alias: lambda_.IFunction | None = None
        """Alias `live` once the stack hands this function's versions over (LiveAlias)."""
        self.stack = stack

    @property
    def target(self) -> lambda_.IFunction:
        """What callers invoke: the alias when there is one."""
        return self.alias or self.function
