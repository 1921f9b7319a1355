"""The resolver every HTTP function uses: one set of routes, answered for API Gateway REST
API events (Lambda proxy, v1) and HTTP API events (payload format 2.0), validation on, errors
mapped once, the model version on every answer, and the records a route keeps written once
the answer is made.

Built on Powertools' public API only: the routes live on a `Router` (an `Api`), included into
an `APIGatewayRestResolver` and an `APIGatewayHttpResolver`, each with request validation
(`enable_validation`); every error is answered by an exception handler in the one error shape;
the body is read by the resolvers' `json_body_deserializer` (the limits of `serving.limits`,
and the fast path: a body its route's model accepts is validated from its text at once).
What Powertools' validation would read before any middleware (the media type and encoding of
the body) is checked on the event before the resolver sees it.
"""

from __future__ import annotations

import binascii
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, BaseRouter, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
)
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from pydantic import BaseModel, ValidationError

from avsev.serving.errors import ApiError, ErrorDetail, error_json, validation_error
from avsev.serving.limits import (
    JSON_MEDIA_TYPE,
    MAX_BODY_BYTES,
    body_size,
    check_content_encoding,
    check_content_type,
    decode_json,
    may_have_long_number,
    unsupported_media_type,
)
from avsev.serving.observability import logger, metrics
from avsev.serving.records import PredictionRecords, Record, emit

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
REST, HTTP = "rest", "http"
"""The two event shapes: REST API Lambda proxy (v1) and HTTP API payload format 2.0."""

F = TypeVar("F", bound=Callable[..., Any])


def request_id(app: BaseRouter) -> str:
    """API Gateway's request id (the Lambda one when invoked directly)."""
    try:
        rid = app.current_event.request_context.request_id  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        rid = None
    if rid:
        return str(rid)
    ctx = getattr(app, "lambda_context", None)
    return str(getattr(ctx, "aws_request_id", "local"))


def function_version(app: BaseRouter) -> str:
    ctx = getattr(app, "lambda_context", None)
    return str(getattr(ctx, "function_version", "$LATEST"))


def check_media(event: BaseProxyEvent) -> None:
    """A body the function can read as sent: its Content-Type and Content-Encoding (415s)."""
    headers = event.headers
    check_content_type(headers.get("content-type"))
    check_content_encoding(headers.get("content-encoding"))


def not_a_json_object() -> ApiError:
    """A list where the route takes an object (Powertools would take its first element)."""
    return ApiError(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "validation_error",
        "the request is not valid: body: must be a JSON object",
        [
            ErrorDetail(
                field="body", problem="must be a JSON object, not a list", allowed="a JSON object"
            )
        ],
    )


def sole_body_model(func: Callable[..., Any]) -> tuple[str, type[BaseModel]] | None:
    """(parameter name, model) when a route handler's one input is a JSON body validated as
    one pydantic model (`Annotated[Model, Body()]`, not embedded), else None."""
    params = list(inspect.signature(func).parameters)
    if len(params) != 1:
        return None
    hint = typing.get_type_hints(func, include_extras=True).get(params[0])
    if typing.get_origin(hint) is not typing.Annotated:
        return None
    model, *extras = typing.get_args(hint)
    body = next((e for e in extras if isinstance(e, Body)), None)
    if body is None or body.embed or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return params[0], model


def validated_from_text(model: type[BaseModel], text: str) -> BaseModel | None:
    """The body validated straight from its JSON text by pydantic (one pass in Rust, no
    Python objects parsed first), or None to take the usual path (parse within the limits,
    then Powertools' validation), which answers every error.

    Only a body within the size limit and with no number literal that may be too long comes
    here, so the limits hold: a body the model accepts nests only as deep as the model (every
    body model forbids unknown fields), and pydantic's JSON parser reads the values
    `json.loads` reads (tests/aws/test_http_fast_path.py holds both)."""
    if body_size(text) > MAX_BODY_BYTES or may_have_long_number(text):
        return None
    try:
        return model.model_validate_json(text)
    except ValidationError:
        return None  # the usual path answers it, with the errors it always gave


def _rule_pattern(rule: str) -> re.Pattern[str]:
    """A route rule (`/a/<name>`) as a pattern for a request path, trailing slashes allowed
    (as the REST resolver matches)."""
    parts = re.split(r"(<\w+>)", rule.rstrip("/"))
    body = "".join("[^/]+" if p.startswith("<") else re.escape(p) for p in parts)
    return re.compile(f"^{body}/*$")


def event_shape(event: Any) -> str | ApiError:
    """`REST` or `HTTP` for the two proxy events the functions answer, else why not (a 400).

    REST API Lambda proxy input:
    https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format
    HTTP API payload format 2.0 (`version` "2.0", `rawPath`, `requestContext.http`):
    https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
    An ALB event, a schedule or any other invocation is answered 400 here, not read field by
    field into a `KeyError`."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    if not isinstance(event, dict):
        kind = type(event).__name__
    elif event.get("version") == "2.0" or "routeKey" in event or "rawPath" in event:
        if (
            isinstance(event.get("rawPath"), str)
            and isinstance(context, dict)
            and isinstance(context.get("http"), dict)
            and isinstance(context["http"].get("method"), str)
        ):
            return HTTP
        kind = "an HTTP API event without rawPath and requestContext.http"
    elif isinstance(context, dict) and "elb" in context:
        kind = "an Application Load Balancer event"
    elif ("detail-type" in event or "source" in event) and "httpMethod" not in event:
        kind = f"an EventBridge event ({event.get('detail-type', '?')})"
    elif (
        isinstance(event.get("httpMethod"), str)
        and isinstance(event.get("path"), str)
        and isinstance(context, dict)
    ):
        return REST
    else:
        kind = "an event without httpMethod, path and requestContext"
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        "unsupported_event",
        f"the function was invoked with {kind}, {NOT_PROXY}",
        [ErrorDetail(field="event", problem=f"{kind}, {NOT_PROXY}", allowed=PROXY_EVENTS)],
    )


NOT_PROXY = "not an API Gateway proxy event"
PROXY_EVENTS = (
    "an API Gateway REST API (v1) Lambda proxy event or an HTTP API payload format 2.0 event"
)


def _json_media_as_written(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a JSON Content-Type in lower case.

    A media type is case-insensitive (RFC 9110 §8.3.1) and `check_content_type` accepts it
    in any case; Powertools' validation compares it as written, so the event it reads
    carries it lower-cased."""
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if (
            key.lower() == "content-type"
            and isinstance(value, str)
            and value.strip()
            and not value.strip().startswith(JSON_MEDIA_TYPE)
        ):
            return {**event, "headers": {**headers, key: value.strip().lower()}}
    return event


def count(error: ApiError) -> None:
    """The error metrics of one answer."""
    if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
    elif error.status in CLIENT_INPUT_ERRORS:
        metrics.add_metric(name="ValidationErrors", unit=MetricUnit.Count, value=1)


class Api(Router):
    """One function's routes (`@app.post(...)`, `@app.get(...)` as on any Powertools router),
    answered for both event shapes by `resolve`, with the model version on every answer and
    the records the route kept (`record`) written, one JSON line each."""

    def __init__(self, model_version: str | None = None) -> None:
        super().__init__()
        self.model_version = model_version
        self._records: list[Record | PredictionRecords] = []
        self.handlers: dict[tuple[str, str], Callable[..., Any]] = {}
        """(METHOD, rule) → the route's handler."""
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._body_models: dict[tuple[str, str], tuple[str, type[BaseModel]] | None] = {}
        self._resolvers: dict[str, ApiGatewayResolver] = {}

    def route(  # type: ignore[override]
        self, rule: str, method: str | list[str] | tuple[str], *args: Any, **kwargs: Any
    ) -> Callable[[F], F]:
        register = super().route(rule, method, *args, **kwargs)
        methods = [method] if isinstance(method, str) else list(method)

        def record(func: F) -> F:
            for m in methods:
                self.handlers[(m.upper(), rule)] = func
                self._body_models.pop((m.upper(), rule), None)
            self._patterns[rule] = _rule_pattern(rule)
            return register(func)

        return record

    def handler_for(self, method: str, path: str) -> Callable[..., Any] | None:
        key = self._route_key(method, path)
        return self.handlers[key] if key is not None else None

    def _route_key(self, method: str, path: str) -> tuple[str, str] | None:
        method = method.upper()
        for m, rule in self.handlers:
            if m == method and self._patterns[rule].match(path):
                return m, rule
        return None

    def body_model(self, method: str, path: str) -> tuple[str, type[BaseModel]] | None:
        """`sole_body_model` of the route serving `method path`, worked out once a route."""
        key = self._route_key(method, path)
        if key is None:
            return None
        if key not in self._body_models:
            self._body_models[key] = sole_body_model(self.handlers[key])
        return self._body_models[key]

    def allowed_methods(self, path: str) -> list[str]:
        """The methods the app serves on `path` (none: an unknown path).

        A method a path does not have is answered 405 with `Allow` (RFC 9110 §15.5.6); HEAD
        included, which no route defines: it reaches a function only when invoked directly,
        since API Gateway answers a method the API does not define itself, before any
        integration
        (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html,
        MISSING_AUTHENTICATION_TOKEN)."""
        return sorted({m for (m, rule) in self.handlers if self._patterns[rule].match(path)})

    def resolver(self, shape: str) -> ApiGatewayResolver:
        """The Powertools resolver for one event shape, with this app's routes (built at first
        use, when every route is registered)."""
        if not self._resolvers:
            for name, cls in ((REST, APIGatewayRestResolver), (HTTP, APIGatewayHttpResolver)):
                self._resolvers[name] = self._make_resolver(cls)
        return self._resolvers[shape]

    def get_openapi_json_schema(self, **kwargs: Any) -> str:
        """The OpenAPI document of these routes (the same for both event shapes)."""
        return self.resolver(REST).get_openapi_json_schema(**kwargs)

    def read_json(self, event: BaseProxyEvent, text: str) -> Any:
        """The resolvers' JSON body reader: the route's model validated from the text when it
        accepts it (the fast path, `validated_from_text`); otherwise the JSON within the limits
        (`decode_json`: a 413 or 400 beyond them), an object, for Powertools to validate.
        A validated model is taken by Powertools' validation as it is, not validated again."""
        target = self.body_model(event.http_method, event.path)
        if target is not None and not event.is_base64_encoded:
            validated = validated_from_text(target[1], text)
            if validated is not None:
                return validated
        body = decode_json(text)
        if isinstance(body, list):
            raise not_a_json_object()
        return body

    def record(self, records: Iterable[Record | PredictionRecords]) -> None:
        """Keep records of this request, for `resolve` to write once the answer is made."""
        self._records.extend(records)

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        """The proxy response to `event`: a REST API or HTTP API event goes to its resolver
        once its body's media type and encoding are ones the function reads (a 415 otherwise);
        any other event is logged (no traceback) and answered 400. Every answer carries the
        model version; the records the route kept are written (`records.emit`)."""
        self._records.clear()
        try:
            response = self._resolve(event, context)
        finally:
            kept, self._records = self._records, []
            emit(kept)
        if self.model_version:
            if "multiValueHeaders" in response:
                response["multiValueHeaders"][MODEL_VERSION_HEADER] = [self.model_version]
            else:
                response.setdefault("headers", {})[MODEL_VERSION_HEADER] = self.model_version
        return response

    def _resolve(self, event: Any, context: Any) -> dict[str, Any]:
        shape = event_shape(event)
        if isinstance(shape, ApiError):
            keys = sorted(event)[:20] if isinstance(event, dict) else []
            logger.error(shape.message, extra={"event_keys": keys})
            rid = getattr(context, "aws_request_id", None)
            response = self._refuse(shape, str(rid) if rid else None)
        else:
            proxy = (APIGatewayProxyEvent if shape == REST else APIGatewayProxyEventV2)(event)
            try:
                if proxy.http_method.upper() in BODY_METHODS:
                    check_media(proxy)
            except ApiError as error:
                response = self._refuse(error, proxy.request_context.request_id)
            else:
                response = self.resolver(shape).resolve(_json_media_as_written(event), context)
        return response

    @staticmethod
    def _refuse(error: ApiError, rid: str | None) -> dict[str, Any]:
        """A proxy response for an event refused before any resolver reads it."""
        count(error)
        return {
            "statusCode": error.status,
            "headers": {"Content-Type": "application/json"},
            "body": error_json(error, rid),
            "isBase64Encoded": False,
        }

    def _make_resolver(self, cls: type[ApiGatewayResolver]) -> ApiGatewayResolver:
        """A validating resolver of these routes whose errors all take the one JSON shape."""
        app = cls(
            enable_validation=True,
            json_body_deserializer=lambda text: self.read_json(app.current_event, text),
        )

        def answer(error: ApiError) -> Response:
            count(error)
            return Response(
                status_code=error.status,
                content_type="application/json",
                body=error_json(error, request_id(app)),
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

        @app.exception_handler(binascii.Error)
        def _not_base64(exc: binascii.Error) -> Response:
            return answer(
                ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "bad_encoding",
                    "the request body is marked base64 but is not valid base64",
                    [ErrorDetail(field="body", problem="not valid base64", allowed="UTF-8 JSON")],
                )
            )

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
            allow = self.allowed_methods(path)
            if not allow:
                return answer(
                    ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no route {method} {path}")
                )
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

        app.include_router(self)
        return app


def make_resolver(model_version: str | None = None) -> Api:
    """The routes of one function; `model_version`, when given, on every answer."""
    return Api(model_version)
