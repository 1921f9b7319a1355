"""Predict function: POST /predict, POST /predict/batch, GET /model, GET /health."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from avsev.serving.http import function_version, make_resolver, request_id
from avsev.serving.observability import logger, metrics, tracer, version_dimensions
from avsev.serving.schema import BatchPrediction, BatchRequest, Prediction, PredictRequest
from avsev.serving.service import PredictionService
from avsev.serving.settings import Settings
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

service = PredictionService.from_settings(Settings.from_env())  # once per container
app = make_resolver(service.version)


@app.post("/predict", summary="Predict the severity of one accident")
def predict(report: Annotated[PredictRequest, Body()]) -> Prediction:
    scored = service.predict([report], [request_id(app)], function_version(app))
    app.record(scored.records)  # its metrics: metric filters on the record (avsev.monitoring.record_metrics)
    return scored.predictions[0]


@app.post(
    "/predict/batch",
    summary="Predict up to 1,000 accidents (all valid or none scored)",
    responses={
        HTTPStatus.OK: {
            "description": "Successful Response",
            "content": {"application/json": {"model": BatchPrediction}},
        }
    },
)
def predict_batch(batch: Annotated[BatchRequest, Body()]) -> Response[str]:
    # Answered as JSON built once (BatchPrediction's exact body), not re-validated per row.
    rid = request_id(app)
    ids = [f"{rid}#{i}" for i in range(len(batch.reports))]
    scored = service.predict(batch.reports, ids, function_version(app))
    app.record(scored.records)  # one record a row: the metrics count rows
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=scored.body
    )


@app.get("/model", summary="The serving model: name, version, features, classes, metrics")
def model() -> dict[str, Any]:
    return service.bundle.summary()


@app.get("/health", summary="Liveness, and the model version serving")
def health() -> dict[str, str]:
    return {"status": "ok", "model_version": service.version}


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    version_dimensions(service.version, context.function_version)
    return app.resolve(event, context)
