"""Explain function: POST /predict/explain — the prediction with exact TreeSHAP factors."""

from __future__ import annotations

from typing import Annotated, Any

from avsev.serving.http import function_version, make_resolver, request_id
from avsev.serving.observability import logger, metrics, tracer, version_dimensions
from avsev.serving.schema import ExplainRequest, Explanation
from avsev.serving.service import PredictionService
from avsev.serving.settings import Settings
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

service = PredictionService.from_settings(Settings.from_env(), explain=True)  # once per container
app = make_resolver(service.version)


@app.post("/predict/explain", summary="Predict one accident and explain it with exact SHAP values")
def explain(body: Annotated[ExplainRequest, Body()]) -> Explanation:
    explanation, scored = service.explain(
        body, request_id(app), function_version(app), top_k=body.top_k
    )
    app.record(scored.records)  # counted as Explanations by a metric filter on the record
    return explanation


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    version_dimensions(service.version, context.function_version)
    return app.resolve(event, context)
