"""One OpenAPI document for the whole API, from the functions' own resolvers.

Each function generates its part (Powertools, from the typed routes); this merges them and
puts the one error shape on every 4xx/5xx answer (Powertools would declare its own 422).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from avsev.serving.errors import ErrorResponse

ERROR_STATUSES = {
    "400": "Malformed request: bad JSON, missing body or encoding, nested too deeply, a number too long",
    "403": "Missing or invalid API key, or not authorized (answered by API Gateway)",
    "404": "No such route",
    "413": "Request body too large",
    "415": "Request body not sent as application/json",
    "422": "Validation error: each bad field named with what is allowed",
    "500": "Internal error (never for bad input)",
}
BODY_STATUSES = ("400", "413", "415")
"""Answers only a route that takes a body can give."""
REF = "#/components/schemas/{model}"


def error_schemas() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return {"ErrorResponse": schema, **defs}


def merge(parts: Iterable[str | dict[str, Any]], *, title: str, version: str) -> dict[str, Any]:
    docs = [json.loads(p) if isinstance(p, str) else copy.deepcopy(p) for p in parts]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for doc in docs:
        for path, ops in doc.get("paths", {}).items():
            paths.setdefault(path, {}).update(ops)
        schemas.update(doc.get("components", {}).get("schemas", {}))
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas.update(error_schemas())
    error_ref = {"$ref": REF.format(model="ErrorResponse")}
    for ops in paths.values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                if status in BODY_STATUSES and "requestBody" not in op:
                    continue
                if status == "422" and "requestBody" not in op:
                    responses.pop("422", None)
                    continue
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": error_ref}},
                }
    return {
        "openapi": docs[0].get("openapi", "3.1.0") if docs else "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
