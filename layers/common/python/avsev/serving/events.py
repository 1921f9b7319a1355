"""API Gateway proxy events (REST API v1, HTTP API payload format 2.0) and responses, as
plain dicts."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode


def proxy_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: str | bytes | None = None,
    base64_body: bool = False,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    request_id: str | None = None,
    stage: str = "prod",
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event. Bytes (or base64_body) are sent base64-encoded."""
    if raw is None and body is not None:
        raw = json.dumps(body)
    is_b64 = isinstance(raw, bytes) or base64_body
    if is_b64:
        data = raw if isinstance(raw, bytes) else (raw or "").encode()
        raw = base64.b64encode(data).decode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id or str(uuid.uuid4()),
            "stage": stage,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "resourcePath": path,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": raw,
        "isBase64Encoded": is_b64,
    }


def http_api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: str | bytes | None = None,
    base64_body: bool = False,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    request_id: str | None = None,
    route_key: str | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, on the `$default` stage
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html):
    header names in lower case, a repeated header's values joined by commas, the query
    string raw and parsed, `requestContext.http` for the method and path. Bytes (or
    base64_body) are sent base64-encoded."""
    if raw is None and body is not None:
        raw = json.dumps(body)
    is_b64 = isinstance(raw, bytes) or base64_body
    if is_b64:
        data = raw if isinstance(raw, bytes) else (raw or "").encode()
        raw = base64.b64encode(data).decode()
    hdrs: dict[str, str] = {}
    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
        name = key.lower()
        hdrs[name] = f"{hdrs[name]},{value}" if name in hdrs else value
    rid = request_id or str(uuid.uuid4())
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": hdrs.get("user-agent", ""),
        },
        "requestId": rid,
        "routeKey": route_key or f"{method} {path}",
        "stage": "$default",
        "time": "06/Dec/2026:00:00:00 +0000",
        "timeEpoch": 0,
    }
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": urlencode(dict(query or {})),
        "headers": hdrs,
        "requestContext": context,
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if raw is not None:
        event["body"] = raw
    return event


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """Single-valued headers of a proxy response (either header style)."""
    headers = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v}
    headers.update(response.get("headers") or {})
    return headers
