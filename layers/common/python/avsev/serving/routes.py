"""The API's routes and the function serving each: the CDK API and the local emulator
both build from this table."""

from __future__ import annotations

ROUTES: tuple[tuple[str, str, str], ...] = (
    # (path, method, function)
    ("/predict", "POST", "predict"),
    ("/predict/batch", "POST", "predict"),
    ("/predict/explain", "POST", "explain"),
    ("/outcomes", "POST", "outcomes"),
    ("/model", "GET", "predict"),
    ("/health", "GET", "predict"),
)

ALIASED = ("predict", "explain")
"""Functions reached through alias `live` (their versions roll out by weight)."""
