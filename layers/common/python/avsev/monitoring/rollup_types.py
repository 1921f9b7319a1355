"""The rollups as typed values: what a `served`, `labels` or `drift` rollup holds, read from
its stored JSON and written to it here and nowhere else (avsev.monitoring.rollups computes
them; the rollup job stores them at `rollups/<kind>/[<version>/]dt=<day>.json`).

The types do not change the stored format: `to_doc()` of a parsed rollup is the document it
was read from, key for key and in the same order (a file written before a column existed
leaves the column out again), so a rollup read and written again is the same bytes.

A document that does not hold what its kind holds — a key missing or unknown, a count that
is not a whole number, a class outside SEVERITIES — is refused with a `RollupError` naming
the key, the row and what is allowed, before any report sums it.

A row here is a group of a rollup query (a version × class × latency bin × hour, say), never
a record: a day's rollup has at most thousands of rows, whatever the traffic.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, TypeVar

from avsev.serving.errors import ErrorDetail
from avsev.serving.schema import SEVERITIES

PROBABILITY_SUMS: tuple[str, ...] = tuple(f"p_{s.lower()}" for s in SEVERITIES)
"""The served rollup's column of each class's summed probability, in SEVERITIES order."""

SERVED_COLUMNS: tuple[str, ...] = (
    "model_version",
    "shadow",
    "newer_schema",
    "predicted",
    "latency_bin",
    "hour",
    "n",
    *PROBABILITY_SUMS,
    "p_max",
    "entropy",
)
"""A served rollup row's columns, in the order the query answers them."""
SERVED_REQUIRED = frozenset({"model_version", "shadow", "predicted", "latency_bin", "n"})
"""The others may be absent: rollups written before those columns existed."""

LABEL_COLUMNS: tuple[str, ...] = (
    "kind",
    "version",
    "shadow_version",
    "predicted",
    "shadow_predicted",
    "actual",
    "conf_bin",
    "n",
    "nll",
    "nll2",
    "conf_sum",
    "hour",
)
"""A labels rollup row's columns, in the order the query answers them."""
LABEL_REQUIRED = frozenset({"kind", "version", "predicted", "actual", "n"})

STAMP_KEYS: tuple[str, ...] = ("computed_at", "day", "skipped_objects")
"""What the rollup job adds to every rollup it stores, after the rollup's own keys."""

CLASSES = ", ".join(SEVERITIES)
LabelKind = Literal["served", "shadow"]
LABEL_KINDS: tuple[LabelKind, ...] = ("served", "shadow")


class RollupError(ValueError):
    """A stored rollup refused: which key (and row), what is wrong, what is allowed."""

    def __init__(
        self,
        field: str,
        problem: str,
        allowed: str | None = None,
        *,
        row: int | None = None,
        key: str | None = None,
    ) -> None:
        self.detail = ErrorDetail(field=field, problem=problem, allowed=allowed, row=row)
        self.key = key
        where = f"rollup {key}" if key else "rollup"
        also = f" (allowed: {allowed})" if allowed else ""
        super().__init__(f"{where}: {field}: {problem}{also}")

    def at(self, key: str) -> RollupError:
        """The same error, naming the stored object it was read from."""
        d = self.detail
        return RollupError(d.field, d.problem, d.allowed, row=d.row, key=key)

    def skipped(self) -> dict[str, str]:
        """As a report's `skipped_objects` entry."""
        return {"object": self.key or "", "reason": str(self)}


# ---- values ------------------------------------------------------------------------------


def _whole(value: Any, field: str, row: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool | complex):
        f = float(value)  # type: ignore[arg-type]
        if f.is_integer():
            return int(f)
    raise RollupError(field, f"{value!r} is not a whole number", "an integer", row=row)


def _count(value: Any, field: str, row: int | None = None) -> int:
    n = _whole(value, field, row)
    if n < 0:
        raise RollupError(field, f"{n} is negative", "a count, 0 or more", row=row)
    return n


def _number(value: Any, field: str, row: int | None = None) -> float:
    """A number as stored (an int stays an int, so it is written back as it was read)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool | complex):
        return float(value)  # type: ignore[arg-type]
    raise RollupError(field, f"{value!r} is not a number", "a number", row=row)


def _text(value: Any, field: str, row: int | None = None) -> str:
    if isinstance(value, str):
        return value
    raise RollupError(field, f"{value!r} is not a string", "a string", row=row)


def _flag(value: Any, field: str, row: int | None = None) -> bool:
    if isinstance(value, bool):
        return value
    raise RollupError(field, f"{value!r} is not true or false", "true, false", row=row)


def _severity(value: Any, field: str, row: int | None = None) -> str:
    if isinstance(value, str) and value in SEVERITIES:
        return value
    raise RollupError(field, f"{value!r} is not a severity class", CLASSES, row=row)


def _hour(value: Any, field: str, row: int | None = None) -> int:
    h = _whole(value, field, row)
    if not 0 <= h <= 23:
        raise RollupError(field, f"{h} is not an hour of the day", "0 to 23", row=row)
    return h


V = TypeVar("V")


def _maybe(
    check: Callable[[Any, str, int | None], V], value: Any, field: str, row: int | None
) -> V | None:
    return None if value is None else check(value, field, row)


def _object(doc: Any, field: str, row: int | None = None) -> Mapping[str, Any]:
    if isinstance(doc, Mapping):
        return doc
    raise RollupError(field, f"a {type(doc).__name__}, not an object", "a JSON object", row=row)


def _keys(
    doc: Mapping[str, Any],
    field: str,
    allowed: Sequence[str],
    required: frozenset[str] | set[str],
    row: int | None = None,
) -> None:
    """Refuse a key that is unknown or missing, naming it."""
    prefix = f"{field}." if field else ""
    for k in doc:
        if k not in allowed:
            raise RollupError(f"{prefix}{k}", "unknown key", ", ".join(allowed), row=row)
    for k in allowed:
        if k in required and k not in doc:
            raise RollupError(f"{prefix}{k}", "missing", f"{k} is required", row=row)


def _counts(doc: Any, field: str, *, classes: bool = False) -> dict[str, int]:
    """A {name: count} object (class names only, when `classes`)."""
    out: dict[str, int] = {}
    for k, v in _object(doc, field).items():
        if classes:
            _severity(k, f"{field} key")
        out[k] = _count(v, f"{field}.{k}")
    return out


# ---- rows --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedRow:
    """Predictions of one group of the served rollup: a model version, served or shadow, its
    predicted class, latency bin (avsev.monitoring.rollups.latency_value) and the predictions'
    hour, with the sums of their probabilities (each class's in SEVERITIES order, the top
    one's, the entropy's) for the label-free estimate. Rows of records with a newer schema
    are counted only (their other columns are not read, nor checked)."""

    model_version: str | None
    shadow: bool
    predicted: str | None
    latency_bin: int | None
    n: int
    newer_schema: bool = False
    hour: int | None = None
    probability_sums: tuple[float | None, ...] | None = None
    p_max: float | None = None
    entropy: float | None = None

    @classmethod
    def parse(cls, doc: Mapping[str, Any], row: int | None = None) -> ServedRow:
        """A row as the query or the stored JSON has it (its keys checked by the caller)."""
        newer = _flag(doc.get("newer_schema", False), "newer_schema", row)
        shadow = _flag(doc["shadow"], "shadow", row)
        n = _count(doc["n"], "n", row)
        if newer:  # counted and skipped: a newer schema's columns are kept, never read
            return cls(
                doc.get("model_version"),
                shadow,
                doc.get("predicted"),
                doc.get("latency_bin"),
                n,
                True,
                doc.get("hour"),
                tuple(doc.get(c) for c in PROBABILITY_SUMS),
                doc.get("p_max"),
                doc.get("entropy"),
            )
        sums = (
            tuple(_maybe(_number, doc.get(c), c, row) for c in PROBABILITY_SUMS)
            if any(c in doc for c in PROBABILITY_SUMS)
            else None
        )
        return cls(
            model_version=_text(doc["model_version"], "model_version", row),
            shadow=shadow,
            predicted=_severity(doc["predicted"], "predicted", row),
            latency_bin=_whole(doc["latency_bin"], "latency_bin", row),
            n=n,
            newer_schema=False,
            hour=_maybe(_hour, doc.get("hour"), "hour", row),
            probability_sums=sums,
            p_max=_maybe(_number, doc.get("p_max"), "p_max", row),
            entropy=_maybe(_number, doc.get("entropy"), "entropy", row),
        )

    def to_doc(self, columns: Sequence[str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "model_version": self.model_version,
            "shadow": self.shadow,
            "newer_schema": self.newer_schema,
            "predicted": self.predicted,
            "latency_bin": self.latency_bin,
            "hour": self.hour,
            "n": self.n,
            **dict(
                zip(
                    PROBABILITY_SUMS,
                    self.probability_sums or (None,) * len(PROBABILITY_SUMS),
                    strict=True,
                )
            ),
            "p_max": self.p_max,
            "entropy": self.entropy,
        }
        return {c: values[c] for c in columns}


@dataclass(frozen=True, slots=True)
class LabelRow:
    """Labelled served predictions of one group of the labels rollup. `served`: a version's
    predicted and actual class, confidence bin and hour, with the sums of −ln p(actual), of
    its square and of the top probability. `shadow`: the served and shadow versions'
    predictions of the same requests, paired, with the actual class (for McNemar)."""

    kind: LabelKind
    version: str
    predicted: str
    actual: str
    n: int
    shadow_version: str | None = None
    shadow_predicted: str | None = None
    conf_bin: int | None = None
    nll: float | None = None
    nll2: float | None = None
    conf_sum: float | None = None
    hour: int | None = None

    @classmethod
    def parse(cls, doc: Mapping[str, Any], row: int | None = None) -> LabelRow:
        kind = doc["kind"]
        if kind not in LABEL_KINDS:
            raise RollupError(
                "kind", f"{kind!r} is not a kind of labels row", "served, shadow", row=row
            )
        shadow = kind == "shadow"
        return cls(
            kind=kind,
            version=_text(doc["version"], "version", row),
            predicted=_severity(doc["predicted"], "predicted", row),
            actual=_severity(doc["actual"], "actual", row),
            n=_count(doc["n"], "n", row),
            shadow_version=(_text if shadow else _maybe_text)(
                doc.get("shadow_version"), "shadow_version", row
            ),
            shadow_predicted=(_severity if shadow else _maybe_severity)(
                doc.get("shadow_predicted"), "shadow_predicted", row
            ),
            conf_bin=_maybe(_whole, doc.get("conf_bin"), "conf_bin", row),
            nll=_maybe(_number, doc.get("nll"), "nll", row),
            nll2=_maybe(_number, doc.get("nll2"), "nll2", row),
            conf_sum=_maybe(_number, doc.get("conf_sum"), "conf_sum", row),
            hour=_maybe(_hour, doc.get("hour"), "hour", row),
        )

    def to_doc(self, columns: Sequence[str]) -> dict[str, Any]:
        return {c: getattr(self, c) for c in columns}


def _maybe_text(value: Any, field: str, row: int | None = None) -> str | None:
    return _maybe(_text, value, field, row)


def _maybe_severity(value: Any, field: str, row: int | None = None) -> str | None:
    return _maybe(_severity, value, field, row)


# ---- rollups -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Stamped:
    """What the rollup job adds to a rollup it stores: when it was computed, its day, and
    the record objects the query could not read (each `{"object", "reason"}`)."""

    computed_at: str | None = None
    day: str | None = None
    skipped_objects: list[dict[str, str]] | None = None

    KIND: ClassVar[str]

    def stamped(self, computed_at: str, day: str, skipped_objects: list[dict[str, str]]) -> Self:
        return dataclasses.replace(
            self, computed_at=computed_at, day=day, skipped_objects=list(skipped_objects)
        )

    def on_day(self, day: str) -> Self:
        """The rollup of `day` (the day its key names)."""
        return dataclasses.replace(self, day=day)

    def _stamp_doc(self) -> dict[str, Any]:
        values = {
            "computed_at": self.computed_at,
            "day": self.day,
            "skipped_objects": self.skipped_objects,
        }
        return {k: v for k, v in values.items() if v is not None}

    @staticmethod
    def _parse_stamp(doc: Mapping[str, Any]) -> dict[str, Any]:
        skipped = doc.get("skipped_objects")
        if skipped is not None:
            if not isinstance(skipped, list):
                raise RollupError("skipped_objects", "not a list", "a list of {object, reason}")
            for i, s in enumerate(skipped):
                entry = _object(s, f"skipped_objects[{i}]")
                _keys(entry, f"skipped_objects[{i}]", ("object", "reason"), {"object", "reason"})
                for k in ("object", "reason"):
                    _text(entry[k], f"skipped_objects[{i}].{k}")
            skipped = [dict(s) for s in skipped]
        return {
            "computed_at": _maybe(_text, doc.get("computed_at"), "computed_at", None),
            "day": _maybe(_text, doc.get("day"), "day", None),
            "skipped_objects": skipped,
        }


def _rows(
    doc: Mapping[str, Any], columns: Sequence[str], required: frozenset[str]
) -> tuple[list[Mapping[str, Any]], tuple[str, ...]]:
    """A rollup's rows, each checked to have the rollup's columns (the first row's keys:
    one query answers all of a file's rows)."""
    rows = doc["rows"]
    if not isinstance(rows, list):
        raise RollupError("rows", f"a {type(rows).__name__}, not a list", "a list of rows")
    if not rows:
        return [], tuple(columns)
    first = _object(rows[0], "rows[0]", 0)
    _keys(first, "rows[0]", columns, required, 0)
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or r.keys() != first.keys():
            row = _object(r, f"rows[{i}]", i)
            _keys(row, f"rows[{i}]", columns, required, i)
            lacks, extra = sorted(first.keys() - row.keys()), sorted(row.keys() - first.keys())
            raise RollupError(
                f"rows[{i}].{(lacks or extra)[0]}",
                "missing, where the first row has it"
                if lacks
                else "not in the first row (one query answers every row: the same keys)",
                ", ".join(first),
                row=i,
            )
    return rows, tuple(first)


def _parse_rows(
    rows: list[Mapping[str, Any]], parse: Callable[[Mapping[str, Any], int], V]
) -> list[V]:
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(parse(r, i))
        except RollupError as e:
            d = e.detail
            raise RollupError(f"rows[{i}].{d.field}", d.problem, d.allowed, row=i) from None
    return out


@dataclass(frozen=True, kw_only=True)
class ServedRollup(Stamped):
    """A day's `served` rollup: its rows, and which columns they have (as stored)."""

    KIND: ClassVar[str] = "served"
    rows: list[ServedRow]
    columns: tuple[str, ...] = SERVED_COLUMNS

    @classmethod
    def from_doc(cls, doc: Any) -> ServedRollup:
        d = _object(doc, "rollup")
        _keys(d, "", ("rows", *STAMP_KEYS), {"rows"})
        rows, columns = _rows(d, SERVED_COLUMNS, SERVED_REQUIRED)
        return cls(rows=_parse_rows(rows, ServedRow.parse), columns=columns, **cls._parse_stamp(d))

    def to_doc(self) -> dict[str, Any]:
        return {"rows": [r.to_doc(self.columns) for r in self.rows], **self._stamp_doc()}


@dataclass(frozen=True, kw_only=True)
class LabelsRollup(Stamped):
    """A day's `labels` rollup: its rows, and which columns they have (as stored)."""

    KIND: ClassVar[str] = "labels"
    rows: list[LabelRow]
    columns: tuple[str, ...] = LABEL_COLUMNS

    @classmethod
    def from_doc(cls, doc: Any) -> LabelsRollup:
        d = _object(doc, "rollup")
        _keys(d, "", ("rows", *STAMP_KEYS), {"rows"})
        rows, columns = _rows(d, LABEL_COLUMNS, LABEL_REQUIRED)
        return cls(rows=_parse_rows(rows, LabelRow.parse), columns=columns, **cls._parse_stamp(d))

    def to_doc(self) -> dict[str, Any]:
        return {"rows": [r.to_doc(self.columns) for r in self.rows], **self._stamp_doc()}


FIELD_KEYS: tuple[str, ...] = ("missing", "bins", "grid", "counts", "sum", "n", "grid_width")
FIELD_REQUIRED = frozenset({"missing", "bins", "grid", "counts", "sum", "n"})


@dataclass(frozen=True, slots=True)
class FieldCounts:
    """One feature's counts in a drift rollup: rows missing it; for a number, the counts on
    the reference's bins and on the fine grid (cells `grid_width` wide), the sum and count of
    its values; for a category, the count of each value."""

    missing: int = 0
    bins: dict[str, int] = dataclasses.field(default_factory=dict)
    grid: dict[str, int] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    sum: float = 0.0
    n: int = 0
    grid_width: float | None = None
    """Numbers only."""

    @classmethod
    def from_doc(cls, doc: Any, field: str) -> FieldCounts:
        d = _object(doc, field)
        _keys(d, field, FIELD_KEYS, FIELD_REQUIRED)
        return cls(
            missing=_count(d["missing"], f"{field}.missing"),
            bins=_counts(d["bins"], f"{field}.bins"),
            grid=_counts(d["grid"], f"{field}.grid"),
            counts=_counts(d["counts"], f"{field}.counts"),
            sum=_number(d["sum"], f"{field}.sum"),
            n=_count(d["n"], f"{field}.n"),
            grid_width=_maybe(_number, d.get("grid_width"), f"{field}.grid_width", None),
        )

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "missing": self.missing,
            "bins": self.bins,
            "grid": self.grid,
            "counts": self.counts,
            "sum": self.sum,
            "n": self.n,
        }
        if self.grid_width is not None:
            doc["grid_width"] = self.grid_width
        return doc


@dataclass(frozen=True, kw_only=True)
class DriftRollup(Stamped):
    """A day's `drift` rollup of one model version: its rows, their predicted class mix,
    each profiled feature's counts, and while the day has at most SMALL_SAMPLE rows, each
    numeric feature's values themselves (`sample`)."""

    KIND: ClassVar[str] = "drift"
    rows: int
    predicted: dict[str, int]
    fields: dict[str, FieldCounts]
    sample: dict[str, list[float]] | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> DriftRollup:
        d = _object(doc, "rollup")
        _keys(
            d,
            "",
            ("rows", "predicted", "fields", "sample", *STAMP_KEYS),
            {"rows", "predicted", "fields"},
        )
        fields = {
            name: FieldCounts.from_doc(f, f"fields.{name}")
            for name, f in _object(d["fields"], "fields").items()
        }
        sample = None
        if d.get("sample") is not None:
            sample = {}
            for name, values in _object(d["sample"], "sample").items():
                if not isinstance(values, list):
                    raise RollupError(f"sample.{name}", "not a list", "a list of numbers")
                sample[name] = [_number(v, f"sample.{name}[{i}]") for i, v in enumerate(values)]
        return cls(
            rows=_count(d["rows"], "rows"),
            predicted=_counts(d["predicted"], "predicted", classes=True),
            fields=fields,
            sample=sample,
            **cls._parse_stamp(d),
        )

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "rows": self.rows,
            "predicted": self.predicted,
            "fields": {name: f.to_doc() for name, f in self.fields.items()},
        }
        if self.sample is not None:
            doc["sample"] = self.sample
        return doc | self._stamp_doc()


Rollup = ServedRollup | LabelsRollup | DriftRollup
R = TypeVar("R", ServedRollup, LabelsRollup, DriftRollup)


def parse_rollup(kind: type[R], doc: Any, key: str | None = None) -> R:
    """A stored document as a rollup of `kind`; RollupError naming `key` when it is not one."""
    try:
        return kind.from_doc(doc)
    except RollupError as e:
        raise e.at(key) if key else e from None
