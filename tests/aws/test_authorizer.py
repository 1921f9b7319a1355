"""The HTTP API's Lambda authorizer against moto's Secrets Manager: a simple response
(`{"isAuthorized": bool}`, payload format 2.0:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html),
true only for the secret's exact value; the secret is read once per container, and again
once its time is up (a rotated key takes effect without a redeploy)."""

from __future__ import annotations

import boto3
import pytest
from lambda_support import FakeContext, load_function
from moto import mock_aws


def request(key: str | None) -> dict:
    """An HTTP API REQUEST authorizer event, payload format 2.0 (headers lowercased)."""
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abc/$default/POST/predict",
        "identitySource": [key] if key else [],
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/predict"}},
    }


@pytest.fixture()
def authorizer(fake_aws, monkeypatch):
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="avsev-prod-api-key", SecretString="the-right-key-0123456789"
        )["ARN"]
        yield load_function("authorizer", {"API_KEY_SECRET_ARN": arn}, monkeypatch), arn


def test_only_the_secrets_value_is_authorized(authorizer):
    module, _ = authorizer
    answer = module.handler(request("the-right-key-0123456789"), FakeContext())
    assert answer == {"isAuthorized": True}
    for wrong in ("the-right-key-012345678", "THE-RIGHT-KEY-0123456789", "", None):
        assert module.handler(request(wrong), FakeContext()) == {"isAuthorized": False}, wrong


def test_a_rotated_key_takes_over_once_the_read_key_expires(authorizer, monkeypatch):
    module, arn = authorizer
    assert module.handler(request("the-right-key-0123456789"), FakeContext())["isAuthorized"]
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString="rotated-key-98765")
    # within its time the container keeps the key it read (no call per request) ...
    assert module.handler(request("the-right-key-0123456789"), FakeContext())["isAuthorized"]
    # ... then reads the secret again
    read_at, value = module._key
    module._key = (read_at - module.SECRET_TTL_S - 1, value)
    assert module.handler(request("rotated-key-98765"), FakeContext())["isAuthorized"]
    assert not module.handler(request("the-right-key-0123456789"), FakeContext())["isAuthorized"]
