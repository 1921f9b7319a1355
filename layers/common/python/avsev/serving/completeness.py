"""Per-request completeness and input warnings: how much of what the model leans on a report
gave, and what in it the model never saw in training. Never an error: the answer is given
all the same.

- `completeness`: the share of the model's importance (the card's mean |SHAP| per report
  field) carried by the fields the model received a value for, rounded to `DIGITS`. A field
  counts as received when the model's input for it is not blank: a value of a closed category
  that training never saw is scored as blank, so it does not count.
- `warnings`, one per field at most, most important field first:
  `missing_important_field` (a blank field among the most important ones: the fewest fields
  that together carry `IMPORTANT_SHARE` of the importance), `out_of_training_range` (a number
  outside the lowest..highest value of the training rows, as the card's feature spec records
  them), `unseen_category` (a value of a closed category that the training rows never had:
  the model scores it as blank). An open category (`make`) has no unseen values: a maker
  outside the ones learned apart is scored as `other`, a bucket the model learned from the
  rare makers of its training rows (a tenth of real reports), so it is not warned about.

One implementation, column-wise (plain lists, no model per row), for the single and the
batch path alike. Pure Python: it is on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from avsev.serving.card import Card
from avsev.serving.features import OTHER, Feature, FeatureSpec

WarningCode = Literal["missing_important_field", "out_of_training_range", "unseen_category"]
MISSING_IMPORTANT: WarningCode = "missing_important_field"
OUT_OF_RANGE: WarningCode = "out_of_training_range"
UNSEEN_CATEGORY: WarningCode = "unseen_category"

IMPORTANT_SHARE = 0.5
"""High-importance fields: the fewest most important fields whose importance adds up to at
least this share of the total (on the real-data model, the top 4 of 15 fields)."""
DIGITS = 4
"""`completeness` is rounded to this many decimals."""

WarningDict = dict[str, str]
"""{"code": one of `WarningCode`, "field": a report field, "detail": a sentence}."""


def importance_weights(
    spec: FeatureSpec, importance: Mapping[str, float] | None
) -> dict[str, float] | None:
    """Each report field the model reads → its share of the card's importance (summing to 1),
    in the spec's order; None when the card has no (positive) importance."""
    raw = importance or {}
    values = {s: max(float(raw.get(s) or 0.0), 0.0) for s in spec.sources}
    total = sum(values.values())
    if total <= 0:
        return None
    return {s: v / total for s, v in values.items()}


def important_fields(weights: Mapping[str, float], share: float = IMPORTANT_SHARE) -> list[str]:
    """The fewest most important fields that together carry at least `share` of the weight,
    most important first (ties in the given order)."""
    out: list[str] = []
    total = 0.0
    for name in sorted(weights, key=lambda n: -weights[n]):
        if total >= share - 1e-12:
            break
        out.append(name)
        total += weights[name]
    return out


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.10g}"


@dataclass(frozen=True)
class InputCheck:
    """A model's completeness and input warnings, from its feature spec and card."""

    spec: FeatureSpec
    weights: dict[str, float]
    """Report field → share of the importance (equal shares when the card has none)."""
    important: tuple[str, ...]
    """Fields whose absence is warned about, most important first (none without importance)."""
    _plan: tuple[_FieldPlan, ...] = field(init=False, repr=False, compare=False)
    """Per field, most important first (the order of a row's warnings): what to check."""
    _by_pattern: dict[int, float] = field(init=False, repr=False, compare=False)
    """Completeness by pattern of blank fields (`_FieldPlan.bit`), filled on use."""
    _important_bits: int = field(init=False, repr=False, compare=False)
    _rank: dict[str, int] = field(init=False, repr=False, compare=False)
    """Each field's place in the plan (the order of a row's warnings)."""
    _same_spec: dict[int, tuple[FeatureSpec, bool]] = field(init=False, repr=False, compare=False)
    """`assess_as`, once per other spec: that spec (held, so its id stays its own) and
    whether it equals this one."""

    def __post_init__(self) -> None:
        features = self.spec.features
        sources = self.spec.sources
        plan = []
        for source in sorted(sources, key=lambda s: -self.weights.get(s, 0.0)):
            idx = tuple(j for j, f in enumerate(features) if f.source == source)
            weight = self.weights.get(source, 0.0)
            plan.append(
                _FieldPlan(
                    source,
                    1 << sources.index(source),
                    idx,
                    weight,
                    {
                        "code": MISSING_IMPORTANT,
                        "field": source,
                        "detail": f"{source} was not given: it carries {weight:.0%} of the "
                        "model's importance",
                    }
                    if source in self.important
                    else None,
                    tuple(
                        (j, features[j])
                        for j in idx
                        if features[j].kind == "numeric" and features[j].lo is not None
                    ),
                    # an open category (make) has no unseen values: see the module's docstring
                    tuple(
                        (j, features[j])
                        for j in idx
                        if features[j].kind == "categorical" and OTHER not in features[j].codes
                    ),
                )
            )
        object.__setattr__(self, "_plan", tuple(plan))
        object.__setattr__(self, "_by_pattern", {})
        object.__setattr__(self, "_important_bits", sum(p.bit for p in plan if p.missing))
        object.__setattr__(self, "_rank", {p.source: k for k, p in enumerate(plan)})
        object.__setattr__(self, "_same_spec", {})

    @classmethod
    def from_card(cls, spec: FeatureSpec, card: Card) -> InputCheck:
        weights = importance_weights(spec, card.importance)
        if weights is None:  # an older card: every field weighs the same, none is "important"
            sources = spec.sources
            return cls(spec, {s: 1 / len(sources) for s in sources} if sources else {}, ())
        return cls(spec, weights, tuple(important_fields(weights)))

    def assess(
        self, columns: Mapping[str, Sequence[Any]], encoded: Sequence[Sequence[float]], n: int
    ) -> tuple[list[float], list[list[WarningDict]]]:
        """Completeness and warnings of `n` reports given column-wise (the batch path):
        `columns` maps each report field the spec reads to its values (as `AccidentReport`
        holds them, None for blank); `encoded` is `spec.encode_columns(columns)`."""
        # Per field, most important first: one filter pass finds the rows it leaves blank to
        # the model (few, in real traffic); its warnings and the rows' completeness come from
        # those rows alone. (A blank row is one whose inputs from the field are all NaN: a
        # missing value, or a closed category's unseen one; a range check needs one more pass.)
        warnings: list[list[WarningDict]] = [[] for _ in range(n)]
        blank_in: dict[int, int] = {}  # row -> the bits of its blank fields
        for source, bit, idx, _, missing, ranges, closed in self._plan:
            raw = columns[source]
            blank_by_input = {j: [i for i, x in enumerate(encoded[j]) if x != x] for j in idx}
            blank = blank_by_input[idx[0]]
            if len(idx) > 1:
                common = set(blank).intersection(*(blank_by_input[j] for j in idx[1:]))
                blank = [i for i in blank if i in common]
            for i in blank:
                blank_in[i] = blank_in.get(i, 0) | bit
            for j, feature in ranges:
                lo, hi, cap = feature.lo, feature.hi, feature.cap
                column = encoded[j]
                if cap is None:
                    outside = [i for i, x in enumerate(column) if x < lo or x > hi]  # type: ignore[operator]
                    numbers = [column[i] for i in outside]
                else:  # the encoded value is capped: check the rows that may be, uncapped
                    maybe = [i for i, x in enumerate(column) if x < lo or x > hi or x >= cap]  # type: ignore[operator]
                    found = zip(maybe, feature.numbers([raw[i] for i in maybe]), strict=True)
                    outside, numbers = [], []
                    for i, x in found:
                        if x < lo or x > hi:  # type: ignore[operator]
                            outside.append(i)
                            numbers.append(x)
                for i, x in zip(outside, numbers, strict=True):
                    warnings[i].append(_out_of_range(feature, x))
            for j, feature in closed:  # an unseen value is scored as blank
                codes = feature.codes
                for i in blank_by_input[j]:
                    if raw[i] is not None and raw[i] == raw[i] and raw[i] not in codes:
                        warnings[i].append(_unseen(feature, raw[i]))
            if missing is not None:  # a missing value is scored as blank
                for i in blank:
                    if raw[i] is None or raw[i] != raw[i]:  # None or NaN
                        warnings[i].append(dict(missing))
        return self._completeness(blank_in, n), warnings

    def _completeness(self, blank_in: Mapping[int, int], n: int) -> list[float]:
        """Each row's completeness from its pattern of blank fields (none: 0)."""
        full = self.completeness_of(0)
        out = [full] * n
        for i, pattern in blank_in.items():
            out[i] = self.completeness_of(pattern)
        return out

    def completeness_of(self, pattern: int) -> float:
        """The completeness of a report whose blank fields are the bits of `pattern` (a
        field's bit: 1 << its place in the spec's sources): the weights of the other fields,
        added in the plan's order, once per pattern."""
        found = self._by_pattern.get(pattern)
        if found is None:
            total = 0.0
            for plan in self._plan:
                if plan.weight and not pattern & plan.bit:
                    total = total + plan.weight
            found = self._by_pattern[pattern] = min(round(total, DIGITS), 1.0)
        return found

    def assess_rows(
        self, fields: Sequence[Mapping[str, Any]], rows: Sequence[Sequence[float]]
    ) -> tuple[list[float], list[list[WarningDict]]]:
        """`assess` of reports given row by row (the single-report path; the same rules,
        without building columns): their fields (as `AccidentReport.fields()` gives them) and
        encoded rows (`spec.encode`)."""
        checks = self.check_rows(fields, rows)
        return [self.completeness_of(c[0]) for c in checks], [c[2] for c in checks]

    def check_rows(
        self, fields: Sequence[Mapping[str, Any]], rows: Sequence[Sequence[float]]
    ) -> list[RowCheck]:
        """Per report: the bits of its blank fields (`completeness_of` weighs them), of its
        missing ones, and its warnings. Another model reading the same spec answers from
        them (`assess_as`)."""
        out: list[RowCheck] = []
        for values, row in zip(fields, rows, strict=True):
            blank = missing_bits = 0
            warnings: list[WarningDict] = []
            for source, bit, idx, _, missing, ranges, closed in self._plan:
                for j in idx:
                    if row[j] == row[j]:
                        break
                else:  # every input from the field is blank
                    blank |= bit
                value = values.get(source)
                if value is None or value != value:  # None or NaN
                    missing_bits |= bit
                    if missing is not None:
                        warnings.append(dict(missing))
                    continue
                for j, feature in ranges:
                    x = row[j] if feature.cap is None else feature.numbers((value,))[0]
                    if x < feature.lo or x > feature.hi:  # type: ignore[operator]
                        warnings.append(_out_of_range(feature, x))
                for _, feature in closed:
                    if value not in feature.codes:
                        warnings.append(_unseen(feature, value))
            out.append((blank, missing_bits, warnings))
        return out

    def assess_as(
        self, other: InputCheck, checks: Sequence[RowCheck]
    ) -> tuple[list[float], list[list[WarningDict]]]:
        """`assess_rows` for this model from another model's `check_rows` of the same
        reports (a shadow's, from the served model's). Both read the same spec: the same
        fields are blank or missing, and the range and category warnings are the same; the
        weights, the important fields and the order (by importance) are this model's."""
        seen = self._same_spec.get(id(other.spec))
        if seen is None or seen[0] is not other.spec:  # comparing specs takes microseconds
            seen = self._same_spec[id(other.spec)] = (other.spec, other.spec == self.spec)
        if not seen[1]:
            raise ValueError("assess_as needs two models reading the same feature spec")
        important, rank = self._important_bits, self._rank
        completeness: list[float] = []
        warnings: list[list[WarningDict]] = []
        for blank, missing_bits, theirs in checks:
            completeness.append(self.completeness_of(blank))
            if not theirs and not missing_bits & important:
                warnings.append([])
                continue
            kept = [w for w in theirs if w["code"] != MISSING_IMPORTANT]
            kept += [dict(p.missing) for p in self._plan if p.missing and missing_bits & p.bit]
            if len(kept) > 1:  # stable: a field's own warnings keep their order
                kept.sort(key=lambda w: rank[w["field"]])
            warnings.append(kept)
        return completeness, warnings


RowCheck = tuple[int, int, list[WarningDict]]
"""One report's check before weights: the bits of its blank fields (`_FieldPlan.bit`), of
its missing fields, and its warnings."""


class _FieldPlan(NamedTuple):
    source: str
    bit: int
    """The field's bit in a pattern: 1 << its place in the spec's sources (the same bit in
    every model reading the spec, whatever the order of its plan)."""
    idx: tuple[int, ...]
    """The features read from this field."""
    weight: float
    missing: WarningDict | None
    """The warning when blank (a high-importance field), else None."""
    ranges: tuple[tuple[int, Feature], ...]
    """Numeric features with a training range."""
    closed: tuple[tuple[int, Feature], ...]
    """Closed categorical features."""


def _out_of_range(feature: Feature, x: float) -> WarningDict:
    lo, hi = float(feature.lo or 0.0), float(feature.hi or 0.0)
    what = (
        f"{feature.source} {feature.derive} {_number(x)}"
        if feature.derive
        else f"{feature.source} {_number(x)}"
    )
    side = "below" if x < lo else "above"
    scored = (
        f"; scored as {_number(feature.cap)}" if feature.cap is not None and x > feature.cap else ""
    )
    return {
        "code": OUT_OF_RANGE,
        "field": feature.source,
        "detail": f"{what} is {side} the training range {_number(lo)} to {_number(hi)}{scored}",
    }


def _unseen(feature: Feature, value: Any) -> WarningDict:
    return {
        "code": UNSEEN_CATEGORY,
        "field": feature.source,
        "detail": f"{feature.source} {value!r} was not seen in training; scored as blank",
    }
