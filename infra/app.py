"""The CDK app: `cdk synth` / `cdk deploy` (context in cdk.json, or -c key=value)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # `infra` as a package from the repo root

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.config import AppConfig
from infra.stack import AvsevStack


def build_app(
    context: dict[str, object] | None = None, *, outdir: str | None = None
) -> tuple[cdk.App, AvsevStack]:
    app = cdk.App(context=context or {}, outdir=outdir)
    config = AppConfig.from_context(app.node.try_get_context)
    stack = AvsevStack(
        app,
        "Avsev",
        config=config,
        description="avsev: aviation accident severity, served from Lambda",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app, stack


if __name__ == "__main__":
    app, _ = build_app()
    app.synth()
