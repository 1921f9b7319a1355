"""The REST resolver every HTTP function uses: validation on, errors mapped once, the model
version on every answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from avsev.serving.errors import ApiError, ErrorDetail, error_json, validation_error
from avsev.serving.observability import logger, metrics

MODEL_VERSION_HEADER = "X-Model-Version"
API_TITLE = "Aviation accident severity API"


def request_id(app: APIGatewayRestResolver) -> str:
    """API Gateway's request id (the Lambda one when invoked directly)."""
    try:
        rid = app.current_event.request_context.request_id
    except (AttributeError, KeyError, TypeError):
        rid = None
    if rid:
        return str(rid)
    ctx = getattr(app, "lambda_context", None)
    return str(getattr(ctx, "aws_request_id", "local"))


def function_version(app: APIGatewayRestResolver) -> str:
    ctx = getattr(app, "lambda_context", None)
    return str(getattr(ctx, "function_version", "$LATEST"))


def make_resolver(model_version: str | None = None) -> APIGatewayRestResolver:
    """A validating resolver whose errors all take the one JSON shape."""
    app = APIGatewayRestResolver(enable_validation=True)

    def answer(error: ApiError) -> Response:
        if error.status >= 500:
            metrics.add_metric(name="InternalErrors", unit="Count", value=1)
        elif error.status in (400, 413, 422):
            metrics.add_metric(name="ValidationErrors", unit="Count", value=1)
        return Response(
            status_code=error.status,
            content_type="application/json",
            body=error_json(error, request_id(app)),
            headers={MODEL_VERSION_HEADER: model_version} if model_version else None,
        )

    def object_bodies_only(app_: APIGatewayRestResolver, next_middleware: Any) -> Any:
        # Powertools would take the first element of a JSON list as the object: refuse lists.
        body = app_.current_event.body
        if body and not app_.current_event.is_base64_encoded and body.lstrip()[:1] == "[":
            raise ApiError(
                422,
                "validation_error",
                "the request is not valid: body: must be a JSON object",
                [
                    ErrorDetail(
                        field="body",
                        problem="must be a JSON object, not a list",
                        allowed="a JSON object",
                    )
                ],
            )
        return next_middleware(app_)

    app.use(middlewares=[object_bodies_only])

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        return answer(validation_error(exc.errors()))

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return answer(exc)

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(exc: UnicodeDecodeError) -> Response:
        return answer(
            ApiError(
                400,
                "bad_encoding",
                "the request body is not UTF-8 text",
                [
                    ErrorDetail(
                        field="body",
                        problem="base64-decoded body is not UTF-8",
                        allowed="UTF-8 JSON",
                    )
                ],
            )
        )

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response:
        return answer(
            ApiError(
                404,
                "not_found",
                f"no route {app.current_event.http_method} {app.current_event.path}",
            )
        )

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return answer(
            ApiError(
                500, "internal_error", "internal error; the request id identifies it in our logs"
            )
        )

    return app


def with_model_version(response: dict[str, Any], model_version: str) -> dict[str, Any]:
    """Every answer (errors included) says which model version served it."""
    if "multiValueHeaders" in response:
        response["multiValueHeaders"][MODEL_VERSION_HEADER] = [model_version]
    else:
        response.setdefault("headers", {})[MODEL_VERSION_HEADER] = model_version
    return response
