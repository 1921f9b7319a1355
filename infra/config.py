"""The app's settings, read once from CDK context (`cdk.json` or `-c key=value`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avsev.monitoring.performance import check_decision_metric

from infra.constants import STAGES

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AppConfig:
    stage: str = "prod"  # staging | prod: two stacks side by side in one account
    arch: str = "arm64"
    bundle: Path = ROOT / "layers/model/build/arm64/avsev-severity-1.0.0"
    auth: str = "iam"  # or "cognito"
    # rest: a REST API (IAM or Cognito, API keys and usage plans); http: an HTTP API with a
    # Lambda authorizer on the X-Api-Key header (cheaper; see docs/api.md "HTTP API option")
    api: str = "rest"
    # X-Ray on the API functions: active | passthrough; default per API (see `tracing_mode`)
    tracing: str | None = None
    alarm_email: str | None = None
    drift_schedule: str = "rate(1 day)"
    ab_schedule: str = "rate(1 hour)"
    batch_schedule: str = "rate(1 day)"
    rollup_schedule: str = "rate(1 hour)"
    autopilot_schedule: str = "rate(5 minutes)"
    lifecycle_schedule: str = "rate(1 day)"  # the retraining loop's look at drift, age, schedule
    retrain_approval: str = (
        "auto"  # auto: a candidate whose gates all pass deploys; manual: a person approves
    )
    athena_scan_limit_gb: int = 100
    record_buffer_seconds: int = 300
    # logs: record lines to stdout, a subscription filter sends them to Firehose; extension:
    # the serving functions spool them and a Lambda extension puts them on Firehose in
    # batches, with the log subscription kept for what it cannot put (docs/cost.md)
    records: str = "logs"
    # Deploy the stack that sets API Gateway's CloudWatch role, an account-and-region setting
    # that replaces the role of every API in the region; with it, the stage logs to CloudWatch.
    api_gateway_account: bool = False
    api_logs: bool = False  # the account already has that role: the stage logs, no role stack
    waf: bool = False
    cors_origins: tuple[str, ...] = ()
    throttle_rate: float = 100.0
    throttle_burst: int = 200
    quota_per_day: int = 100_000
    p95_latency_ms: float = 250.0
    validation_error_rate: float = 0.5  # share of requests answered 4xx: notifies, no rollback
    # Reserve concurrency for batch and the scheduled jobs: about 6 in all, which Lambda grants
    # only where the account's concurrency leaves 100 unreserved after them (`avsev verify
    # --preflight` checks an account before a deploy).
    reserved_concurrency: bool = False
    batch_concurrency: int = 2
    job_concurrency: int = 1
    model: str | None = None  # a registry version or alias (production, candidate) to deploy
    registry: str | None = None  # s3://bucket/prefix of the model registry
    force: str | None = None  # deploy an unapproved registry version: the reason, audited
    ab_metric: str = "log_loss"  # the A/B decision metric: log_loss | accuracy | expected_cost
    ab_margin: float | None = None  # its non-inferiority margin (default: the metric's)
    cost_matrix: str | None = None  # expected_cost: JSON actual → predicted → cost
    shadow: str | None = None  # a model version scored beside the served one, never returned
    shadow_bundle: Path | None = None  # resolved from `shadow` (registry, else the local build)

    @classmethod
    def from_context(cls, get: Any) -> AppConfig:
        """`get(key)` is `node.try_get_context`."""
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = get(name)
            if raw is None:
                continue
            default = f.default
            if isinstance(default, bool):
                values[name] = (
                    raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
                )
            elif isinstance(default, Path):
                values[name] = (ROOT / raw).resolve() if not Path(raw).is_absolute() else Path(raw)
            elif isinstance(default, tuple):
                values[name] = (
                    tuple(raw)
                    if isinstance(raw, list)
                    else tuple(s for s in str(raw).split(",") if s)
                )
            elif isinstance(default, int | float) and not isinstance(default, bool):
                values[name] = type(default)(raw)
            else:
                values[name] = raw
        if "ab_margin" in values:
            try:
                values["ab_margin"] = float(values["ab_margin"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"context ab_margin={values['ab_margin']!r}: a positive number"
                ) from None
        config = cls(**values)
        config.check()
        return config

    @property
    def tracing_mode(self) -> str:
        """X-Ray on the functions API Gateway invokes (and on a REST API's stage).

        REST: active. API Gateway samples at the stage (sampling rules that can be changed,
        https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-xray.html) and
        the functions record what it samples. HTTP: passthrough. An HTTP API does not trace
        (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-vs-rest.html),
        so with Active tracing Lambda samples by itself, 1 request a second and 5% of the
        rest, a rate that cannot be configured for a function
        (https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html): ~$0.25 a million
        predictions at 100 a second, more than the HTTP API's saving over REST is worth
        losing. PassThrough records only what an upstream caller sampled
        (https://docs.aws.amazon.com/lambda/latest/api/API_TracingConfig.html). `-c
        tracing=active|passthrough` chooses either way."""
        return self.tracing or ("passthrough" if self.api == "http" else "active")

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"context stage={self.stage!r}: choose one of {', '.join(STAGES)}")
        try:
            check_decision_metric(self.ab_metric)
        except ValueError as e:
            raise ValueError(f"context ab_metric: {e}") from None
        if self.ab_margin is not None and not float(self.ab_margin) > 0:
            raise ValueError(f"context ab_margin={self.ab_margin!r}: a positive number")
        if self.athena_scan_limit_gb < 1:
            raise ValueError("context athena_scan_limit_gb: at least 1")
        if self.arch not in ("arm64", "x86_64"):
            raise ValueError(f"context arch={self.arch!r}: choose arm64 or x86_64")
        if self.auth not in ("iam", "cognito"):
            raise ValueError(f"context auth={self.auth!r}: choose iam or cognito")
        if self.api not in ("rest", "http"):
            raise ValueError(f"context api={self.api!r}: choose rest or http")
        if self.records not in ("logs", "extension"):
            raise ValueError(f"context records={self.records!r}: choose logs or extension")
        if self.tracing not in (None, "active", "passthrough"):
            raise ValueError(f"context tracing={self.tracing!r}: choose active or passthrough")
        if self.api == "http" and self.waf:
            raise ValueError(
                "context waf=true needs api=rest: AWS WAF protects REST APIs, not HTTP APIs"
            )
        if self.api == "http" and self.auth != "iam":
            raise ValueError(
                f"context auth={self.auth!r} needs api=rest: the HTTP API authorizes by its key"
            )
        if not (self.bundle / "card.json").is_file():
            raise ValueError(
                f"context bundle={self.bundle}: no model bundle there; build one with "
                f"`avsev build --arch {self.arch}` (or `make model`)"
            )
