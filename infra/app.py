"""The CDK app: `cdk synth` / `cdk deploy` (context in cdk.json, or -c key=value)."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python infra/app.py`, Python puts infra/ first on the path, where our `constructs`
# folder would shadow the `constructs` library: import from the repository root instead.
_here, _root = Path(__file__).resolve().parent, str(Path(__file__).resolve().parents[1])
sys.path[:] = [_root] + [p for p in sys.path if Path(p or ".").resolve() != _here]

import aws_cdk as cdk  # noqa: E402 - after the path fix above
from cdk_nag import AwsSolutionsChecks, ServerlessChecks  # noqa: E402

from infra.config import AppConfig  # noqa: E402
from infra.stack import AvsevStack  # noqa: E402


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
