"""CloudWatch Logs metric filters evaluated on a JSON log event, for the subset of the filter
pattern syntax the stack's metric filters use: what the local stack's log router applies to
each function's lines (`avsev_tools.local.logs`) and what the records extension counts into
its EMF documents (`avsev.serving.records_extension`), so both count what the template's
`AWS::Logs::MetricFilter`s count
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html,
https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_MetricTransformation.html)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class FilterPatternError(ValueError):
    """A metric filter pattern outside the subset the local stack evaluates."""


PATTERN_SUBSET = (
    'a JSON pattern `{ TERM && TERM ... }`, each TERM one of `$.field = "text"` (no wildcard), '
    "`$.field = *`, `$.field IS TRUE`, `$.field IS FALSE`"
)
_SELECTOR = r"\$(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
_TERM = re.compile(
    rf'^(?P<sel>{_SELECTOR})\s*(?:=\s*(?:"(?P<text>[^"*\\]*)"|(?P<any>\*))|\s+IS\s+(?P<bool>TRUE|FALSE))$'
)
_MISSING = object()


def _field(doc: Any, selector: str) -> Any:
    """`$.a.b` of a JSON object; `_MISSING` when it has none."""
    for key in selector.split(".")[1:]:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


@dataclass(frozen=True)
class Term:
    selector: str
    equals: str | None = None
    """The string the field equals."""
    exists: bool = False
    """`= *`: the field is there, whatever its value."""
    boolean: bool | None = None
    """`IS TRUE` / `IS FALSE`: the field is that JSON boolean."""

    def matches(self, doc: dict[str, Any]) -> bool:
        value = _field(doc, self.selector)
        if value is _MISSING:
            return False
        if self.exists:
            return True
        if self.boolean is not None:
            return value is self.boolean
        return isinstance(value, str) and value == self.equals


def parse_pattern(pattern: str) -> tuple[Term, ...]:
    """The terms of a JSON filter pattern joined by && (what the stack's metric filters use,
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html: a
    string compared with `=` matches exactly, `= *` matches a field that is present, `IS
    TRUE`/`IS FALSE` a JSON boolean). Anything else (||, regular expressions, numeric
    comparisons, wildcards in a string, text patterns) is refused rather than guessed."""
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise FilterPatternError(
            f"filter pattern {pattern!r}: not supported locally; use {PATTERN_SUBSET}"
        )
    terms = []
    for part in text[1:-1].split("&&"):
        m = _TERM.match(part.strip())
        if m is None:
            raise FilterPatternError(
                f"filter pattern {pattern!r}: term {part.strip()!r} is not supported locally; "
                f"use {PATTERN_SUBSET}"
            )
        terms.append(
            Term(
                m["sel"],
                equals=m["text"],
                exists=m["any"] is not None,
                boolean=None if m["bool"] is None else m["bool"] == "TRUE",
            )
        )
    return tuple(terms)


MetricPoint = tuple[str, str, str, tuple[tuple[str, str], ...], float]
"""Namespace, metric name, unit, dimensions (name, value), value."""


@dataclass(frozen=True)
class MetricFilter:
    """A log group's metric filter (`AWS::Logs::MetricFilter`), applied to each log event as
    CloudWatch Logs does: a matching JSON event gives one data point, its value a number or
    a field of the event; each dimension's value is a field of the event, and a dimension
    whose field the event lacks is left out
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-logs-metricfilter-dimension.html,
    https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_MetricTransformation.html)."""

    pattern: str
    namespace: str
    name: str
    value: str = "1"
    unit: str = "None"
    dimensions: tuple[tuple[str, str], ...] = ()
    terms: tuple[Term, ...] = ()

    @classmethod
    def from_properties(cls, props: dict[str, Any]) -> MetricFilter:
        """From an AWS::Logs::MetricFilter's properties (its one metric transformation);
        `FilterPatternError` for a pattern outside the local subset."""
        transformations = props.get("MetricTransformations") or []
        if len(transformations) != 1:
            raise FilterPatternError("a metric filter has exactly one metric transformation")
        t = transformations[0]
        pattern = str(props.get("FilterPattern", ""))
        value = str(t.get("MetricValue", "1"))
        if not (re.fullmatch(_SELECTOR, value) or re.fullmatch(r"-?\d+(\.\d+)?", value)):
            raise FilterPatternError(f"metric value {value!r}: a number or a `$.field`")
        dims = tuple((str(d["Key"]), str(d["Value"])) for d in t.get("Dimensions") or [])
        for key, selector in dims:
            if not re.fullmatch(_SELECTOR, selector):
                raise FilterPatternError(f"dimension {key}={selector!r}: a `$.field` of the event")
        return cls(
            pattern=pattern,
            namespace=str(t["MetricNamespace"]),
            name=str(t["MetricName"]),
            value=value,
            unit=str(t.get("Unit", "None")),
            dimensions=dims,
            terms=parse_pattern(pattern),
        )

    def measure(self, doc: dict[str, Any]) -> MetricPoint | None:
        """The data point this log event gives, or None."""
        if not all(term.matches(doc) for term in self.terms):
            return None
        if self.value.startswith("$"):
            raw = _field(doc, self.value)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return None
            value = float(raw)
        else:
            value = float(self.value)
        dims = tuple(
            (key, str(found))
            for key, selector in self.dimensions
            if (found := _field(doc, selector)) is not _MISSING and found is not None
        )
        return (self.namespace, self.name, self.unit, dims, value)
