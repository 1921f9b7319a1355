"""Outcomes function: POST /outcomes — the true severity, learned after the prediction."""

from __future__ import annotations

from typing import Annotated, Any

from avsev.serving.http import make_resolver, request_id
from avsev.serving.observability import logger, metrics, tracer
from avsev.serving.records import outcome_records
from avsev.serving.schema import OutcomesAccepted, OutcomesRequest
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_resolver()


@app.post("/outcomes", summary="Record the true severity of one or many events")
def outcomes(body: Annotated[OutcomesRequest, Body()]) -> OutcomesAccepted:
    rid = request_id(app)
    app.record(outcome_records(body.outcomes, rid))  # Outcomes: a metric filter on them
    return OutcomesAccepted(accepted=len(body.outcomes), request_id=rid)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
