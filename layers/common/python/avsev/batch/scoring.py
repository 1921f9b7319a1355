"""Scoring chunks into prediction tables, and a whole stream or local file into outputs.

Output rows: ev_id, predicted_severity, prob_* per class, model_version, scored_at (CSV, or
Parquet for a `.parquet` output); rejected rows go to `.rejected.csv` with row and reason.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Required, TypedDict

import numpy as np
import pandas as pd

from avsev.batch.names import OutputName
from avsev.batch.reading import CHUNK_ROWS, Chunk, read_chunks
from avsev.data import DataError
from avsev.parquet import read_parquet, write_parquet
from avsev.serving.bundle import Bundle
from avsev.serving.schema import SEVERITIES

OUTPUT_COLUMNS = [
    "ev_id",
    "predicted_severity",
    *(f"prob_{s.lower()}" for s in SEVERITIES),
    "model_version",
    "scored_at",
    "completeness",
    "warnings",
]
"""`completeness` and `warnings` as the API answers them; a row's warnings as
`field:code` items joined by `;` (empty when none)."""
REJECTED_COLUMNS = ["row", "ev_id", "reason"]


class SummaryDoc(TypedDict, total=False):
    """A summary as it is stored (`.summary.json`) and answered: `Summary`'s fields, and what a
    run adds (the input's ETag and when it was scored; the daily run's files)."""

    source: Required[str]
    model_version: Required[str]
    rows_read: int
    scored: int
    rejected: int
    seconds: float
    status: str
    """`ok`, `error` (the file could not be scored: `error` says why) or `already_done`."""
    error: str | None
    dropped_values: dict[str, dict[str, int]]
    outputs: dict[str, str]
    invocations: int
    source_etag: str | None
    scored_at: str
    files: list[str]
    file_errors: list[str]


@dataclass
class Summary:
    """What a run read, scored and rejected (the `.summary.json` beside its output)."""

    source: str
    model_version: str
    rows_read: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    dropped_values: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    invocations: int = 1

    def as_dict(self) -> SummaryDoc:
        return SummaryDoc(
            source=self.source,
            model_version=self.model_version,
            rows_read=self.rows_read,
            scored=self.scored,
            rejected=self.rejected,
            seconds=self.seconds,
            status=self.status,
            error=self.error,
            dropped_values=self.dropped_values,
            outputs=self.outputs,
            invocations=self.invocations,
        )

    @classmethod
    def counts_of(cls, doc: SummaryDoc) -> Summary:
        """The counts of a summary read back (a part's, to be added up)."""
        return cls(
            doc["source"],
            doc["model_version"],
            doc["rows_read"],
            doc["scored"],
            doc["rejected"],
            doc["seconds"],
            dropped_values=doc["dropped_values"],
        )

    def add(self, other: Summary) -> None:
        self.rows_read += other.rows_read
        self.scored += other.scored
        self.rejected += other.rejected
        for column, reasons in other.dropped_values.items():
            mine = self.dropped_values.setdefault(column, {})
            for reason, n in reasons.items():
                mine[reason] = mine.get(reason, 0) + n


def score_chunk(bundle: Bundle, chunk: Chunk, scored_at: str) -> pd.DataFrame:
    """The compiled batch loop over one chunk: columns encoded into float32 once, one call."""
    n = chunk.scored
    if n == 0:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    spec = bundle.spec
    columns = {s: chunk.column(s) for s in spec.sources}
    encoded = spec.encode_columns(columns)
    out = bundle.model.predict_buffer(spec.pack(encoded, n), n)
    proba = np.frombuffer(memoryview(out), dtype=np.float32).reshape(n, len(bundle.classes))
    completeness, warnings = bundle.inputs.assess(columns, encoded, n)
    frame = pd.DataFrame({"ev_id": chunk.ev_ids})
    frame["predicted_severity"] = np.asarray(bundle.classes)[proba.argmax(axis=1)]
    for i, cls in enumerate(bundle.classes):
        frame[f"prob_{cls.lower()}"] = np.round(proba[:, i].astype(float), 6)
    frame["model_version"] = bundle.version
    frame["scored_at"] = scored_at
    frame["completeness"] = completeness
    frame["warnings"] = [";".join(f"{w['field']}:{w['code']}" for w in ws) for ws in warnings]
    return frame[OUTPUT_COLUMNS]


def write_table(frame: pd.DataFrame, path: Path, *, append: bool) -> None:
    """A table to Parquet (by the suffix) or CSV, appended when asked. CSV goes through the
    `csv` module, row tuples from the columns: the bytes pandas' `to_csv` writes, in half
    the time."""
    if path.suffix == ".parquet":
        if append and path.exists():
            frame = pd.concat([read_parquet(path), frame], ignore_index=True)
        write_parquet(frame, path)
        return
    with path.open("a" if append else "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if not append:
            writer.writerow(frame.columns)
        writer.writerows(zip(*(frame[c].tolist() for c in frame.columns), strict=True))


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP, CSV Injection:
https://owasp.org/www-community/attacks/CSV_Injection)."""


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with `'` so it is
    shown as text; other values as they are. Idempotent: a prefixed cell starts with `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def append_rejected(rejected: list[dict[str, Any]], path: Path, *, append: bool) -> None:
    """Rejected rows to `.rejected.csv`. The ev_id and the reason come from the input (a
    reason quotes the refused value), so every text cell goes through `spreadsheet_safe`.
    Lines end in CRLF (RFC 4180, https://www.rfc-editor.org/rfc/rfc4180): the `csv` module
    then quotes a cell holding a lone carriage return, which would otherwise end the row."""
    with path.open("a" if append else "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        if not append:
            writer.writerow(REJECTED_COLUMNS)
        writer.writerows(
            [spreadsheet_safe("" if row.get(c) is None else row.get(c)) for c in REJECTED_COLUMNS]
            for row in rejected
        )


def score_stream(
    bundle: Bundle,
    stream: IO[bytes],
    name: str,
    out: Path,
    rejected_out: Path,
    *,
    scored_at: str,
    chunk_rows: int = CHUNK_ROWS,
    skip_rows: int = 0,
    keep_going: Callable[[int], bool] = lambda chunks: True,
    append: bool = False,
) -> tuple[Summary, bool]:
    """Score a stream into local files; returns the summary and whether the input is done
    (False when `keep_going(chunks done)` said stop: continue from `skip_rows + rows_read`)."""
    summary = Summary(source=name, model_version=bundle.version)
    t0 = time.perf_counter()
    done = True
    chunks = (
        c for c in read_chunks(stream, name, chunk_rows=chunk_rows, skip_rows=skip_rows) if c.read
    )
    chunk = next(chunks, None)
    i = 0
    while chunk is not None:
        write_table(score_chunk(bundle, chunk, scored_at), out, append=append or i > 0)
        append_rejected(chunk.rejected, rejected_out, append=append or i > 0)
        summary.add(
            Summary(
                name,
                bundle.version,
                chunk.read,
                chunk.scored,
                len(chunk.rejected),
                dropped_values=chunk.dropped,
            )
        )
        i += 1
        chunk = next(chunks, None)  # look ahead: a stop after the last chunk is no stop
        if chunk is not None and not keep_going(i):
            done = False
            break
    if done and summary.rows_read == 0 and not append and skip_rows == 0:
        raise DataError("no data rows")
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary, done


def score_file(
    bundle: Bundle, data: Path, out: Path, *, scored_at: str, chunk_rows: int = CHUNK_ROWS
) -> Summary:
    """Offline (`avsev score`): a local file → output, `.rejected.csv` and `.summary.json`."""
    names = OutputName.of_output(out.name)
    rejected_out, summary_out = names.beside(out, "rejected"), names.beside(out, "summary")
    with data.open("rb") as f:
        summary, _ = score_stream(
            bundle, f, data.name, out, rejected_out, scored_at=scored_at, chunk_rows=chunk_rows
        )
    summary.outputs = {
        "output": str(out),
        "rejected": str(rejected_out),
        "summary": str(summary_out),
    }
    summary_out.write_text(json.dumps(summary.as_dict(), indent=1))
    return summary
