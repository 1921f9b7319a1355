"""Test helpers around `avsev_tools.local.lambda_runtime`."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from avsev_tools.local.lambda_runtime import (
    LocalContext,
    load_handler_module,
    proxy_event,
    response_headers,
)

rest_event = proxy_event


def FakeContext() -> LocalContext:
    return LocalContext(function_version="7")


def load_function(name: str, env: dict[str, str], monkeypatch) -> ModuleType:
    """Load a function with `env`, undone after the test by monkeypatch."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_handler_module(name, env)


def call(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Invoke a handler; returns status, parsed JSON body and single-valued headers."""
    out = module.handler(event, FakeContext())
    return out["statusCode"], json.loads(out["body"]), response_headers(out)


def scheduled_event(time: str) -> dict[str, Any]:
    """An EventBridge scheduled event, as the schedules send it (`time`: ISO, UTC, with Z)."""
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }
