"""Layers, and a function with its own role, log group and (optionally) alias `live`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import ROOT
from infra.constants import LIVE_ALIAS, METRICS_NAMESPACE
from infra.nag import acknowledge, ref

RUNTIME = lambda_.Runtime.PYTHON_3_14
"""The newest Python runtime aws-cdk-lib knows (the model needs glibc ≥ 2.27: 3.12 or newer)."""

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
COMMON_LAYER = ROOT / "layers/common"
"""The avsev library's layer folder (its python/ lands on Lambda's sys.path)."""

OFFLINE_PARTS = [
    "avsev/pipeline",
    "avsev/local",
    "avsev/cli.py",
    "**/__pycache__",
    "*.egg-info",
]
"""Training, compiling and the local stack never ship to Lambda (the NTSB reader does: batch scoring)."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    memory_mb: int
    timeout_s: int
    description: str
    layers: tuple[str, ...] = ("common", "deps")
    model: bool = False
    shadow: bool = False
    """Scores the shadow bundle too, when the stack has one (`-c shadow=VERSION`)."""


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
    ) -> None:
        super().__init__(scope, id)
        built = {
            "deps": "pydantic and Powertools for the Lambda platform",
            "analysis": "numpy and scipy for the analysis functions",
            "tabular": "pandas and fastparquet for batch scoring",
        }
        codes = {
            "common": (
                lambda_.Code.from_asset(
                    str(COMMON_LAYER), exclude=[f"python/{p}" for p in OFFLINE_PARTS]
                ),
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
        if shadow is not None:  # a second bundle, scored beside the served one (never returned)
            codes["shadow"] = (
                lambda_.Code.from_asset(
                    str(shadow.parent), exclude=["*", f"!{shadow.name}", f"!{shadow.name}/**"]
                ),
                f"shadow model bundle {shadow.name}",
            )
        self.by_name: dict[str, lambda_.LayerVersion] = {
            name: lambda_.LayerVersion(
                self,
                name.title(),
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
    retention; `alias` points at the current version for the ones that roll out."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        spec: FunctionSpec,
        layers: Layers,
        arch: lambda_.Architecture,
        environment: dict[str, str],
        with_alias: bool = False,
        function_name: str | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
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
            function_name=function_name,
            code=lambda_.Code.from_asset(
                str(ROOT / "functions" / spec.name), exclude=["__pycache__"]
            ),
            layers=[layers.by_name[n] for n in spec.layers],
            memory_size=spec.memory_mb,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=Duration.seconds(spec.timeout_s),
            description=spec.description,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                # the `service` dimension of the handlers' metrics: one per stage
                "POWERTOOLS_SERVICE_NAME": stack.stack_name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
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
        self.alias: lambda_.Alias | None = None
        if with_alias:
            self.alias = lambda_.Alias(
                self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version
            )
        self.stack = stack

    @property
    def target(self) -> lambda_.IFunction:
        """What callers invoke: the alias when there is one."""
        return self.alias or self.function
