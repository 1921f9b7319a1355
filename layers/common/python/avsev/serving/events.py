"""API Gateway REST (v1) proxy events and responses, as plain dicts."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any


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


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """Single-valued headers of a proxy response (either header style)."""
    headers = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v}
    headers.update(response.get("headers") or {})
    return headers
