"""Logger, Metrics and Tracer, created once and imported everywhere (Powertools).

The Tracer is Powertools' own when tracing is on (in Lambda, unless
POWERTOOLS_TRACE_DISABLED=true). Otherwise it is a no-op stand-in: Powertools' Tracer
imports the X-Ray SDK, which imports botocore (~190 ms of cold start here), even when it is
disabled — so locally, and in functions deployed with tracing off, nothing pays for it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from avsev import constants
from avsev.constants import Env

SERVICE = os.environ.get(Env.SERVICE_NAME, constants.SERVICE)
NAMESPACE = os.environ.get(Env.METRICS_NAMESPACE, constants.METRICS_NAMESPACE)


def tracing_enabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """On in Lambda unless POWERTOOLS_TRACE_DISABLED says otherwise; off elsewhere."""
    disabled = environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true", "yes")
    return bool(environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not disabled


class NoTracer:
    """The part of Powertools' Tracer the functions use, doing nothing."""

    def capture_lambda_handler(self, fn: Callable[..., Any] | None = None, **_: Any) -> Any:
        return fn if fn is not None else (lambda f: f)

    def capture_method(self, fn: Callable[..., Any] | None = None, **_: Any) -> Any:
        return fn if fn is not None else (lambda f: f)

    def put_annotation(self, key: str, value: Any) -> None:
        pass


def _tracer() -> Any:
    if tracing_enabled():
        from aws_lambda_powertools import Tracer

        return Tracer(service=SERVICE)
    return NoTracer()


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = _tracer()

# A request that adds no metric (GET /health) is normal here, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def version_dimensions(model_version: str, function_version: str) -> None:
    """This invocation's metric dimensions. An invocation that added no metric is not
    flushed (its dimensions would stay and be added twice): cleared first."""
    metrics.clear_metrics()
    metrics.add_dimension(name="ModelVersion", value=model_version)
    # The rollback alarms watch the function version being deployed, not the whole alias.
    metrics.add_dimension(name="FunctionVersion", value=function_version)
