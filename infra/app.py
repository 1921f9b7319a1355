"""The CDK app: `cdk synth` / `cdk deploy` (context in cdk.json, or -c key=value).

`-c stage=staging|prod` (default prod) names the stack `avsev-<stage>`: both live side by
side in one account and region. API Gateway's CloudWatch role is an account-and-region
setting, so it has a small stack of its own that both stages share."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

# Run as `python infra/app.py`, Python puts infra/ first on the path, where our `constructs`
# folder would shadow the `constructs` library: import from the repository root instead.
_here, _root = Path(__file__).resolve().parent, str(Path(__file__).resolve().parents[1])
sys.path[:] = [_root] + [p for p in sys.path if Path(p or ".").resolve() != _here]

import aws_cdk as cdk  # noqa: E402 - after the path fix above
from cdk_nag import AwsSolutionsChecks, ServerlessChecks  # noqa: E402

from infra.config import ROOT, AppConfig  # noqa: E402
from infra.constants import API_GATEWAY_ACCOUNT_STACK, stack_name  # noqa: E402
from infra.constructs.api import ApiGatewayAccountStack  # noqa: E402
from infra.stack import AvsevStack  # noqa: E402


def feature_flags() -> dict[str, object]:
    """The feature flags of cdk.json, so an app built in tests behaves as `cdk synth`'s."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    return {k: v for k, v in context.items() if k.startswith("@aws-cdk")}


def from_registry(config: AppConfig) -> AppConfig:
    """`-c model=<version|alias> -c registry=s3://...`: the approved bundle from the model
    registry (an unapproved one only with `-c force=<reason>`, audited), fetched and checked
    against its sha256s. `-c shadow=<version>`: the shadow bundle (from the registry, or built
    beside the served bundle)."""
    if not (config.model or config.shadow):
        return config
    import boto3
    from avsev.rollout.registry import Location, Registry

    registry = (
        Registry(boto3.client("s3"), Location.parse(config.registry)) if config.registry else None
    )
    fetched = ROOT / "layers/model/registry" / config.arch
    if config.model:
        if registry is None:
            raise ValueError(
                "context model=... needs registry=s3://bucket/prefix (the model registry)"
            )
        version = registry.for_deploy(config.model, force=config.force)
        config = dataclasses.replace(config, bundle=registry.fetch(version, fetched))
    if config.shadow:
        # A shadow is evaluated before any approval: it must be published, not approved.
        if registry is not None:
            shadow = registry.fetch(registry.resolve(config.shadow), fetched)
        else:
            name = config.bundle.name.rsplit("-", 1)[0]
            shadow = config.bundle.parent / f"{name}-{config.shadow}"
        if not (shadow / "card.json").is_file():
            raise ValueError(f"context shadow={config.shadow}: no bundle at {shadow}")
        config = dataclasses.replace(config, shadow_bundle=shadow)
    return config


def build_app(
    context: dict[str, object] | None = None, *, outdir: str | None = None
) -> tuple[cdk.App, AvsevStack]:
    app = cdk.App(context={**feature_flags(), **(context or {})}, outdir=outdir)
    config = from_registry(AppConfig.from_context(app.node.try_get_context))
    account = (
        ApiGatewayAccountStack(
            app,
            API_GATEWAY_ACCOUNT_STACK,
            description="avsev: API Gateway's CloudWatch Logs role (one per account and region)",
        )
        if config.api_gateway_account
        else None
    )
    stack = AvsevStack(
        app,
        stack_name(config.stage),
        config=config,
        description=f"avsev ({config.stage}): aviation accident severity, served from Lambda",
    )
    if account is not None:
        stack.add_stack_dependency(
            account, "API Gateway logging needs the account's CloudWatch role"
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app, stack


if __name__ == "__main__":
    app, _ = build_app()
    app.synth()
