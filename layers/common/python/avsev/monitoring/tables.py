"""The record tables: predictions and outcomes as they rest in S3 and are queried.

One schema, derived from the record format (`avsev.serving.records`) and the report fields
(`avsev.serving.schema.AccidentReport`), used by:
- the stack: Glue tables (partition projection on `dt`) whose schema Firehose's record
  format conversion uses to turn the JSON lines into Parquet;
- the local stack: its Parquet writer, so local objects look like Firehose's;
- the queries (Athena in AWS, DuckDB locally).

Pure Python: the stack, the Lambda jobs and the offline tools all import it.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from dataclasses import dataclass

from avsev.serving.schema import SEVERITIES, AccidentReport

PARTITION_KEY = "dt"
"""Day partitions, `predictions/dt=YYYY-MM-DD/` (Firehose's arrival day, UTC)."""
PARTITION_FORMAT = "yyyy-MM-dd"
PARTITION_START = "2024-01-01"
"""First day of the projected partition range (the range ends at NOW)."""
PREDICTIONS = "predictions"
OUTCOMES = "outcomes"
SCHEMA_VERSION_SUPPORTED = 1
"""Records with a newer `schema_version` are counted and skipped by the queries. Columns
added later to a version (`completeness`, `warnings`, the outcomes' `seq`) are NULL in
objects written before them: the queries read them as such (Athena by name; DuckDB via
`query.DuckDBEngine`)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """Hive type, as Glue and Firehose's conversion take it."""


def _feature_type(annotation: object) -> str:
    args = typing.get_args(annotation)
    inner = [a for a in args if a is not type(None)] if args else [annotation]
    base = inner[0]
    while typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    if isinstance(base, types.UnionType | type) and base is bool:
        return "boolean"
    if base in (int, float):
        return "double"
    return "string"  # dates stay ISO strings, categories strings


def feature_columns() -> tuple[Column, ...]:
    """The report fields a prediction record carries under `features` (all but ev_id)."""
    return tuple(
        Column(name, _feature_type(field.annotation))
        for name, field in AccidentReport.model_fields.items()
        if name != "ev_id"
    )


def struct(columns: tuple[Column, ...]) -> str:
    return "struct<" + ",".join(f"{c.name}:{c.type}" for c in columns) + ">"


PROBABILITY_COLUMNS = tuple(Column(s.lower(), "double") for s in SEVERITIES)
"""Class probabilities; JSON keys are matched case-insensitively by the OpenX SerDe."""

WARNING_COLUMNS = (
    Column("code", "string"),
    Column("field", "string"),
    Column("detail", "string"),
)
"""One input warning (`avsev.serving.schema.InputWarning`)."""

PREDICTION_COLUMNS: tuple[Column, ...] = (
    Column("record_type", "string"),
    Column("schema_version", "int"),
    Column("request_id", "string"),
    Column("ev_id", "string"),
    Column("timestamp", "timestamp"),
    Column("model_name", "string"),
    Column("model_version", "string"),
    Column("function_version", "string"),
    Column("shadow", "boolean"),
    Column("features", struct(feature_columns())),
    Column("probabilities", struct(PROBABILITY_COLUMNS)),
    Column("predicted", "string"),
    Column("latency_ms", "double"),
    Column("completeness", "double"),
    Column("warnings", f"array<{struct(WARNING_COLUMNS)}>"),
)

OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("record_type", "string"),
    Column("schema_version", "int"),
    Column("request_id", "string"),
    Column("ev_id", "string"),
    Column("timestamp", "timestamp"),
    Column("actual_severity", "string"),
    Column("observed_at", "timestamp"),
    Column("seq", "int"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    PREDICTIONS: PREDICTION_COLUMNS,
    OUTCOMES: OUTCOME_COLUMNS,
}

_DUCKDB_SCALARS = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}
_STRUCT = re.compile(r"^struct<(.*)>$")
_ARRAY = re.compile(r"^array<(.*)>$")


def duckdb_type(hive: str) -> str:
    """The DuckDB spelling of a Hive type (scalars, flat structs of scalars, arrays of them)."""
    a = _ARRAY.match(hive)
    if a:
        return duckdb_type(a.group(1)) + "[]"
    m = _STRUCT.match(hive)
    if not m:
        return _DUCKDB_SCALARS[hive]
    fields = [f.split(":", 1) for f in m.group(1).split(",")]
    return "STRUCT(" + ", ".join(f'"{n}" {_DUCKDB_SCALARS[t]}' for n, t in fields) + ")"


def duckdb_columns(table: str) -> dict[str, str]:
    """Column name → DuckDB type, for read_json / empty views / the Parquet writer."""
    return {c.name: duckdb_type(c.type) for c in TABLES[table]}


def partition(day: dt.date) -> str:
    return f"{PARTITION_KEY}={day.isoformat()}"
