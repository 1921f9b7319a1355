"""The feature spec and the one encoder that training and serving share.

A spec is a list of features, each read from one `AccidentReport` field. It lives in the
bundle's card, so a served model always encodes exactly as it was trained. Pure Python.
"""

from __future__ import annotations

import array
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

OTHER = "other"
"""The bucket for rare or unseen values of an open category (make)."""

NAN = float("nan")

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Feature:
    """One model input column, read from one report field."""

    name: str
    source: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()
    """For a categorical feature: category i is encoded as the number i."""
    derive: str | None = None
    """For a date: which part ("year" or "month")."""
    lo: float | None = None
    hi: float | None = None
    cap: float | None = None
    """For a numeric feature: values above it encode as it (the event year is capped at the
    last training year, so a newer report reads as the newest year the trees learned from)."""
    codes: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", {c: i for i, c in enumerate(self.categories)})

    def encode(self, value: Any) -> float:
        """The number the trees see; NaN for missing."""
        if value is None or value != value:  # None or NaN
            return NAN
        if self.kind == "categorical":
            code = self.codes.get(value)
            if code is None:
                code = self.codes.get(OTHER)
            return NAN if code is None else float(code)
        if self.derive == "year":
            number = float(value.year)
        elif self.derive == "month":
            number = float(value.month)
        else:
            number = float(value)
        return number if self.cap is None or number <= self.cap else float(self.cap)

    def encode_column(self, values: Iterable[Any]) -> list[float]:
        """`encode` of each value, in one pass (the same rules, without a call per value)."""
        if self.kind == "categorical":
            other = self.codes.get(OTHER)
            unseen = NAN if other is None else float(other)
            table = {c: float(i) for c, i in self.codes.items()}
            return [NAN if v is None or v != v else table.get(v, unseen) for v in values]
        numbers = self.numbers(values)
        if self.cap is None:
            return numbers
        cap = float(self.cap)
        return [x if not x > cap else cap for x in numbers]  # NaN stays NaN

    def numbers(self, values: Iterable[Any]) -> list[float]:
        """A numeric feature's values as numbers before any cap (NaN for missing)."""
        if self.derive == "year":
            return [NAN if v is None or v != v else float(v.year) for v in values]
        if self.derive == "month":
            return [NAN if v is None or v != v else float(v.month) for v in values]
        return [NAN if v is None or v != v else float(v) for v in values]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source, "kind": self.kind}
        if self.categories:
            out["categories"] = list(self.categories)
            out["encoding"] = "category index (order below); missing and unseen: NaN" + (
                f"; rare or unseen: {OTHER!r}" if OTHER in self.categories else ""
            )
        if self.derive:
            out["derive"] = self.derive
        if self.lo is not None:
            out["range"] = [self.lo, self.hi]
        if self.cap is not None:
            out["cap"] = self.cap
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        rng = d.get("range") or [None, None]
        return cls(
            name=d["name"],
            source=d["source"],
            kind=d["kind"],
            categories=tuple(d.get("categories", ())),
            derive=d.get("derive"),
            lo=rng[0],
            hi=rng[1],
            cap=d.get("cap"),
        )


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features of a model: encodes report fields into the model's input row."""

    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def sources(self) -> list[str]:
        """The report fields this model reads, in order, without repeats."""
        return list(dict.fromkeys(f.source for f in self.features))

    def __len__(self) -> int:
        return len(self.features)

    def encode(self, fields: Mapping[str, Any]) -> list[float]:
        """One report's fields (as `AccidentReport.fields()` gives them) → one model row."""
        get = fields.get
        return [f.encode(get(f.source)) for f in self.features]

    def encode_many(self, rows: Iterable[Mapping[str, Any]]) -> list[list[float]]:
        rows = rows if isinstance(rows, Sequence) else list(rows)
        columns = self.encode_columns({s: [r.get(s) for r in rows] for s in self.sources})
        return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in rows]

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> list[list[float]]:
        """Report fields given column-wise (field → values) → one list per model feature."""
        return [f.encode_column(columns[f.source]) for f in self.features]

    def encode_rows(self, columns: Mapping[str, Sequence[Any]], n: int) -> array.array:  # type: ignore[type-arg]
        """Report fields given column-wise → the model's input as float32, row-major (what
        the runtime's batch loop takes): one pass per feature, no per-row Python."""
        return self.pack(self.encode_columns(columns), n)

    def pack(self, encoded: Sequence[Sequence[float]], n: int) -> array.array:  # type: ignore[type-arg]
        """Encoded columns (`encode_columns`) → the model's input as float32, row-major."""
        nf = len(self.features)
        out = array.array("f", bytes(4 * n * nf))
        for j, values in enumerate(encoded):
            out[j::nf] = array.array("f", values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(tuple(Feature.from_dict(f) for f in d["features"]))


CANDIDATES: tuple[tuple[str, str, FeatureKind, str | None], ...] = (
    # (feature name, report field, kind, date part)
    ("event_year", "event_date", "numeric", "year"),
    ("event_month", "event_date", "numeric", "month"),
    ("dec_latitude", "dec_latitude", "numeric", None),
    ("dec_longitude", "dec_longitude", "numeric", None),
    ("aircraft_age", "aircraft_age", "numeric", None),
    ("pilot_tot_time", "pilot_tot_time", "numeric", None),
    ("pilot_90_days", "pilot_90_days", "numeric", None),
    ("phase_code", "phase_code", "numeric", None),
    ("occurrence_code", "occurrence_code", "numeric", None),
    ("number_of_engines", "number_of_engines", "numeric", None),
    ("amateur_built", "amateur_built", "numeric", None),
    ("engine_type", "engine_type", "categorical", None),
    ("purpose_of_flight", "purpose_of_flight", "categorical", None),
    ("broad_phase_of_flight", "broad_phase_of_flight", "categorical", None),
    ("weather_condition", "weather_condition", "categorical", None),
    ("make", "make", "categorical", None),
)
"""Every feature a model may use. Label-defining columns and identifiers are not here."""

OPEN_CATEGORY_MIN_COUNT = 20


def fit_spec(
    rows: Sequence[Mapping[str, Any]],
    *,
    open_category_min_count: int = OPEN_CATEGORY_MIN_COUNT,
    exclude: Iterable[str] = (),
) -> FeatureSpec:
    """The spec for a training set: candidates that vary in it, categories by frequency.

    A feature with fewer than two distinct values in `rows` is left out (the trees could
    not use it). `make` keeps the values seen at least `open_category_min_count` times
    and an `other` bucket for the rest. The event year is capped at the newest year in
    `rows`: the model is never asked about a year it did not see.
    """
    skip = set(exclude)
    features: list[Feature] = []
    for name, source, kind, derive in CANDIDATES:
        if name in skip:
            continue
        values = [r.get(source) for r in rows]
        values = [v for v in values if v is not None and v == v]
        if kind == "categorical":
            counts = Counter(values)
            if source == "make":
                cats = [c for c, n in counts.most_common() if n >= open_category_min_count]
                cats.append(OTHER)
            else:
                cats = [c for c, _ in counts.most_common()]
            if len(cats) < 2:
                continue
            features.append(Feature(name, source, kind, categories=tuple(str(c) for c in cats)))
        else:
            numbers = [Feature(name, source, kind, derive=derive).encode(v) for v in values]
            if len(set(numbers)) < 2:
                continue
            lo, hi = min(numbers), max(numbers)
            cap = hi if derive == "year" else None
            features.append(Feature(name, source, kind, derive=derive, lo=lo, hi=hi, cap=cap))
    return FeatureSpec(tuple(features))


def describe_value(feature: Feature, fields: Mapping[str, Any]) -> Any:
    """The value a client sent for a feature, as it reads in an explanation."""
    value = fields.get(feature.source)
    if isinstance(value, dt.date):
        return value.year if feature.derive == "year" else value.month
    if feature.kind == "categorical" and value is not None and value not in feature.codes:
        return f"{value} ({OTHER})" if OTHER in feature.codes else value
    return value
