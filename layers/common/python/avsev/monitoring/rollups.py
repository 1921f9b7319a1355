"""Rollups: small per-day aggregates of the record tables, computed in SQL, kept in S3.

The reports never read records: they sum the rollups of their window. A day's rollups are
computed by one query each (Athena in AWS, DuckDB locally; the text is written once, in
Trino's dialect, here):

- `served`: per model version, served/shadow, predicted class, latency bin and hour of the
  prediction: counts (requests, class mix, latency quantiles and the latency test);
- `labels`: per model version, predicted and actual class and hour of the prediction: counts
  of served predictions whose event has an outcome (the latest per `ev_id` by
  `LATEST_OUTCOME_ORDER`: corrections win), and the paired served-vs-shadow counts for McNemar;
- `drift`: for the serving card's version, per feature the counts on the card's reference
  bins and categories, a fine value grid for distances, missing counts, sums, the predicted
  class mix, and the rows themselves while the day has at most `SMALL_SAMPLE` of them.

Which days are (re)computed, and so how often a record is scanned: a day's partition holds
records by Firehose's arrival day, so once the day is over it never changes. `served` and
`drift` are computed on every run while their day is today, once more after it ends, and
never again. `labels` also depend on outcomes that arrive later: they are recomputed on
every run for today and yesterday, and once a day for older days up to `LABEL_HORIZON_DAYS`.
An hourly schedule therefore scans a prediction at most 24 + 1 times for `served` and
`drift` and 48 + `LABEL_HORIZON_DAYS` times for `labels` — however long the report windows
are and however often they are read — and an outcome arriving up to `LABEL_HORIZON_DAYS`
after its prediction counts.

Duplicates (Firehose delivers at least once) are dropped per day partition by
(request, event, served/shadow, version).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from avsev.constants import PARITY_CHECK_REQUESTS, ROLLUPS_PREFIX
from avsev.monitoring.query import Engine
from avsev.monitoring.rollup_types import (
    PROBABILITY_SUMS,
    DriftRollup,
    FieldCounts,
    LabelRow,
    LabelsRollup,
    R,
    RollupError,
    ServedRollup,
    ServedRow,
    Stamped,
    parse_rollup,
)
from avsev.monitoring.tables import SCHEMA_VERSION_SUPPORTED
from avsev.serving.schema import SEVERITIES

LABEL_HORIZON_DAYS = 30
"""Outcomes arriving up to this many days after their prediction still count."""
LATENCY_BINS_PER_E = 100
"""Latency histogram: bins 1% wide (log scale); quantiles are within ±0.5%."""
SMALL_SAMPLE = 1000
"""A day with at most this many rows keeps them all (for the exact small-sample tests)."""
GRID_BINS = 512
"""Fine value grid of a numeric feature for distances; integer features are kept exactly."""
EXACT_INTEGER_SPAN = 4096


def _day(day: dt.date) -> str:
    return day.isoformat()


_SQL_KEYWORDS = frozenset({"none"})
_CLASS_COLUMNS = {
    s: f'"{s.lower()}"' if s.lower() in _SQL_KEYWORDS else s.lower() for s in SEVERITIES
}
"""Each class's field in the records' `probabilities` struct (a keyword, as `none`, quoted)."""
CONFIDENCE_BINS = 15
"""Top-label confidence bins for the calibration check (ECE) on labelled rows."""


def _max_probability(pr: str) -> str:
    return "greatest(" + ", ".join(f"{pr}.{c}" for c in _CLASS_COLUMNS.values()) + ")"


def _probability_sums(pr: str) -> str:
    """Sums of the served probabilities: per class, of the top one, and of the entropy (for
    the label-free performance estimate)."""
    per_class = [
        f"SUM({pr}.{c}) AS {name}"
        for c, name in zip(_CLASS_COLUMNS.values(), PROBABILITY_SUMS, strict=True)
    ]
    entropy = " + ".join(
        f"(CASE WHEN {pr}.{c} > 0 THEN {pr}.{c} * ln({pr}.{c}) ELSE 0 END)"
        for c in _CLASS_COLUMNS.values()
    )
    return ", ".join(
        [*per_class, f"SUM({_max_probability(pr)}) AS p_max", f"SUM(-({entropy})) AS entropy"]
    )


def served_sql(day: dt.date) -> str:
    latency_bin = (
        f"CAST(floor(ln(greatest(latency_ms, 0.000001)) * {LATENCY_BINS_PER_E}) AS integer)"
    )
    return f"""
WITH p AS (
  SELECT model_version, shadow, schema_version > {SCHEMA_VERSION_SUPPORTED} AS newer_schema,
         arbitrary(predicted) AS predicted, arbitrary(latency_ms) AS latency_ms,
         arbitrary(probabilities) AS pr, min({_HOUR}) AS hour
  FROM predictions
  WHERE dt = '{_day(day)}' AND {_NOT_PARITY}
  GROUP BY request_id, ev_id, shadow, model_version, schema_version > {SCHEMA_VERSION_SUPPORTED}
)
SELECT model_version, shadow, newer_schema, predicted, {latency_bin} AS latency_bin, hour,
       COUNT(*) AS n, {_probability_sums("pr")}
FROM p
GROUP BY model_version, shadow, newer_schema, predicted, {latency_bin}, hour
"""


_HOUR = 'hour("timestamp")'
"""The prediction's hour (UTC): the A/B evidence of a rollout step counts from the hour the
step began (avsev.monitoring.jobs.ab_report_of)."""


_NOT_PARITY = f"request_id NOT LIKE '{PARITY_CHECK_REQUESTS}%'"
"""The rollout controller's parity checks are recorded like any request, and counted nowhere."""


LATEST_OUTCOME_ORDER = 'ORDER BY "timestamp" DESC, request_id DESC, coalesce(seq, -1) DESC'
"""Which outcome of an event is the latest: the one received last (`timestamp`, the service's
clock, never the client's `observed_at`), then the greater `request_id`, then the later in its
request body (`seq`). No two distinct outcome records agree on all three, so Athena and DuckDB
pick the same one; copies of one record (Firehose delivers at least once) agree on every
column. Records written before `seq` existed read it as NULL (ranked as -1): two of them in
one body can still tie."""


def latest_outcomes_sql(first: dt.date, last: dt.date) -> str:
    """`ev_id, actual`: the latest outcome of each event among those arriving from day `first`
    to day `last` (the one rule for it: `LATEST_OUTCOME_ORDER`)."""
    return f"""
  SELECT ev_id, actual
  FROM (
    SELECT ev_id, actual_severity AS actual,
           row_number() OVER (PARTITION BY ev_id {LATEST_OUTCOME_ORDER}) AS latest
    FROM outcomes
    WHERE dt >= '{_day(first)}' AND dt <= '{_day(last)}' AND schema_version <= {SCHEMA_VERSION_SUPPORTED}
  ) AS ranked
  WHERE latest = 1"""


def labels_sql(day: dt.date, until: dt.date) -> str:
    p_actual = (
        "CASE o.actual "
        + " ".join(f"WHEN '{k}' THEN s.pr.{c}" for k, c in _CLASS_COLUMNS.items())
        + " END"
    )
    nll = f"-ln(greatest({p_actual}, 0.000000000000001))"
    conf_bin = f"CAST(floor({_max_probability('s.pr')} * {CONFIDENCE_BINS}) AS integer)"
    return f"""
WITH p AS (
  SELECT request_id, ev_id, shadow, model_version, arbitrary(predicted) AS predicted,
         arbitrary(probabilities) AS pr, min({_HOUR}) AS hour
  FROM predictions
  WHERE dt = '{_day(day)}' AND {_NOT_PARITY} AND schema_version <= {SCHEMA_VERSION_SUPPORTED}
  GROUP BY request_id, ev_id, shadow, model_version
),
o AS ({latest_outcomes_sql(day, until)}
)
SELECT 'served' AS kind, s.model_version AS version, CAST(NULL AS varchar) AS shadow_version,
       s.predicted AS predicted, CAST(NULL AS varchar) AS shadow_predicted, o.actual AS actual,
       {conf_bin} AS conf_bin, COUNT(*) AS n, SUM({nll}) AS nll, SUM(power({nll}, 2)) AS nll2,
       SUM({_max_probability("s.pr")}) AS conf_sum, s.hour AS hour
FROM p s JOIN o ON s.ev_id = o.ev_id
WHERE NOT s.shadow
GROUP BY s.model_version, s.predicted, o.actual, {conf_bin}, s.hour
UNION ALL
SELECT 'shadow' AS kind, s.model_version AS version, w.model_version AS shadow_version,
       s.predicted AS predicted, w.predicted AS shadow_predicted, o.actual AS actual,
       CAST(NULL AS integer) AS conf_bin, COUNT(*) AS n, CAST(NULL AS double) AS nll,
       CAST(NULL AS double) AS nll2, CAST(NULL AS double) AS conf_sum, s.hour AS hour
FROM p s
JOIN p w ON s.request_id = w.request_id AND s.ev_id = w.ev_id AND w.shadow
JOIN o ON s.ev_id = o.ev_id
WHERE NOT s.shadow
GROUP BY s.model_version, w.model_version, s.predicted, w.predicted, o.actual, s.hour
"""


def grid_width(ref: Mapping[str, Any]) -> float:
    """Width of a numeric feature's fine grid: 1 for integer features of modest span (exact),
    else the reference range over GRID_BINS."""
    sample = [float(v) for v in ref.get("sample", [])]
    edges = [float(e) for e in ref.get("bin_edges", [])] or sample or [0.0, 1.0]
    lo, hi = min(edges + sample), max(edges + sample)
    if all(v == int(v) for v in sample) and hi - lo <= EXACT_INTEGER_SPAN:
        return 1.0
    return (hi - lo) / GRID_BINS or 1.0


def _number(value: float) -> str:
    return repr(float(value))


def _bin_expr(x: str, inner_edges: Sequence[float]) -> str:
    """The reference bin of x as numpy's searchsorted(inner, x, side='right') gives it."""
    if not inner_edges:
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE 0 END"
    steps = " + ".join(f"(CASE WHEN {x} >= {_number(e)} THEN 1 ELSE 0 END)" for e in inner_edges)
    return f"CASE WHEN {x} IS NULL THEN NULL ELSE {steps} END"


def drift_keys(reference: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(column alias, field, what) for every grouping key of the drift query."""
    keys: list[tuple[str, str, str]] = []
    for i, (name, ref) in enumerate(reference["fields"].items()):
        if ref["kind"] == "numeric":
            keys += [(f"b{i}", name, "bin"), (f"g{i}", name, "grid")]
        else:
            keys.append((f"c{i}", name, "category"))
    return keys


def _served_rows(day: dt.date, version: str) -> str:
    return f"""
  SELECT request_id, ev_id, arbitrary(features) AS f, arbitrary(predicted) AS predicted
  FROM predictions
  WHERE dt = '{_day(day)}' AND {_NOT_PARITY} AND schema_version <= {SCHEMA_VERSION_SUPPORTED}
    AND NOT shadow AND model_version = '{_quote(version)}'
  GROUP BY request_id, ev_id"""


def _quote(text: str) -> str:
    return text.replace("'", "''")


def drift_sql(reference: Mapping[str, Any], day: dt.date, version: str) -> str:
    fields = reference["fields"]
    select: list[str] = []
    totals: list[str] = []
    for i, (name, ref) in enumerate(fields.items()):
        if ref["kind"] == "numeric":
            x = f"CAST(p.f.{name} AS double)"
            width = grid_width(ref)
            select += [
                f"{_bin_expr(x, [float(e) for e in ref['bin_edges'][1:-1]])} AS b{i}",
                f"CAST(round({x} / {_number(width)}) AS bigint) AS g{i}",
                f"{x} AS x{i}",
            ]
            totals += [f"SUM(x{i}) AS sum{i}", f"COUNT(x{i}) AS n{i}"]
        else:
            select.append(f"p.f.{name} AS c{i}")
    keys = [k for k, _, _ in drift_keys(reference)]
    flags = ", ".join(f"GROUPING({k}) AS is_{k}" for k in [*keys, "predicted"])
    sets = ", ".join(f"({k})" for k in [*keys, "predicted"]) + ", ()"
    return f"""
WITH p AS ({_served_rows(day, version)}
),
k AS (
  SELECT p.predicted AS predicted, {", ".join(select)}
  FROM p
)
SELECT {", ".join(keys)}, predicted, {flags}, COUNT(*) AS n, {", ".join(totals)}
FROM k
GROUP BY GROUPING SETS ({sets})
"""


def drift_sample_sql(reference: Mapping[str, Any], day: dt.date, version: str) -> str:
    columns = ", ".join(
        f"CAST(p.f.{name} AS double) AS {name}"
        for name, ref in reference["fields"].items()
        if ref["kind"] == "numeric"
    )
    return f"""
WITH p AS ({_served_rows(day, version)}
)
SELECT {columns}
FROM p
ORDER BY request_id, ev_id
LIMIT {SMALL_SAMPLE + 1}
"""


def all_queries(reference: Mapping[str, Any], version: str, day: dt.date) -> dict[str, str]:
    """Every query text the rollups send (for the dialect test and the docs)."""
    return {
        "served": served_sql(day),
        "labels": labels_sql(day, day + dt.timedelta(days=1)),
        "drift": drift_sql(reference, day, version),
        "drift_sample": drift_sample_sql(reference, day, version),
    }


# ---------------------------------------------------------------- computing a day's rollups


def served_rollup(engine: Engine, day: dt.date) -> ServedRollup:
    rows = engine.query(served_sql(day))
    return ServedRollup(rows=[ServedRow.parse(r, i) for i, r in enumerate(rows)])


def labels_rollup(engine: Engine, day: dt.date, until: dt.date) -> LabelsRollup:
    rows = engine.query(labels_sql(day, until))
    return LabelsRollup(rows=[LabelRow.parse(r, i) for i, r in enumerate(rows)])


def drift_rollup(
    engine: Engine, reference: Mapping[str, Any], day: dt.date, version: str
) -> DriftRollup:
    """Counts per feature, keyed by field name (not by query alias)."""
    rows = engine.query(drift_sql(reference, day, version))
    names = list(reference["fields"])
    fields = {n: FieldCounts() for n in names}
    predicted: dict[str, int] = {}
    total = 0
    keys = drift_keys(reference)
    for r in rows:
        grouped = [(alias, name, what) for alias, name, what in keys if r[f"is_{alias}"] == 0]
        if r["is_predicted"] == 0:
            predicted[str(r["predicted"])] = int(r["n"])
        elif grouped:
            alias, name, what = grouped[0]
            value = r[alias]
            target = fields[name]
            if value is None:
                if what != "grid":  # one missing count per field
                    fields[name] = dataclasses.replace(target, missing=int(r["n"]))
            elif what == "bin":
                target.bins[str(int(value))] = int(r["n"])
            elif what == "grid":
                target.grid[str(int(value))] = int(r["n"])
            else:
                target.counts[str(value)] = int(r["n"])
        else:  # the grand total
            total = int(r["n"])
            for i, name in enumerate(names):
                if f"sum{i}" in r:
                    fields[name] = dataclasses.replace(
                        fields[name], sum=float(r[f"sum{i}"] or 0.0), n=int(r[f"n{i}"] or 0)
                    )
    for name, ref in reference["fields"].items():
        if ref["kind"] == "numeric":
            fields[name] = dataclasses.replace(fields[name], grid_width=grid_width(ref))
    sample = None
    if 0 < total <= SMALL_SAMPLE:
        kept = engine.query(drift_sample_sql(reference, day, version))
        sample = {
            name: [r[name] for r in kept if r[name] is not None]
            for name, ref in reference["fields"].items()
            if ref["kind"] == "numeric"
        }
    return DriftRollup(rows=total, predicted=predicted, fields=fields, sample=sample)


# ---------------------------------------------------------------- storing and planning


def rollup_key(kind: str, day: dt.date, version: str | None = None) -> str:
    middle = f"{kind}/{_quote_key(version)}/" if version else f"{kind}/"
    return f"{ROLLUPS_PREFIX}{middle}dt={day.isoformat()}.json"


def _quote_key(version: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in version)


def read_rollup(s3: Any, bucket: str, key: str, kind: type[R]) -> R | None:
    """The rollup stored at `key`, or None when there is none. A stored object that is not
    a rollup of `kind` (not JSON, a key missing or unknown, a value not allowed) is refused:
    RollupError naming the object, the key and what is allowed."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RollupError("(document)", f"not JSON: {e}", "a JSON object", key=key) from None
    return parse_rollup(kind, doc, key)


def write_rollup(
    s3: Any, bucket: str, key: str, rollup: ServedRollup | LabelsRollup | DriftRollup
) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(rollup.to_doc(), separators=(",", ":")).encode(),
        ContentType="application/json",
    )


def _computed(existing: Stamped) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(existing.computed_at) if existing.computed_at else None
    except ValueError:
        return None


def needs_served(existing: Stamped | None, day: dt.date, now: dt.datetime) -> bool:
    """A prediction-side rollup is final once computed after its day ended (one without a
    readable `computed_at` is computed again)."""
    computed = None if existing is None else _computed(existing)
    if computed is None:
        return True
    return computed.date() <= day


def needs_labels(existing: Stamped | None, day: dt.date, now: dt.datetime) -> bool:
    """Today and yesterday: every run; older days in the horizon: once a day."""
    computed = None if existing is None else _computed(existing)
    if day > now.date() - dt.timedelta(days=LABEL_HORIZON_DAYS):
        if computed is None or day >= now.date() - dt.timedelta(days=1):
            return True
        return computed.date() < now.date()
    return existing is None


def latency_value(bin_index: int) -> float:
    """The representative latency (ms) of a histogram bin: its geometric middle."""
    return math.exp((bin_index + 0.5) / LATENCY_BINS_PER_E)
