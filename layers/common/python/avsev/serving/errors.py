"""The one error shape of the API, and the mapping of every failure onto it.

    {"error": {"status": 422, "code": "validation_error", "message": "...",
               "details": [{"field": "reports[3].pilot_90_days", "row": 3,
                            "problem": "...", "allowed": "..."}],
               "request_id": "..."}}

4xx for the caller's fault (with each bad field named, what is wrong and what is allowed),
500 only for our own, never with a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from avsev.serving.schema import (
    FIELD_ALLOWED,
    MAX_BATCH,
    OBSERVED_AT_ALLOWED,
    SEVERITIES,
    AccidentReport,
    allowed_text,
)

CONTENT_TYPE = "application/json"


class ErrorDetail(BaseModel):
    field: str
    problem: str
    allowed: str | None = None
    row: int | None = None


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """What every 4xx/5xx answer carries."""

    error: ErrorBody


class ApiError(Exception):
    """An error with its HTTP status, raised anywhere and answered in the one shape."""

    def __init__(
        self, status: int, code: str, message: str, details: Sequence[ErrorDetail] = ()
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.details = list(details)


FIELD_LIST = ", ".join(AccidentReport.model_fields)
CONTAINER_ALLOWED = {
    "reports": f"a list of 1 to {MAX_BATCH} accident reports",
    "outcomes": f"1 to {MAX_BATCH} outcomes",
    "top_k": "an integer from 1 to 30",
    "actual_severity": f"one of {', '.join(SEVERITIES)}",
    "observed_at": OBSERVED_AT_ALLOWED,
}


def _field_path(loc: Iterable[Any]) -> tuple[str, int | None]:
    """('body', 'reports', 3, 'make') → ('reports[3].make', 3)."""
    parts: list[str] = []
    row: int | None = None
    for item in loc:
        if item == "body" and not parts:
            continue
        if isinstance(item, int):
            if row is None:
                row = item
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts), row


def _problem(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "json_invalid":
        error = err.get("ctx", {}).get("error", "")
        return f"the body is not valid JSON ({error})" if error else "the body is not valid JSON"
    if kind in ("float_type", "int_type", "bool_type", "string_type") and isinstance(
        err.get("input"), str
    ):
        return f"{msg} (got the string {err['input']!r}; send a JSON {kind.split('_')[0]})"
    if kind == "finite_number":
        return "must be a finite number (NaN and Infinity are not allowed)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    return msg


def _allowed(field: str, err: Mapping[str, Any]) -> str | None:
    name = field.rsplit(".", 1)[-1].split("[", 1)[0]
    if err.get("type") == "extra_forbidden":
        return f"the fields {FIELD_LIST}" if name not in CONTAINER_ALLOWED else None
    if name in FIELD_ALLOWED:
        return allowed_text(name)
    if name in CONTAINER_ALLOWED:
        return CONTAINER_ALLOWED[name]
    if err.get("type") == "json_invalid":
        return "a JSON object"
    if err.get("type") == "missing" and not field:
        return "a JSON object in the request body"
    return None


def details_from_validation(errors: Iterable[Mapping[str, Any]]) -> list[ErrorDetail]:
    """Pydantic / Powertools validation errors → one detail per bad field."""
    out: list[ErrorDetail] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        field, row = _field_path(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            field, row = "body", None
        problem = _problem(err)
        if (field, problem) in seen:
            continue
        seen.add((field, problem))
        out.append(
            ErrorDetail(
                field=field or "body", problem=problem, allowed=_allowed(field, err), row=row
            )
        )
    return out


def validation_error(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    details = details_from_validation(errors)
    rows = sorted({d.row for d in details if d.row is not None})
    if any(d.problem.startswith("the body is not valid JSON") for d in details):
        return ApiError(
            HTTPStatus.BAD_REQUEST, "malformed_json", "the request body is not valid JSON", details
        )
    if any(d.field == "body" and d.problem == "required" for d in details):
        return ApiError(
            HTTPStatus.BAD_REQUEST, "missing_body", "a JSON request body is required", details
        )
    message = "the request is not valid: " + "; ".join(
        f"{d.field}: {d.problem}" for d in details[:5]
    )
    if rows:
        message += f" (rejected whole: bad row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:10]))})"
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", message, details)


def error_payload(error: ApiError, request_id: str | None) -> dict[str, Any]:
    return ErrorResponse(
        error=ErrorBody(
            status=error.status,
            code=error.code,
            message=error.message,
            details=error.details,
            request_id=request_id,
        )
    ).model_dump(exclude_none=True)


def error_json(error: ApiError, request_id: str | None) -> str:
    return json.dumps(error_payload(error, request_id), default=str)
