"""Reading a batch input: bytes → validated chunks of rows, column by column.

Input: an NTSB export CSV (either column style, read by `avsev.data` chunk by chunk) or JSON
lines of `AccidentReport`. Every row is validated as the API would; a rejected row keeps its
1-based row number and the reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from avsev.data import DataError, LoadedData, is_report_column, load_frame
from avsev.serving.errors import details_from_validation
from avsev.serving.schema import MAKE_MAX_LENGTH, REPORT_FIELDS, AccidentReport

CHUNK_ROWS = 20_000
SNIFF_BYTES = 1 << 16


def file_kind(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "csv"


def text_stream(stream: IO[bytes]) -> IO[str]:
    """UTF-8 when the start of the file reads as UTF-8, else Latin-1 (the NTSB export's)."""
    head = stream.read(SNIFF_BYTES)
    if not head.strip():
        raise DataError("empty file")
    if b"\x00" in head:
        raise DataError("not a text file (binary content)")
    try:
        head.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as e:
        # a multi-byte character cut at the sniff boundary is still UTF-8
        encoding = "utf-8" if e.start >= len(head) - 3 else "latin-1"
    rest = io.BufferedReader(_Chain(head, stream))  # type: ignore[arg-type]
    return io.TextIOWrapper(rest, encoding=encoding, errors="replace", newline="")


class _Chain(io.RawIOBase):
    """The sniffed head, then the rest of the stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head = head
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass
class Chunk:
    """One chunk of an input: its valid rows column-wise, and its rejects.

    `columns` maps a report field to one value per valid row (None or NaN where missing),
    the values `AccidentReport` validation gives; `numbers` are the rows' 1-based numbers in
    the input."""

    ev_ids: list[str]
    columns: dict[str, list[Any]]
    numbers: list[int]
    rejected: list[dict[str, Any]]
    read: int
    dropped: dict[str, dict[str, int]]

    @property
    def scored(self) -> int:
        return len(self.ev_ids)

    def column(self, field: str) -> list[Any]:
        """A field's values; all missing when the input has no such column."""
        return self.columns.get(field) or [None] * self.scored


def rejection_reason(error: ValidationError) -> str:
    return "; ".join(
        f"{d.field}: {d.problem}" + (f" (allowed: {d.allowed})" if d.allowed else "")
        for d in details_from_validation(error.errors())
    )


def _refused(number: int, ev_id: Any, error: ValidationError) -> dict[str, Any]:
    """A rejected row as the `.rejected.csv` lists it (its ev_id when it is a string)."""
    return {
        "row": number,
        "ev_id": ev_id if isinstance(ev_id, str) else None,
        "reason": rejection_reason(error),
    }


def _validate(
    rows: list[dict[str, Any]], first_row: int
) -> tuple[list[AccidentReport], list[int], list[dict[str, Any]]]:
    """Each row through `AccidentReport`, as the API validates a request."""
    good, numbers, rejected = [], [], []
    for i, row in enumerate(rows):
        try:
            good.append(AccidentReport.model_validate(row))
        except ValidationError as e:
            rejected.append(_refused(first_row + i, row.get("ev_id"), e))
            continue
        numbers.append(first_row + i)
    return good, numbers, rejected


def _reports_chunk(
    reports: list[AccidentReport], numbers: list[int], rejected: list[dict[str, Any]], read: int
) -> Chunk:
    columns = {f: [getattr(r, f) for r in reports] for f in REPORT_FIELDS}
    return Chunk([r.ev_id for r in reports], columns, numbers, rejected, read, {})


LOADER_CHECKED_VALIDATORS = frozenset(
    {"canonical_category", "_occurrence_code", "_not_in_future", "_integral", "_date_not_number"}
)
"""`AccidentReport`'s own validators that `avsev.data` applies to every value it loads (the
same category lookup, codes and ranges, whole numbers, dates up to today: stricter than the
schema's day of slack; a date is read only from its ISO or M/D/Y text, never from a number)."""
BEYOND_THE_LOADER = frozenset({"_recent_hours_within_total"})
"""The validators a loaded row can still fail: checked column-wise in `_may_be_refused`."""


def _may_be_refused(frame: pd.DataFrame) -> np.ndarray:
    """Rows a schema rule may refuse although the loader cleaned each of their values alone:
    rules across two fields (recent hours within total hours) and a value's length (make).
    Only these rows are validated one by one; tests/unit/test_batch_reading.py shows the
    result is what validating every row gives."""
    flagged = np.zeros(len(frame), dtype=bool)
    if "pilot_90_days" in frame and "pilot_tot_time" in frame:
        flagged |= (frame["pilot_90_days"] > frame["pilot_tot_time"]).to_numpy(dtype=bool)
    if "make" in frame:
        flagged |= np.fromiter(
            (v is not None and len(v) > MAKE_MAX_LENGTH for v in frame["make"]),
            dtype=bool,
            count=len(frame),
        )
    return flagged


def validated_chunk(loaded: LoadedData, first_row: int, read: int) -> Chunk:
    """The loaded rows as `AccidentReport` validation would leave them, without a model per
    row: the loader already cleaned every value by the schema's own tables, so only rows
    `_may_be_refused` flags are validated one by one (for their exact reason)."""
    frame = loaded.frame
    keep = np.ones(len(frame), dtype=bool)
    rejected = []
    for i in np.flatnonzero(_may_be_refused(frame)):
        row = loaded.report(int(i))
        try:
            AccidentReport.model_validate(row)
        except ValidationError as e:
            keep[i] = False
            rejected.append(_refused(first_row + int(i), row["ev_id"], e))
    kept = frame[keep] if not keep.all() else frame
    columns = {f: kept[f].tolist() for f in REPORT_FIELDS if f in kept}
    numbers = (np.flatnonzero(keep) + first_row).tolist()
    return Chunk(kept["ev_id"].tolist(), columns, numbers, rejected, read, loaded.dropped)


def read_chunks(
    stream: IO[bytes], name: str, *, chunk_rows: int = CHUNK_ROWS, skip_rows: int = 0
) -> Iterator[Chunk]:
    """Stream a file as validated chunks, never whole in memory. `skip_rows` data rows are
    passed over (a continuation resumes there)."""
    text = text_stream(stream)
    if file_kind(name) == "jsonl":
        yield from _jsonl_chunks(text, chunk_rows, skip_rows)
        return
    first = skip_rows + 1
    for frame in csv_frames(text, chunk_rows=chunk_rows, skip_rows=skip_rows):
        loaded = load_frame(frame, path=name, require_label=False, row_offset=first)
        yield validated_chunk(loaded, first, len(frame))
        first += len(frame)


def csv_frames(text: IO[str], *, chunk_rows: int, skip_rows: int = 0) -> Iterator[pd.DataFrame]:
    """The CSV's report columns (see `is_report_column`) as strings, `chunk_rows` at a time."""
    try:
        yield from pd.read_csv(
            text,
            dtype=str,
            keep_default_na=False,
            usecols=is_report_column,
            chunksize=chunk_rows,
            skiprows=range(1, skip_rows + 1) if skip_rows else None,
        )
    except pd.errors.EmptyDataError as e:
        raise DataError("empty file, no header") from e


MAX_LINE_DEPTH = 32
"""How deeply a JSON line may nest: a report is one flat object, so anything deeper is
refused before parsing (Python's parser recurses once per level and would fail on a deep
enough line, taking the whole file with it)."""


def _depth(line: str) -> int:
    """How deeply the brackets of `line` nest, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json_object(line: str) -> tuple[dict[str, Any] | None, str]:
    """One JSON-lines row as an object, or None and why it is refused."""
    brackets = line.count("[") + line.count("{")
    if brackets > MAX_LINE_DEPTH and _depth(line) > MAX_LINE_DEPTH:
        return None, f"not a JSON object: nested deeper than {MAX_LINE_DEPTH} levels"
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as e:
        return None, f"not a JSON object: {e}"
    if not isinstance(doc, dict):
        return None, f"not a JSON object: a JSON {type(doc).__name__}"
    return doc, ""


def _jsonl_chunks(text: IO[str], chunk_rows: int, skip_rows: int) -> Iterator[Chunk]:
    reports: list[AccidentReport] = []
    rejected: list[dict[str, Any]] = []
    numbers: list[int] = []
    read = 0
    for number, line in enumerate(text, start=1):
        if number <= skip_rows:
            continue
        read += 1
        if line.strip():
            doc, problem = _json_object(line)
            if doc is None:
                rejected.append({"row": number, "ev_id": None, "reason": problem})
            else:
                good, nums, bad = _validate([doc], number)
                reports += good
                numbers += nums
                rejected += bad
        if read == chunk_rows:
            yield _reports_chunk(reports, numbers, rejected, read)
            reports, rejected, numbers, read = [], [], [], 0
    if read:
        yield _reports_chunk(reports, numbers, rejected, read)
