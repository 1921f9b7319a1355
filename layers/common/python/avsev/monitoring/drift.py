"""Drift of recent accident reports against a bundle's reference profile, from the counts of
a window's rollups (see avsev.monitoring.rollups): no record is held in memory.

Aware of sample size, as Evidently does, and of the reference being a sample too: with at
most `SMALL_SAMPLE` current rows, two-sample tests at level `ALPHA` — Kolmogorov-Smirnov
against the reference's value sample for numbers, a chi-square test of homogeneity between
the reference's counts and the window's for categories and for numbers with at most
`FEW_DISTINCT` distinct values (KS is not valid with ties), with sparse cells pooled
(`pooled_cells`); above, normalised Wasserstein distance for numbers and Jensen-Shannon
distance for categories (and numbers with few distinct values), drift when ≥ 0.1. The
reference's value sample is large enough (avsev.monitoring.profile.SAMPLE_SIZE) that its own
sampling error keeps an unchanged window's distance well below 0.1. PSI is always reported;
missing-rate changes and unseen categories are counted and never break a test.

The daily alert is on the dataset, not on one feature: dataset drift (at least half of the
features drift, or the drifted ones carry ≥ 40% of the model's importance) or concept drift
(weighted F1 on labelled rows significantly below the card's). Per-feature and prediction
drift are shown in the report but do not alert alone: with a dozen features each tested at
5%, "any feature drifted" would alert on about a third of unchanged days. bench/stats.py
measures every rate (docs/statistics.md has the tables).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from avsev import clock
from avsev.monitoring.ab import bootstrap_f1, window_text
from avsev.monitoring.metrics import weighted_f1_of
from avsev.monitoring.reports import (
    ConceptDrift,
    DriftReport,
    FeatureDrift,
    MissingDrift,
    ModelRef,
    PredictionDrift,
)
from avsev.monitoring.rollup_types import DriftRollup
from avsev.monitoring.rollups import SMALL_SAMPLE
from avsev.serving.card import Card
from avsev.serving.features import OTHER
from avsev.serving.schema import SEVERITIES

ALPHA = 0.025
"""The level of every per-feature test (values, missing share) and of the prediction-drift
test. What is promised is at most 5% false alarms per feature on unchanged data, checked by
simulation (bench/stats.py) over at least 1,000 windows per size with the Wilson 95% upper
bound at most 6%. A test of exact level 5% measures about 5% there, with an upper bound near
6.4%: it cannot pass that check. At 2.5%, an exact test measures about 2.5% (upper bound
about 3.6%), which leaves room for the tests that run a little above their level (the
chi-square approximation on sparse tables, KS p-values) and for the highest of the thirty
or so rates measured; the dataset rule built on these tests keeps its meaning."""
FEW_DISTINCT = 10
"""A number with at most this many distinct values in the reference sample is compared as
counts (chi-square, Jensen-Shannon): KS and Wasserstein treat it as continuous, and KS is not
valid with ties. Counts such as number_of_engines (six values, two of them in a handful of
rows) stay below it however large the reference sample."""
DISTANCE_THRESHOLD = 0.1
DATASET_DRIFT_SHARE = 0.5
MISSING_RATE_CHANGE = 0.1
MISSING_DRIFT_MIN = 0.1
"""A missing-share change marks a feature drifted when significant and at least this large."""
MATERIAL_PSI = 0.1
WEIGHTED_DATASET_DRIFT = 0.4
"""Dataset drift also when the drifted features carry this share of the model's importance."""
CONCEPT_DRIFT_DROP = 0.05
MIN_ROWS = 30
MIN_LABELLED = 30
EPS = 1e-4


def psi(
    ref_shares: Sequence[float] | np.ndarray, cur_shares: Sequence[float] | np.ndarray
) -> float:
    """Population stability index over matching bins."""
    r = np.clip(np.asarray(ref_shares, dtype=float), EPS, None)
    c = np.clip(np.asarray(cur_shares, dtype=float), EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(counts: Mapping[str, float], keys: Sequence[str]) -> np.ndarray:
    total = sum(counts.get(k, 0) for k in keys)
    return np.array([counts.get(k, 0) / total if total else 0.0 for k in keys])


MIN_EXPECTED = 5.0
"""Cochran's rule: a cell whose expected count (in either sample) is under this is pooled."""
POOLED = "(pooled)"


def pooled_cells(
    ref: Mapping[str, float], cur: Mapping[str, float]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cells for a chi-square test of homogeneity: every cell whose expected count under the
    pooled shares is under MIN_EXPECTED in either sample goes into one `(pooled)` cell; if
    that cell is itself too small it absorbs the smallest remaining cell until it is not (or
    one cell is left). Returns the cell names and the two rows of counts."""
    keys = sorted(set(ref) | set(cur), key=lambda k: -(ref.get(k, 0) + cur.get(k, 0)))
    r = np.array([float(ref.get(k, 0)) for k in keys])
    c = np.array([float(cur.get(k, 0)) for k in keys])
    n_r, n_c = r.sum(), c.sum()
    if n_r <= 0 or n_c <= 0:
        return keys, r, c
    share = (r + c) / (n_r + n_c)
    small = np.minimum(share * n_r, share * n_c) < MIN_EXPECTED
    names = [k for k, s_ in zip(keys, small, strict=True) if not s_]
    rows_r, rows_c = list(r[~small]), list(c[~small])
    pool_r, pool_c = float(r[small].sum()), float(c[small].sum())

    def too_small(pr: float, pc: float) -> bool:
        sh = (pr + pc) / (n_r + n_c)
        return min(sh * n_r, sh * n_c) < MIN_EXPECTED

    while (pool_r or pool_c) and too_small(pool_r, pool_c) and names:
        pool_r, pool_c = pool_r + rows_r.pop(), pool_c + rows_c.pop()
        names.pop()
    if pool_r or pool_c:
        names.append(POOLED)
        rows_r.append(pool_r)
        rows_c.append(pool_c)
    return names, np.array(rows_r), np.array(rows_c)


def homogeneity_test(ref: Mapping[str, float], cur: Mapping[str, float]) -> dict[str, Any]:
    """Chi-square test that two samples of counts share one distribution (pooled cells)."""
    names, r, c = pooled_cells(ref, cur)
    if len(names) < 2:
        return _tested("chi_square_two_sample", 0.0, 1.0) | {"cells": len(names)}
    # Yates's correction on 2 × 2 tables (a field with two values, as weather_condition): the
    # uncorrected test runs above its 5% when one value is rare (simulated: 7% at 300 rows)
    statistic, p, _, _ = stats.chi2_contingency(np.vstack([r, c]), correction=True)
    return _tested("chi_square_two_sample", float(statistic), float(p)) | {"cells": len(names)}


def _tested(test: str, statistic: float, p: float) -> dict[str, Any]:
    """A significance test's result: drift when p < ALPHA."""
    return {
        "test": test,
        "statistic": float(statistic),
        "p_value": float(p),
        "threshold": ALPHA,
        "drift": bool(p < ALPHA),
    }


def _distance(test: str, distance: float) -> dict[str, Any]:
    """A distance's result: drift when it reaches DISTANCE_THRESHOLD."""
    return {
        "test": test,
        "statistic": distance,
        "threshold": DISTANCE_THRESHOLD,
        "drift": distance >= DISTANCE_THRESHOLD,
    }


def _grid_points(agg: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A numeric feature's fine grid as (values, counts)."""
    width = float(agg.get("grid_width", 1.0))
    grid = agg.get("grid", {})
    values = np.array([int(k) * width for k in grid], dtype=float)
    counts = np.array(list(grid.values()), dtype=float)
    return values, counts


def numeric_drift(ref: Mapping[str, Any], agg: Mapping[str, Any]) -> dict[str, Any]:
    """One numeric feature from its window counts: PSI on the reference bins; KS on the
    values themselves at most SMALL_SAMPLE values (a homogeneity test of the value counts at
    most FEW_DISTINCT distinct reference values); above, Jensen-Shannon (at most FEW_DISTINCT
    distinct reference values) or normalised Wasserstein on the fine grid."""
    sample = np.asarray(ref["sample"], dtype=float)
    n_bins = len(ref["bin_shares"])
    n = int(agg["n"])
    cur_bins = np.zeros(n_bins)
    for k, c in agg.get("bins", {}).items():
        cur_bins[min(int(k), n_bins - 1)] += c
    out: dict[str, Any] = {
        "psi": psi(ref["bin_shares"], cur_bins / max(n, 1)),
        "mean_ref": ref["mean"],
        "mean_cur": float(agg["sum"]) / n if n else float("nan"),
    }
    distinct = len(np.unique(sample))
    points, weights = _grid_points(agg)
    if n <= SMALL_SAMPLE:
        values = agg.get("values")
        if values is None or len(values) != n:  # rows kept only on small days: use the grid
            values = np.repeat(points, weights.astype(int))
        current = np.asarray(values, dtype=float)
        if distinct <= FEW_DISTINCT:  # ties: KS is not valid; compare the value counts
            result = homogeneity_test(
                Counter(str(v) for v in sample.tolist()),
                Counter(str(v) for v in current.tolist()),
            )
            result.pop("cells")
            out |= result
        else:
            statistic, p = stats.ks_2samp(sample, current)
            out |= _tested("ks", statistic, p)
    elif distinct <= FEW_DISTINCT:
        keys = sorted(set(sample.tolist()) | set(points.tolist()))
        r = _shares(Counter(sample.tolist()), keys)
        c = _shares(dict(zip(points.tolist(), weights.tolist(), strict=True)), keys)
        out |= _distance("jensen_shannon", float(jensenshannon(r, c, base=2)))
    else:
        scale = float(np.std(sample)) or 1.0
        distance = float(stats.wasserstein_distance(sample, points, v_weights=weights) / scale)
        out |= _distance("wasserstein_normed", distance)
    return out


def categorical_drift(ref: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    """One categorical feature from its window counts (chi-square at most SMALL_SAMPLE
    values, Jensen-Shannon distance above)."""
    ref_shares: Mapping[str, float] = ref["shares"]
    counts = {k: v for k, v in counts.items() if v}
    unseen = {c: n for c, n in counts.items() if c not in ref_shares}
    keys = list(ref_shares) + sorted(unseen)
    n_ref = max(int(ref.get("n", 0)), 1)
    # Reference counts, smoothed so a category unseen in training has a small, finite share.
    ref_counts = np.array([ref_shares.get(k, 0.0) * n_ref + 0.5 for k in keys])
    r = ref_counts / ref_counts.sum()
    c = _shares(counts, keys)
    out: dict[str, Any] = {
        "psi": psi(r, c),
        "unseen_categories": unseen,
        "shares_ref": {k: round(float(v), 4) for k, v in zip(keys, r, strict=True)},
        "shares_cur": {k: round(float(v), 4) for k, v in zip(keys, c, strict=True)},
    }
    if sum(counts.values()) <= SMALL_SAMPLE:
        reference_counts = {k: ref_shares.get(k, 0.0) * n_ref for k in keys}
        result = homogeneity_test(reference_counts, counts)
        result.pop("cells")
        out |= result
    else:
        distance = float(jensenshannon(r, c, base=2))
        out |= _distance("jensen_shannon", distance)
    return out


def _score(result: Mapping[str, Any]) -> float:
    """One drift score per feature for dashboards: the distance, or 1 - p for a test."""
    if "p_value" in result:
        return 1.0 - float(result["p_value"])
    return float(result.get("statistic", 0.0))


@dataclass
class DriftCounts:
    """The sum of a window's drift rollups for one model version."""

    rows: int = 0
    predicted: dict[str, int] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    confusion: np.ndarray = field(
        default_factory=lambda: np.zeros((len(SEVERITIES), len(SEVERITIES)), dtype=np.int64)
    )
    """Labelled served predictions of this version (rows actual, columns predicted)."""


def drift_counts(
    rollups: Sequence[DriftRollup], confusion: np.ndarray | None = None
) -> DriftCounts:
    """Sum the drift rollups of a window (see avsev.monitoring.rollups.drift_rollup)."""
    out = DriftCounts()
    if confusion is not None:
        out.confusion = confusion
    keep_values = sum(r.rows for r in rollups) <= SMALL_SAMPLE
    for r in rollups:
        out.rows += r.rows
        for k, v in r.predicted.items():
            out.predicted[k] = out.predicted.get(k, 0) + v
        for name, f in r.fields.items():
            agg = out.fields.setdefault(
                name, {"missing": 0, "bins": {}, "grid": {}, "counts": {}, "sum": 0.0, "n": 0}
            )
            agg["missing"] += f.missing
            agg["sum"] += float(f.sum)
            agg["n"] += f.n
            if f.grid_width is not None:
                agg["grid_width"] = f.grid_width
            for part, part_counts in (("bins", f.bins), ("grid", f.grid), ("counts", f.counts)):
                for k, v in part_counts.items():
                    agg[part][k] = agg[part].get(k, 0) + v
            if keep_values:
                values = (r.sample or {}).get(name)
                if values is not None:
                    agg.setdefault("values", []).extend(values)
    return out


def feature_drift(
    reference: Mapping[str, Any],
    counts: DriftCounts,
    *,
    open_categories: Mapping[str, Sequence[str]],
) -> dict[str, FeatureDrift]:
    """Per-field results over the profile's fields."""
    results: dict[str, FeatureDrift] = {}
    for name, ref in reference["fields"].items():
        agg = counts.fields.get(name) or {
            "missing": 0,
            "bins": {},
            "grid": {},
            "counts": {},
            "sum": 0.0,
            "n": 0,
        }
        raw_unseen: dict[str, int] = {}
        if ref["kind"] == "numeric":
            present = int(agg["n"])
        else:
            categories: dict[str, int] = dict(agg["counts"])
            if name in open_categories:
                known = set(open_categories[name])
                raw_unseen = {k: v for k, v in categories.items() if k not in known}
                bucketed: dict[str, int] = {}
                for k, v in categories.items():
                    key = k if k in known else OTHER
                    bucketed[key] = bucketed.get(key, 0) + v
                categories = bucketed
            present = sum(categories.values())
        missing_rate = int(agg["missing"]) / max(counts.rows, 1)
        missing = missing_drift(
            float(ref["missing_rate"]),
            int(reference.get("rows", 0)),
            int(agg["missing"]),
            counts.rows,
        )
        base: dict[str, Any] = {
            "kind": ref["kind"],
            "rows": present,
            "missing_rate_ref": round(float(ref["missing_rate"]), 4),
            "missing_rate_cur": round(missing_rate, 4),
            "missing_rate_changed": abs(missing_rate - ref["missing_rate"]) > MISSING_RATE_CHANGE,
            "missing_drift": missing,
        }
        if present < MIN_ROWS:
            results[name] = FeatureDrift(
                **base,
                test="skipped",
                value_drift=False,
                drift=missing.drift,
                material=missing.drift,
                reason=f"fewer than {MIN_ROWS} values",
            )
            continue
        if ref["kind"] == "numeric":
            result = numeric_drift(ref, agg)
        else:
            result = categorical_drift(ref, categories)
            if name in open_categories:
                top = sorted(raw_unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
                result["unseen_categories"] = dict(top)
                result["unseen_in_other_bucket"] = int(sum(raw_unseen.values()))
        value = bool(result["drift"])
        results[name] = FeatureDrift(
            **(
                base
                | result
                | {
                    "value_drift": value,
                    "drift": value or missing.drift,
                    # material for the importance-weighted share: a missing-share change, a
                    # distance over its threshold, or a significant test with PSI ≥ 0.1
                    "material": missing.drift
                    or (value and ("p_value" not in result or result["psi"] >= MATERIAL_PSI)),
                    "score": round(_score(result), 6),
                }
            )
        )
    return results


def missing_drift(ref_rate: float, ref_rows: int, cur_missing: int, cur_rows: int) -> MissingDrift:
    """A change in a field's missing share: a two-proportion z-test against the reference
    (at ALPHA, as the other tests), drift when significant and at least MISSING_DRIFT_MIN."""
    if cur_rows < MIN_ROWS or ref_rows < MIN_ROWS:
        return MissingDrift(test="skipped", drift=False, reason=f"fewer than {MIN_ROWS} rows")
    cur_rate = cur_missing / cur_rows
    pooled = (ref_rate * ref_rows + cur_missing) / (ref_rows + cur_rows)
    se = math.sqrt(pooled * (1 - pooled) * (1 / ref_rows + 1 / cur_rows))
    z = (cur_rate - ref_rate) / se if se > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0
    change = cur_rate - ref_rate
    return MissingDrift(
        test="two_proportion_z",
        statistic=z,
        p_value=p,
        change=round(change, 4),
        minimum_change=MISSING_DRIFT_MIN,
        drift=bool(p < ALPHA and abs(change) >= MISSING_DRIFT_MIN),
    )


def _importance(card: Card, fields: Sequence[str]) -> dict[str, float] | None:
    """Each profiled field's share of the model's mean |SHAP| (the card's `importance`)."""
    raw = card.importance
    if not raw:
        return None
    values = {f: float(raw.get(f, 0.0)) for f in fields}
    total = sum(values.values())
    return {f: v / total for f, v in values.items()} if total > 0 else None


def prediction_drift(
    reference_mix: Mapping[str, float], predicted: Mapping[str, int], n_ref: int
) -> PredictionDrift:
    if sum(predicted.values()) < MIN_ROWS:
        return PredictionDrift(
            test="skipped", drift=False, reason=f"fewer than {MIN_ROWS} predictions"
        )
    ref = {"shares": dict(reference_mix), "n": n_ref}
    return PredictionDrift(**categorical_drift(ref, predicted))


def concept_drift(reference_f1: float | None, confusion: np.ndarray) -> ConceptDrift:
    """Weighted F1 on labelled recent records more than 5% (relative) below the card's, beyond
    its sampling error: drift when the whole bootstrap 95% interval is below that floor."""
    labelled = int(confusion.sum())
    if reference_f1 is None or labelled < MIN_LABELLED:
        return ConceptDrift(
            drift=False, status="insufficient_data", labelled=labelled, needed=MIN_LABELLED
        )
    f1 = weighted_f1_of(confusion)
    floor = reference_f1 * (1 - CONCEPT_DRIFT_DROP)
    draws = bootstrap_f1(confusion, np.random.default_rng(0), weighted_f1_of)
    low, high = float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))
    return ConceptDrift(
        drift=bool(high < floor),
        weighted_f1_ci95=(low, high),
        status="checked",
        labelled=labelled,
        weighted_f1=f1,
        reference_weighted_f1=reference_f1,
        floor=floor,
    )


def drift_report(
    card: Card,
    counts: DriftCounts,
    *,
    dataset_drift_share: float = DATASET_DRIFT_SHARE,
    window: Mapping[str, Any] | None = None,
) -> DriftReport:
    """The drift report of a window's counts against a card."""
    reference = card.reference().to_dict()
    open_categories = {
        f.source: [c for c in f.categories or [] if c != OTHER]
        for f in card.feature_spec.features
        if OTHER in (f.categories or [])
    }
    base: dict[str, Any] = {
        "generated_at": clock.now().isoformat(timespec="seconds"),
        "model": ModelRef(name=card.name, version=card.version),
        "window": dict(window or {}),
        "rows": counts.rows,
        "method": (
            f"≤ {SMALL_SAMPLE} rows: two-sample KS (numbers) and chi-square (categories, sparse cells pooled) at {1 - ALPHA:.1%} confidence; "
            f"above: normalised Wasserstein and Jensen-Shannon distance ≥ {DISTANCE_THRESHOLD}; PSI always"
        ),
    }
    if counts.rows < MIN_ROWS:
        return DriftReport(
            **base,
            status="insufficient_data",
            dataset_drift=False,
            drift_found=False,
            reason=f"{counts.rows} rows, at least {MIN_ROWS} needed",
        )
    features = feature_drift(reference, counts, open_categories=open_categories)
    checked = [n for n, r in features.items() if r.checked]
    drifted = [n for n in checked if features[n].drift]
    share = len(drifted) / len(checked) if checked else 0.0
    importance = _importance(card, list(features))
    weighted = (
        sum(importance[n] for n in checked if features[n].material)
        / max(sum(importance[n] for n in checked), 1e-12)
        if importance
        else None
    )
    for name, w in (importance or {}).items():
        features[name].importance = round(w, 4)
    pred = prediction_drift(card.prediction_mix, counts.predicted, reference.get("rows", 0))
    concept = concept_drift(card.metrics.test.weighted_f1, counts.confusion)
    dataset = bool(checked) and (
        share >= dataset_drift_share
        or (weighted is not None and weighted >= WEIGHTED_DATASET_DRIFT)
    )
    ranked = sorted(features, key=lambda n: -(importance or {}).get(n, 0.0))
    return DriftReport(
        **base,
        status="checked",
        dataset_drift=dataset,
        drift_share=round(share, 4),
        dataset_drift_threshold=dataset_drift_share,
        importance_weighted_drift_share=None if weighted is None else round(weighted, 4),
        importance_weighted_threshold=WEIGHTED_DATASET_DRIFT,
        drifted_features=drifted,
        features={n: features[n] for n in ranked},
        missing_rate_changes=[n for n, r in features.items() if r.missing_rate_changed],
        prediction_drift=pred,
        concept_drift=concept,
        drift_found=dataset or concept.drift,
    )


def markdown(report: DriftReport) -> str:
    lines = [
        f"# Drift report — model {report.model.name} {report.model.version}",
        "",
        f"Rows: {report.rows}. Window: {window_text(report.window)}. Method: {report.method}.",
        "",
    ]
    features = report.features or {}
    if report.status != "checked":
        return "\n".join([*lines, f"**Insufficient data**: {report.reason}", ""])
    lines += [
        f"**Dataset drift: {'YES' if report.dataset_drift else 'no'}** "
        f"({len(report.drifted_features or [])} of {len(features)} features drifted, "
        f"threshold {report.dataset_drift_threshold or 0:.0%}).",
        "",
        "| feature | test | statistic | p-value | PSI | missing ref → now | drift |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in features.items():
        p = f"{r.p_value:.3g}" if r.p_value is not None else ""
        stat = f"{r.statistic:.3f}" if r.statistic is not None else ""
        psi_ = f"{r.psi:.3f}" if r.psi is not None else ""
        lines.append(
            f"| {name} | {r.test} | {stat} | {p} | {psi_} | {r.missing_rate_ref:.1%} → {r.missing_rate_cur:.1%} | "
            f"{'**yes**' if r.drift else 'no'} |"
        )
    if report.missing_rate_changes:
        lines += [
            "",
            f"Missing-rate changes over {MISSING_RATE_CHANGE:.0%}: {', '.join(report.missing_rate_changes)}.",
        ]
    pd_ = report.prediction_drift
    cd = report.concept_drift
    lines += [
        "",
        f"Prediction drift (class mix): {'**yes**' if pd_ and pd_.drift else 'no'} ({pd_.test if pd_ else None}).",
        f"Concept drift: {'**yes**' if cd and cd.drift else 'no'} ({cd.status if cd else None}"
        + (
            f", weighted F1 {cd.weighted_f1:.3f} vs reference {cd.reference_weighted_f1:.3f}"
            if cd and cd.weighted_f1 is not None and cd.reference_weighted_f1 is not None
            else ""
        )
        + ").",
        *_estimate_line(report),
        "",
    ]
    return "\n".join(lines)


_VERDICT_WORDS = {
    "trusted": "trusted",
    "untrusted": "**not trusted**",
    "not_enough_labels": "not yet checked",
    "no_labels": "unchecked",
}


def _estimate_line(report: DriftReport) -> list[str]:
    """The label-free accuracy estimate and what its check on labelled rows says."""
    estimate = report.performance_without_labels
    if estimate is None or estimate.expected_accuracy is None:
        return []
    check = estimate.calibration_check
    line = f"Accuracy without labels: {estimate.expected_accuracy:.3f} expected"
    if estimate.recalibrated and estimate.raw_expected_accuracy is not None:
        line += (
            f" (recalibrated on the validation years; the served probabilities' mean top "
            f"probability is {estimate.raw_expected_accuracy:.3f})"
        )
    if check is not None:
        line += f", {_VERDICT_WORDS[check.verdict]}"
        if check.why_not:
            line += f" ({'; '.join(check.why_not)})"
    return [line + "."]
