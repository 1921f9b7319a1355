"""Read NTSB exports into canonical accident rows and labels.

Three column styles are read: the underscore export (`Event_Id`, `M/D/YY` dates, Latin-1),
the dotted export (`Event.Id`, ISO dates) and this project's own (`ev_id`, the
`AccidentReport` field names, `severity`). Values that cannot be used become missing and
are counted by column and reason in `LoadedData.dropped`.
"""

from __future__ import annotations

import datetime as dt
import lzma
import os
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avsev.constants import EV_ID_PATTERN
from avsev.serving.schema import (
    CATEGORIES,
    NUMERIC_FIELDS,
    SEVERITIES,
    canonical_category,
    valid_occurrence_code,
)

LABEL = "severity"
SHIPPED_DATA = Path(__file__).resolve().parents[4] / "data" / "ntsb_us_airplane_accidents.csv.xz"
"""The real NTSB file this repository ships (provenance and licence: data/README.md)."""


def default_data_path() -> Path:
    """The real data: `AVSEV_REAL_DATA` when set, else the file shipped in the repository."""
    return Path(os.environ.get("AVSEV_REAL_DATA") or SHIPPED_DATA)


INJURY_COLUMNS = ("total_fatal_injuries", "total_serious_injuries", "total_minor_injuries")
"""The counts that define the label (with Injury_Severity): never features."""

LEAKY_COLUMNS = frozenset(
    {
        *INJURY_COLUMNS,
        "total_uninjured",
        "injury_severity",
        "aircraft_damage",
        "accident_number",
        "event_id",
        "investigation_type",
        "report_status",
        "publication_date",
        LABEL,
    }
)
"""Columns that define or betray the label (or are identifiers): never model inputs."""

# Export column (normalised: lower case, `.`/space → `_`) → report field.
RENAMES = {
    "latitude": "dec_latitude",
    "longitude": "dec_longitude",
    "purpose_of_flight": "purpose_of_flight",
    "broad_phase_of_flight": "broad_phase_of_flight",
}

CATEGORY_FIELDS = (*CATEGORIES, "make")

REPORT_COLUMNS = frozenset(
    {"ev_id", "accident_number", "event_id", "event_date", *NUMERIC_FIELDS, *CATEGORY_FIELDS}
    | {"amateur_built"}
)
"""The columns (normalised) a report is read from: its id, date and fields."""


def is_report_column(name: str) -> bool:
    """Whether an export column feeds a report: scoring reads these and skips the rest
    (label columns, places, registrations, free text)."""
    norm = _norm_column(name)
    return RENAMES.get(norm, norm) in REPORT_COLUMNS


class DataError(ValueError):
    """A data file that cannot be read as an NTSB export."""


@dataclass
class LoadedData:
    """Canonical rows of one file, with what was dropped and why."""

    frame: pd.DataFrame
    """Columns: ev_id, the report fields (missing = None/NaN), severity (label or None)."""
    path: str
    style: str
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_read: int = 0

    def reports(self) -> list[dict[str, Any]]:
        """One dict per row, in `AccidentReport` form (missing fields left out)."""
        fields = [c for c in self.frame.columns if c != LABEL]
        return [
            _report(fields, values)
            for values in zip(*(self.frame[c].tolist() for c in fields), strict=True)
        ]

    def report(self, i: int) -> dict[str, Any]:
        """Row `i` (by position) as `reports()` gives it."""
        fields = [c for c in self.frame.columns if c != LABEL]
        return _report(fields, self.frame[fields].iloc[i].tolist())

    @property
    def labels(self) -> list[int]:
        """Class index per row (see SEVERITIES); rows without a label raise."""
        idx = {s: i for i, s in enumerate(SEVERITIES)}
        return [idx[s] for s in self.frame[LABEL]]

    def summary(self) -> dict[str, Any]:
        dates = self.frame["event_date"].dropna()
        out: dict[str, Any] = {
            "path": self.path,
            "style": self.style,
            "rows_read": self.rows_read,
            "rows": len(self.frame),
            "dropped_values": self.dropped,
            "event_date_range": [str(min(dates)), str(max(dates))] if len(dates) else None,
        }
        if LABEL in self.frame and self.frame[LABEL].notna().any():
            out["class_counts"] = {s: int((self.frame[LABEL] == s).sum()) for s in SEVERITIES}
        return out


def _report(fields: list[str], values: Sequence[Any]) -> dict[str, Any]:
    return {
        name: _python_value(name, v)
        for name, v in zip(fields, values, strict=True)
        if not _missing_value(v)
    }


def _python_value(name: str, v: Any) -> Any:
    if name in NUMERIC_FIELDS:
        return int(v) if NUMERIC_FIELDS[name][2] is int else float(v)
    if name == "amateur_built":
        return bool(v)
    return v


def _norm_column(name: str) -> str:
    return re.sub(r"[.\s]+", "_", name.strip()).lower()


BLANK_WORDS = frozenset({"", "unknown", "unk", "n/a", "na"})
"""Cells of the export that mean "not recorded"."""


def _missing_value(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _blank(s: pd.Series) -> pd.Series:
    return pd.Series(
        [_missing_value(v) or str(v).strip().lower() in BLANK_WORDS for v in s.tolist()],
        index=s.index,
        dtype=bool,
    )


class _Drops:
    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, column: str, reason: str, n: int) -> None:
        if n:
            self.counts[column][reason] += int(n)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {c: dict(r) for c, r in sorted(self.counts.items())}


Problems = dict[str, "pd.Series[bool]"]
"""Why values of a column were dropped: reason → which values (in the order reported)."""


def _by_unique(
    column: str,
    raw: pd.Series,
    clean: Callable[[pd.Series], tuple[pd.Series, Problems]],
    drops: _Drops,
) -> pd.Series:
    """`clean` applied to the column's distinct values only, spread back over the rows, its
    problems counted once per row. An export column repeats few values (categories, dates,
    codes, coordinates of the same airfields), so this is the same answer for a fraction of
    the work (tests/unit/test_batch_reading.py checks it against cleaning every row)."""
    codes, uniques = pd.factorize(raw, use_na_sentinel=False)
    values, problems = clean(pd.Series(np.asarray(uniques, dtype=object), dtype=object))
    counts = np.bincount(codes, minlength=len(uniques))
    for reason, mask in problems.items():
        drops.add(column, reason, int(counts[mask.to_numpy(dtype=bool)].sum()))
    return pd.Series(values.to_numpy()[codes], index=raw.index, dtype=values.dtype)


def parse_event_dates(raw: pd.Series, drops: _Drops, *, today: dt.date | None = None) -> pd.Series:
    """ISO `YYYY-MM-DD` or `M/D/YY[YY]` → date objects (None where unreadable).

    A two-digit year is in the past century when it is later than this year's two digits
    (`82` → 1982, `05` → 2005).
    """
    return _by_unique("event_date", raw, partial(_dates, today=today or dt.date.today()), drops)


_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})$")


def _date(value: Any, today: dt.date) -> dt.date | None:
    """One export date (ISO or M/D/YY[YY]); None when unreadable or after `today`."""
    text = "" if _missing_value(value) else str(value).strip()
    if m := _ISO_DATE.search(text):
        year, month, day = (int(g) for g in m.groups())
    elif m := _US_DATE.search(text):
        month, day, year = (int(g) for g in m.groups())
    else:
        return None
    if year < 100:
        year += 1900 if year > today.year % 100 else 2000
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None
    return None if date > today else date


def _dates(raw: pd.Series, *, today: dt.date) -> tuple[pd.Series, Problems]:
    values = pd.Series([_date(v, today) for v in raw.tolist()], index=raw.index, dtype=object)
    missing = _blank(raw)
    return values, {"missing": missing, "unreadable or in the future": values.isna() & ~missing}


_DMS = re.compile(r"^(\d{2,3})(\d{2})(\d{2}(?:\.\d+)?)([NSEW])$")


def _coordinate(value: str) -> float:
    """Decimal degrees, or the export's `DDDMMSS[NSEW]` form; NaN if neither."""
    try:
        return float(value)
    except ValueError:
        m = _DMS.match(value.strip().upper())
        if not m:
            return float("nan")
        deg = int(m[1]) + int(m[2]) / 60 + float(m[3]) / 3600
        return -deg if m[4] in "SW" else deg


def _numeric(name: str, raw: pd.Series) -> tuple[pd.Series, Problems]:
    lo, hi, kind = NUMERIC_FIELDS[name]
    blank = _blank(raw)
    if name in ("dec_latitude", "dec_longitude"):
        values = pd.Series(
            [
                float("nan") if b else _coordinate(str(v).strip())
                for b, v in zip(blank.tolist(), raw.tolist(), strict=True)
            ],
            index=raw.index,
            dtype=float,
        )
    else:
        text = raw.astype("string").str.strip()
        values = pd.to_numeric(text.where(~blank), errors="coerce").astype(float)
    unreadable = values.isna() & ~blank
    out_of_range = values.notna() & ((values < lo) | (values > hi))
    if kind is int:
        out_of_range |= values.notna() & (values != values.round())
    if name == "occurrence_code":
        out_of_range |= values.notna() & ~values.map(
            lambda v: v != v or valid_occurrence_code(v)
        ).astype(bool)
    return values.where(~out_of_range), {
        "missing": blank,
        "not a number": unreadable,
        f"outside {lo}..{hi}" if name != "occurrence_code" else "invalid code": out_of_range,
    }


def _category(name: str, raw: pd.Series) -> tuple[pd.Series, Problems]:
    blank = _blank(raw)
    out: list[str | None] = []
    unknown: list[bool] = []
    for b, v in zip(blank.tolist(), raw.tolist(), strict=True):
        value = None
        if not b:
            try:
                value = canonical_category(name, str(v))
            except ValueError:
                unknown.append(True)
                out.append(None)
                continue
        unknown.append(False)
        out.append(value)
    return pd.Series(out, index=raw.index, dtype=object), {
        "missing": blank,
        "not a category of the export": pd.Series(unknown, index=raw.index, dtype=bool),
    }


def _boolean(raw: pd.Series) -> tuple[pd.Series, Problems]:
    text = raw.astype("string").str.strip().str.lower()
    mapping = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}
    values = text.map(mapping)
    blank = _blank(raw)
    out = pd.Series(
        [None if _missing_value(v) else bool(v) for v in values], dtype=object, index=raw.index
    )
    return out, {"missing": blank, "not yes/no": values.isna() & ~blank}


_EV_ID = re.compile(EV_ID_PATTERN)  # fullmatch: the anchors change nothing


def _event_ids(raw: list[Any], row_offset: int) -> tuple[list[str], int]:
    """Each row's id, stripped; `row-N` where it is missing or not a valid id (and how many)."""
    keys, replaced = [], 0
    for i, v in enumerate(raw):
        key = "" if _missing_value(v) else str(v).strip()
        if not _EV_ID.fullmatch(key):
            key, replaced = f"row-{row_offset + i}", replaced + 1
        keys.append(key)
    return keys, replaced


def _number_or_nan(raw: pd.Series) -> tuple[pd.Series, Problems]:
    return pd.to_numeric(raw, errors="coerce"), {}


def severity_from_counts(frame: pd.DataFrame, drops: _Drops) -> pd.Series:
    """Highest injury level from the Total_* counts: Fatal > Serious > Minor > None."""
    counts = {c: _by_unique(c, frame[c], _number_or_nan, drops) for c in INJURY_COLUMNS}
    all_unknown = pd.concat([v.isna() for v in counts.values()], axis=1).all(axis=1)
    label = np.select(
        [
            counts["total_fatal_injuries"].fillna(0) > 0,
            counts["total_serious_injuries"].fillna(0) > 0,
            counts["total_minor_injuries"].fillna(0) > 0,
        ],
        ["Fatal", "Serious", "Minor"],
        default="None",
    )
    out = pd.Series(label, index=frame.index, dtype=object).where(~all_unknown, None)
    drops.add(LABEL, "all injury counts unknown", all_unknown.sum())
    return out


def _style(columns: list[str]) -> str:
    if any("." in c for c in columns):
        return "dotted"
    if "ev_id" in columns:
        return "canonical"
    return "underscore"


DECOMPRESS = {".xz": "lzma", ".gz": "gzip", ".bz2": "bz2"}
"""Compressed files are read as they are, by their suffix (the shipped file is .xz)."""


def read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when its suffix says so."""
    raw = path.read_bytes()
    module = DECOMPRESS.get(path.suffix.lower())
    if module is None:
        return raw
    import importlib

    try:
        return bytes(importlib.import_module(module).decompress(raw))
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as e:
        raise DataError(f"{path}: not a valid {path.suffix} file ({e})") from e


def _read_csv(path: Path) -> pd.DataFrame:
    raw = read_bytes(path)
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path}: not a text CSV file (binary content)")
    for encoding in ("utf-8", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    import io

    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: empty file, no header") from e


def load_frame(
    frame: pd.DataFrame, *, path: str = "<frame>", require_label: bool = True, row_offset: int = 0
) -> LoadedData:
    """Canonical rows from a frame of export columns (strings)."""
    style = _style(list(frame.columns))
    frame = frame.rename(columns=_norm_column).rename(columns=RENAMES)
    drops = _Drops()
    cols = set(frame.columns)

    if "event_date" not in cols:
        raise DataError(
            f"{path}: required column Event_Date (or Event.Date / event_date) is absent"
        )
    if "ev_id" in cols:
        ids = frame["ev_id"]
    elif "accident_number" in cols:
        ids = frame["accident_number"]
    elif "event_id" in cols:
        ids = frame["event_id"]
    else:
        raise DataError(f"{path}: required column Accident_Number (or Event_Id / ev_id) is absent")
    if "event_id" in cols:
        mangled = sum("E+" in v for v in frame["event_id"].tolist() if isinstance(v, str))
        drops.add("event_id", "spreadsheet-mangled (Accident_Number used as key)", mangled)
    keys, replaced = _event_ids(ids.tolist(), row_offset)
    drops.add("ev_id", "missing or invalid (replaced by row number)", replaced)
    out = pd.DataFrame({"ev_id": keys}, index=frame.index)
    out["event_date"] = parse_event_dates(frame["event_date"], drops)
    for name in NUMERIC_FIELDS:
        if name in cols:
            out[name] = _by_unique(name, frame[name], partial(_numeric, name), drops)
    for name in CATEGORY_FIELDS:
        if name in cols:
            out[name] = _by_unique(name, frame[name], partial(_category, name), drops)
    if "amateur_built" in cols:
        out["amateur_built"] = _by_unique("amateur_built", frame["amateur_built"], _boolean, drops)

    if LABEL in cols:
        label = frame[LABEL].astype("string").str.strip().str.capitalize()
        bad = ~label.isin(SEVERITIES)
        out[LABEL] = label.astype(object).where(~bad, None)
        drops.add(LABEL, "not a severity", bad.sum())
    elif all(c in cols for c in INJURY_COLUMNS):
        out[LABEL] = severity_from_counts(frame, drops)
    elif require_label:
        missing = [c for c in INJURY_COLUMNS if c not in cols]
        raise DataError(
            f"{path}: required column(s) {', '.join(missing)} absent (they define the label)"
        )
    rows_read = len(out)
    if LABEL in out and require_label:
        out = out[out[LABEL].notna()]
    return LoadedData(
        out.reset_index(drop=True),
        path=path,
        style=style,
        dropped=drops.as_dict(),
        rows_read=rows_read,
    )


def load(path: str | Path, *, require_label: bool = True) -> LoadedData:
    """Read an NTSB export CSV (either public column style, or the canonical one)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    frame = _read_csv(path)
    if frame.empty and len(frame.columns) <= 1:
        raise DataError(f"{path}: no header or no rows")
    return load_frame(frame, path=str(path), require_label=require_label)


def to_canonical_csv(data: LoadedData, path: str | Path) -> None:
    """Write rows in the canonical style (readable by `load`)."""
    data.frame.to_csv(path, index=False)


def field_values(rows: list[Mapping[str, Any]], name: str) -> list[Any]:
    return [r.get(name) for r in rows]
