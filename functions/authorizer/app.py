"""The HTTP API's Lambda authorizer: a request passes when its `X-Api-Key` header equals the
stack's key, a Secrets Manager secret (`API_KEY_SECRET_ARN`).

A REQUEST authorizer with payload format 2.0 and simple responses answers
`{"isAuthorized": true|false}`; API Gateway calls it only when the identity source (the
`X-Api-Key` header) is present, answers 401 itself otherwise, answers 403 when it says no, and
caches each answer by the identity source's value for the authorizer's TTL
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html).
The secret is read once per container and again after `SECRET_TTL_S`, so a rotated key is
taken within minutes without a call to Secrets Manager per request."""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

import boto3

SECRET_TTL_S = 300.0
"""Seconds a container keeps the key it read (the API caches answers as long)."""

_key: tuple[float, str] = (0.0, "")


def api_key() -> str:
    """The current key: the secret's value, re-read after `SECRET_TTL_S`."""
    global _key
    read_at, value = _key
    if not value or time.monotonic() - read_at > SECRET_TTL_S:
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=os.environ["API_KEY_SECRET_ARN"]
        )
        value = str(secret["SecretString"])
        _key = (time.monotonic(), value)
    return value


def authorized(given: str | None, key: str) -> bool:
    """Constant-time comparison; an empty key or an empty header never passes."""
    return bool(given) and bool(key) and hmac.compare_digest(given.encode(), key.encode())  # type: ignore[union-attr]


def handler(event: dict[str, Any], context: Any) -> dict[str, bool]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return {"isAuthorized": authorized(headers.get("x-api-key"), api_key())}
