"""Hourly rollup of new records (placeholder: the real job lands from branch main at merge)."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    return {"status": "not implemented in this branch"}
