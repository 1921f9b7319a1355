"""The REST resolver every HTTP function uses: validation on, errors mapped once, the model
version on every answer."""

from __future__ import annotations

import binascii
import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Route
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from pydantic import BaseModel, ValidationError

from avsev.serving.errors import ApiError, ErrorDetail, error_json, validation_error
from avsev.serving.limits import (
    MAX_BODY_BYTES,
    body_size,
    check_content_encoding,
    check_content_type,
    decode_json,
    may_have_long_number,
    unsupported_media_type,
)
from avsev.serving.observability import logger, metrics

MODEL_VERSION_HEADER = "X-Model-Version"
API_TITLE = "Aviation accident severity API"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CLIENT_INPUT_ERRORS = frozenset(
    {
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        HTTPStatus.UNPROCESSABLE_ENTITY,
    }
)
"""What a client sent that cannot be read or is not valid: counted as ValidationErrors."""


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


def check_body(event: BaseProxyEvent) -> None:
    """A body sent as JSON, within the limits of `serving.limits`, and an object (Powertools
    would take a list's first element): an `ApiError` (4xx) otherwise."""
    if event.http_method.upper() not in BODY_METHODS:
        return
    check_media(event)
    if not event.body:
        return
    try:
        body = event.json_body  # decode_json: the limits, once (cached for the validator)
    except json.JSONDecodeError:
        return  # the validator answers it, with the position
    except binascii.Error:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "bad_encoding",
            "the request body is marked base64 but is not valid base64",
            [ErrorDetail(field="body", problem="not valid base64", allowed="UTF-8 JSON")],
        ) from None
    if isinstance(body, list):
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
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


def check_media(event: BaseProxyEvent) -> None:
    """A body the function can read as sent: its Content-Type and Content-Encoding (415s)."""
    headers = event.headers
    check_content_type(headers.get("content-type"))
    check_content_encoding(headers.get("content-encoding"))


def sole_body_model(route: Route) -> tuple[str, type[BaseModel]] | None:
    """(parameter name, model) when a route's one input is a JSON body validated as one
    pydantic model (not embedded), else None."""
    needs = route.dependant
    if len(needs.body_params) != 1 or (
        needs.path_params or needs.query_params or needs.header_params or needs.cookie_params
    ):
        return None
    field = needs.body_params[0]
    model = field.type_
    if getattr(field.field_info, "embed", False) or not (
        isinstance(model, type) and issubclass(model, BaseModel)
    ):
        return None
    return field.name, model


def validated_from_text(route: Route, event: BaseProxyEvent) -> dict[str, Any] | None:
    """The route's arguments validated straight from the body's JSON text by pydantic (one
    pass in Rust, no Python objects parsed first), or None to take Powertools' path (parse,
    check the limits, validate), which answers every error.

    Only a body sent as plain text within the size limit and with no number literal that
    may be too long comes here, so the limits hold: a body the model accepts nests only as
    deep as the model (every body model forbids unknown fields), and pydantic's JSON parser
    reads the values `json.loads` reads (tests/aws/test_http_fast_path.py holds both)."""
    target = sole_body_model(route)
    body = event.body
    if (
        target is None
        or not isinstance(body, str)
        or event.get("isBase64Encoded")
        or body_size(body) > MAX_BODY_BYTES
        or may_have_long_number(body)
    ):
        return None
    name, model = target
    try:
        return {name: model.model_validate_json(body)}
    except ValidationError:
        return None  # Powertools' path answers it, with the errors it always gave


class CheckedRequestValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, after `check_body`; a body its route's model accepts
    is validated from its text at once (`validated_from_text`)."""

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        event = app.current_event
        if event.http_method.upper() in BODY_METHODS and event.body:
            check_media(event)
            validated = validated_from_text(app.context["_route"], event)
            if validated is not None:
                app.context["_route_args"] = validated
                return next_middleware(app)
        check_body(event)
        return super().handler(app, next_middleware)

    def _get_body(self, app: EventHandlerInstance) -> dict[str, Any]:
        return self._parse_json_data(app)  # JSON only: check_body answered any other media type


def make_resolver(model_version: str | None = None) -> APIGatewayRestResolver:
    """A validating resolver whose errors all take the one JSON shape."""
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=decode_json)
    # Powertools runs its request validation before any user middleware: check the body first.
    app._request_validation_middleware = CheckedRequestValidation()  # type: ignore[attr-defined]

    def answer(error: ApiError) -> Response:
        if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
        elif error.status in CLIENT_INPUT_ERRORS:
            metrics.add_metric(name="ValidationErrors", unit=MetricUnit.Count, value=1)
        return Response(
            status_code=error.status,
            content_type="application/json",
            body=error_json(error, request_id(app)),
            headers={MODEL_VERSION_HEADER: model_version} if model_version else None,
        )

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        return answer(validation_error(exc.errors()))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(exc: RequestUnsupportedContentType) -> Response:
        return answer(unsupported_media_type(app.current_event.headers.get("content-type", "")))

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return answer(exc)

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(exc: UnicodeDecodeError) -> Response:
        return answer(
            ApiError(
                HTTPStatus.BAD_REQUEST,
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
        method, path = app.current_event.http_method, app.current_event.path
        allow = allowed_methods(app, path)
        if not allow:
            return answer(ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no route {method} {path}"))
        response = answer(
            ApiError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"no route {method} {path}: {path} allows {', '.join(allow)}",
            )
        )
        response.headers["Allow"] = ", ".join(allow)
        return response

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return answer(
            ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error; the request id identifies it in our logs",
            )
        )

    return app


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods the app serves on `path` (none: an unknown path).

    A method a path does not have is answered 405 with `Allow` (RFC 9110 §15.5.6); HEAD
    included, which no route defines: it reaches a function only when invoked directly, since
    API Gateway answers a method the API does not define itself, before any integration
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html,
    MISSING_AUTHENTICATION_TOKEN)."""
    routes = [*app._static_routes, *app._dynamic_routes]
    return sorted({r.method.upper() for r in routes if r.rule.match(path)})


NOT_REST = "not an API Gateway REST proxy event"


def event_problem(event: Any) -> ApiError | None:
    """Why `event` is not an API Gateway REST (v1) proxy event, or None when it is one.

    The functions sit behind a REST API's Lambda proxy integrations
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format):
    an HTTP API (payload 2.0) or ALB event, a schedule or any other invocation is answered
    400 here, not read field by field into a `KeyError`."""
    if not isinstance(event, dict):
        kind = type(event).__name__
    elif event.get("version") == "2.0" or "routeKey" in event or "rawPath" in event:
        kind = "an HTTP API (payload format 2.0) event"
    elif "elb" in (event.get("requestContext") or {}):
        kind = "an Application Load Balancer event"
    elif ("detail-type" in event or "source" in event) and "httpMethod" not in event:
        kind = f"an EventBridge event ({event.get('detail-type', '?')})"
    elif not (
        isinstance(event.get("httpMethod"), str)
        and isinstance(event.get("path"), str)
        and isinstance(event.get("requestContext"), dict)
    ):
        kind = "an event without httpMethod, path and requestContext"
    else:
        return None
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        "unsupported_event",
        f"the function was invoked with {kind}, {NOT_REST}",
        [
            ErrorDetail(
                field="event",
                problem=f"{kind}, {NOT_REST}",
                allowed="an API Gateway REST API (v1) Lambda proxy event",
            )
        ],
    )


def resolve(app: APIGatewayRestResolver, event: Any, context: Any) -> dict[str, Any]:
    """`app.resolve` for a REST proxy event; any other event is logged (no traceback) and
    answered 400 in the one error shape, as a proxy response."""
    problem = event_problem(event)
    if problem is None:
        return app.resolve(event, context)
    keys = sorted(event)[:20] if isinstance(event, dict) else []
    logger.error(problem.message, extra={"event_keys": keys})
    metrics.add_metric(name="ValidationErrors", unit=MetricUnit.Count, value=1)
    rid = getattr(context, "aws_request_id", None)
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": "application/json"},
        "body": error_json(problem, str(rid) if rid else None),
        "isBase64Encoded": False,
    }


def with_model_version(response: dict[str, Any], model_version: str) -> dict[str, Any]:
    """Every answer (errors included) says which model version served it."""
    if "multiValueHeaders" in response:
        response["multiValueHeaders"][MODEL_VERSION_HEADER] = [model_version]
    else:
        response.setdefault("headers", {})[MODEL_VERSION_HEADER] = model_version
    return response
