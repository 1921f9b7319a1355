"""Query engines over the record tables: Athena in AWS, DuckDB locally, one SQL text.

Every query is written once in Athena's dialect (Trino). `DuckDBEngine` transpiles it with
sqlglot; `AthenaEngine` sends it as it is. Both answer a list of plain dicts, so a job sees
aggregates only and never a raw record.

Locally, records come from S3 (the moto server, or AWS itself) through boto3 into a cache
folder: DuckDB's `httpfs` extension is downloaded at run time, which an offline machine
cannot do. A corrupt object is set aside with its reason instead of failing the query.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from avsev.monitoring.tables import OUTCOMES, PARTITION_KEY, PREDICTIONS, TABLES, duckdb_columns

DEFAULT_MEMORY_LIMIT = "1GB"


@dataclass
class Skipped:
    """Objects a query could not read, with why."""

    objects: list[dict[str, str]] = field(default_factory=list)

    def add(self, key: str, reason: str) -> None:
        self.objects.append({"object": key, "reason": reason})


class Engine(Protocol):
    skipped: Skipped

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run one query written in Trino's dialect; rows as dicts."""
        ...


@functools.lru_cache(maxsize=256)
def to_duckdb(sql: str) -> str:
    """Trino (Athena) SQL in DuckDB's dialect (a job asks the same few queries every time:
    each text is transpiled once a process)."""
    import sqlglot

    return sqlglot.transpile(sql, read="trino", write="duckdb")[0]


class DuckDBEngine:
    """DuckDB over local Parquet files laid out as in S3 (`<table>/dt=YYYY-MM-DD/<object>`)."""

    def __init__(
        self, files: Mapping[str, Sequence[Path]], *, memory_limit: str = DEFAULT_MEMORY_LIMIT
    ) -> None:
        import duckdb

        self.connection = duckdb.connect(
            config={"memory_limit": memory_limit, "threads": os.cpu_count() or 1}
        )
        self.skipped = Skipped()
        for table in TABLES:
            self._view(table, [Path(f) for f in files.get(table, [])])

    def _view(self, table: str, files: list[Path]) -> None:
        """The table as a view over its objects; a column that none of them has (objects
        written before it was added) reads as NULL, as Athena reads it."""
        columns = duckdb_columns(table)
        if files:
            paths = ", ".join(f"'{_quote(str(f))}'" for f in files)
            read = f"read_parquet([{paths}], hive_partitioning = true, union_by_name = true)"
            have = {
                row[0]
                for row in self.connection.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()
            }
            select = ", ".join(
                f'"{c}"' if c in have else f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items()
            )
            source = (
                f"SELECT {select}, CAST({PARTITION_KEY} AS VARCHAR) AS {PARTITION_KEY} FROM {read}"
            )
        else:
            typed = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items())
            source = f"SELECT {typed}, CAST(NULL AS VARCHAR) AS {PARTITION_KEY} WHERE false"
        self.connection.execute(f"CREATE OR REPLACE VIEW {table} AS {source}")

    def query(self, sql: str) -> list[dict[str, Any]]:
        cursor = self.connection.execute(to_duckdb(sql))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @classmethod
    def over_folder(cls, root: Path, **kwargs: Any) -> DuckDBEngine:
        """All Parquet objects under `root/<table>/dt=*/` (the bench, `avsev drift --data`)."""
        files = {t: sorted((root / t).glob(f"{PARTITION_KEY}=*/*")) for t in TABLES}
        return cls({t: [f for f in fs if f.is_file()] for t, fs in files.items()}, **kwargs)


def _quote(text: str) -> str:
    return text.replace("'", "''")


class S3Mirror:
    """Record objects of some days copied from S3 to a local folder for DuckDB (only new
    objects are fetched; corrupt ones are set aside with their reason)."""

    def __init__(self, s3: Any, bucket: str, folder: Path | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.folder = folder or Path(tempfile.mkdtemp(prefix="avsev-records-"))
        self.skipped = Skipped()

    def sync(self, days: Iterable[dt.date]) -> dict[str, list[Path]]:
        import duckdb

        out: dict[str, list[Path]] = {t: [] for t in TABLES}
        check = duckdb.connect()
        for day in sorted(set(days)):
            for table in (PREDICTIONS, OUTCOMES):
                prefix = f"{table}/{PARTITION_KEY}={day.isoformat()}/"
                pages = self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix
                )
                for page in pages:
                    for obj in page.get("Contents", []):
                        path = self._fetch(obj)
                        reason = _unreadable(check, path)
                        if reason:
                            self.skipped.add(obj["Key"], reason)
                        else:
                            out[table].append(path)
        return out

    def _fetch(self, obj: dict[str, Any]) -> Path:
        path = self.folder / obj["Key"]
        if not (path.exists() and path.stat().st_size == obj["Size"]):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, obj["Key"], str(path))
        return path


def _unreadable(connection: Any, path: Path) -> str | None:
    """Why a record object cannot be read as Parquet (None when it can)."""
    try:
        connection.execute(f"SELECT COUNT(*) FROM read_parquet('{_quote(str(path))}')").fetchone()
    except Exception as e:  # duckdb raises several error types for a bad file
        return f"not a readable Parquet object: {str(e).splitlines()[0][:200]}"
    return None


def local_engine(
    s3: Any, bucket: str, days: Iterable[dt.date], *, folder: Path | None = None, **kwargs: Any
) -> DuckDBEngine:
    """DuckDB over the records of `days` in a bucket (the local stack, or a laptop on AWS)."""
    mirror = S3Mirror(s3, bucket, folder)
    files = mirror.sync(days)
    engine = DuckDBEngine(files, **kwargs)
    engine.skipped.objects += mirror.skipped.objects
    return engine


class QueryFailed(RuntimeError):
    pass


_BAD_FILE = re.compile(r"s3://[^\s'\",]+")
_ATHENA_TYPES = {
    "bigint": int,
    "integer": int,
    "int": int,
    "smallint": int,
    "tinyint": int,
    "double": float,
    "float": float,
    "real": float,
    "decimal": float,
    "boolean": lambda v: v == "true",
}


class AthenaEngine:
    """Athena on the stack's workgroup: results land in the workgroup's encrypted location,
    each query is cut off at the workgroup's bytes-scanned limit. An object Athena cannot read
    is named in the error; the query is run again without it and the object is reported."""

    def __init__(
        self,
        athena: Any,
        workgroup: str,
        database: str,
        *,
        poll_seconds: float = 0.5,
        timeout_seconds: float = 600,
        max_bad_objects: int = 5,
    ) -> None:
        self.athena = athena
        self.workgroup = workgroup
        self.database = database
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.max_bad_objects = max_bad_objects
        self.skipped = Skipped()
        self.bytes_scanned = 0
        self._excluded: list[str] = []

    def query(self, sql: str) -> list[dict[str, Any]]:
        for _ in range(self.max_bad_objects + 1):
            try:
                return self._run(self._exclude(sql))
            except QueryFailed as e:
                bad = _bad_object(str(e))
                if not bad or bad in self._excluded:
                    raise
                self._excluded.append(bad)
                self.skipped.add(bad, f"Athena could not read it: {str(e)[:200]}")
        raise QueryFailed(f"more than {self.max_bad_objects} unreadable objects")

    def _exclude(self, sql: str) -> str:
        """Leave out objects found unreadable, by their path (Athena's `"$path"` column)."""
        if not self._excluded:
            return sql
        paths = ", ".join(f"'{_quote(p)}'" for p in self._excluded)
        for table in TABLES:
            sql = re.sub(
                rf"\bFROM {table}\b",
                f'FROM (SELECT * FROM {table} WHERE "$path" NOT IN ({paths}))',
                sql,
            )
        return sql

    def _run(self, sql: str) -> list[dict[str, Any]]:
        started = self.athena.start_query_execution(
            QueryString=sql,
            WorkGroup=self.workgroup,
            QueryExecutionContext={"Database": self.database},
        )
        qid = started["QueryExecutionId"]
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
            state = execution["Status"]["State"]
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELLED"):
                reason = execution["Status"].get("StateChangeReason", state)
                raise QueryFailed(f"Athena query {qid} {state.lower()}: {reason}")
            if time.monotonic() > deadline:
                self.athena.stop_query_execution(QueryExecutionId=qid)
                raise QueryFailed(f"Athena query {qid} took over {self.timeout_seconds:.0f} s")
            time.sleep(self.poll_seconds)
        self.bytes_scanned += int(execution.get("Statistics", {}).get("DataScannedInBytes", 0) or 0)
        return self._results(qid)

    def _results(self, qid: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        names: list[str] = []
        casts: list[Any] = []
        first = True
        for page in self.athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
            if not names:
                info = page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
                names = [c["Name"] for c in info]
                casts = [_ATHENA_TYPES.get(c.get("Type", "varchar"), str) for c in info]
            data = page["ResultSet"]["Rows"]
            if first:  # the first row of the first page repeats the column names
                data = data[1:]
                first = False
            for row in data:
                values = [cell.get("VarCharValue") for cell in row["Data"]]
                rows.append(
                    {
                        n: (None if v is None else cast(v))
                        for n, v, cast in zip(names, values, casts, strict=True)
                    }
                )
        return rows


def _bad_object(message: str) -> str | None:
    """The S3 object an Athena error blames (HIVE_BAD_DATA, HIVE_CANNOT_OPEN_SPLIT...)."""
    if not any(
        code in message for code in ("HIVE_BAD_DATA", "HIVE_CANNOT_OPEN_SPLIT", "HIVE_CURSOR_ERROR")
    ):
        return None
    m = _BAD_FILE.search(message)
    return m.group(0).rstrip(".:;") if m else None


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    return value


def write_records_parquet(lines: Iterable[str], table: str, path: Path) -> int:
    """JSON record lines of one type → one Parquet object with the table's schema, as
    Firehose's record format conversion writes it (OpenX JSON SerDe: keys matched
    case-insensitively, fields outside the schema dropped; Parquet, Snappy). Lines that are
    not JSON objects are left out. What the conversion would reject (and send to the error
    prefix) is for the caller to check first: the local stack's stand-in and the redrive
    write rows `avsev.monitoring.firehose` converted. Returns the number of rows written."""
    import json

    import duckdb

    docs = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            docs.append(json.dumps(_lower_keys(doc)))
    columns = duckdb_columns(table)
    spec = "{" + ", ".join(f"'{c}': '{_quote(t)}'" for c, t in columns.items()) + "}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        tmp.write("\n".join(docs) + "\n")
    try:
        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_json('{_quote(tmp.name)}', columns = {spec}, "
            f"format = 'newline_delimited')) TO '{_quote(str(path))}' "
            "(FORMAT parquet, COMPRESSION snappy)"
        )
    finally:
        os.unlink(tmp.name)
    return len(docs)
