"""Drift of recent accident reports against a bundle's reference profile.

Aware of sample size, as Evidently does: with at most `SMALL_SAMPLE` current rows, a
two-sample Kolmogorov-Smirnov test for numbers and a chi-square goodness-of-fit test for
categories, at 95% confidence; above, normalised Wasserstein distance for numbers and
Jensen-Shannon distance for categories (and numbers with ≤ 5 distinct values), drift when
≥ 0.1. PSI is always reported; missing-rate changes and unseen categories are counted and
never break a test. Dataset drift: at least half of the features drift.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from avsev.monitoring.drift import homogeneity_test
from avsev.monitoring.metrics import weighted_f1
from avsev.monitoring.profile import bucket_open_categories, category_values, numeric_values
from avsev.serving.features import OTHER
from avsev.serving.schema import SEVERITIES
from scipy import stats
from scipy.spatial.distance import jensenshannon

from legacy.ab_inmemory import window_text

SMALL_SAMPLE = 1000
ALPHA = 0.05
DISTANCE_THRESHOLD = 0.1
DATASET_DRIFT_SHARE = 0.5
MISSING_RATE_CHANGE = 0.1
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


def numeric_drift(ref: Mapping[str, Any], current: np.ndarray) -> dict[str, Any]:
    sample = np.asarray(ref["sample"], dtype=float)
    edges = np.asarray(ref["bin_edges"], dtype=float)
    inner = edges[1:-1]
    cur_bins = np.bincount(
        np.searchsorted(inner, current, side="right"), minlength=len(ref["bin_shares"])
    )
    cur_shares = cur_bins / max(len(current), 1)
    out: dict[str, Any] = {
        "psi": psi(ref["bin_shares"], cur_shares),
        "mean_ref": ref["mean"],
        "mean_cur": float(current.mean()),
    }
    distinct = len(np.unique(sample))
    if len(current) <= SMALL_SAMPLE and distinct <= 5:
        # the package's two-sample test of the value counts (KS is not valid with ties)
        result = homogeneity_test(
            Counter(str(v) for v in sample.tolist()), Counter(str(v) for v in current.tolist())
        )
        result.pop("cells")
        out |= result
    elif len(current) <= SMALL_SAMPLE:
        statistic, p = stats.ks_2samp(sample, current)
        out |= _tested("ks", statistic, p)
    elif distinct <= 5:
        values = sorted(set(sample.tolist()) | set(current.tolist()))
        r = _shares(Counter(sample.tolist()), values)
        c = _shares(Counter(current.tolist()), values)
        distance = float(jensenshannon(r, c, base=2))
        out |= _distance("jensen_shannon", distance)
    else:
        scale = float(np.std(sample)) or 1.0
        distance = float(stats.wasserstein_distance(sample, current) / scale)
        out |= _distance("wasserstein_normed", distance)
    return out


def categorical_drift(ref: Mapping[str, Any], current: Sequence[str]) -> dict[str, Any]:
    ref_shares: Mapping[str, float] = ref["shares"]
    counts = Counter(current)
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
    if len(current) <= SMALL_SAMPLE:
        # the package's two-sample test: the oracle checks the counts that go into it
        result = homogeneity_test({k: ref_shares.get(k, 0.0) * n_ref for k in keys}, counts)
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


def feature_drift(
    reference: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    open_categories: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Any]]:
    """Per-field results over the profile's fields."""
    results: dict[str, dict[str, Any]] = {}
    for name, ref in reference["fields"].items():
        if ref["kind"] == "numeric":
            values, missing = numeric_values(rows, name)
        else:
            values, missing = category_values(rows, name)  # type: ignore[assignment]
            if name in open_categories:
                raw_unseen = Counter(v for v in values if v not in set(open_categories[name]))
                values = bucket_open_categories(list(values), open_categories[name])  # type: ignore[assignment]
        missing_rate = missing / max(len(rows), 1)
        base = {
            "kind": ref["kind"],
            "rows": len(values),
            "missing_rate_ref": round(float(ref["missing_rate"]), 4),
            "missing_rate_cur": round(missing_rate, 4),
            "missing_rate_changed": abs(missing_rate - ref["missing_rate"]) > MISSING_RATE_CHANGE,
        }
        if len(values) < MIN_ROWS:
            results[name] = base | {
                "test": "skipped",
                "drift": False,
                "reason": f"fewer than {MIN_ROWS} values",
            }
            continue
        if ref["kind"] == "numeric":
            result = numeric_drift(ref, np.asarray(values, dtype=float))
        else:
            result = categorical_drift(ref, values)  # type: ignore[arg-type]
            if name in open_categories:
                result["unseen_categories"] = dict(raw_unseen.most_common(20))
                result["unseen_in_other_bucket"] = int(sum(raw_unseen.values()))
        results[name] = base | result | {"score": round(_score(result), 6)}
    return results


def prediction_drift(
    reference_mix: Mapping[str, float], predicted: Sequence[str], n_ref: int
) -> dict[str, Any]:
    if len(predicted) < MIN_ROWS:
        return {"test": "skipped", "drift": False, "reason": f"fewer than {MIN_ROWS} predictions"}
    ref = {"shares": dict(reference_mix), "n": n_ref}
    return categorical_drift(ref, list(predicted))


def concept_drift(
    reference_f1: float | None, predicted: Sequence[str], actual: Sequence[str]
) -> dict[str, Any]:
    """Weighted F1 on labelled recent records more than 5% (relative) below the card's."""
    if reference_f1 is None or len(actual) < MIN_LABELLED:
        return {
            "drift": False,
            "status": "insufficient_data",
            "labelled": len(actual),
            "needed": MIN_LABELLED,
        }
    idx = {s: i for i, s in enumerate(SEVERITIES)}
    f1 = weighted_f1([idx[a] for a in actual], [idx[p] for p in predicted])
    floor = reference_f1 * (1 - CONCEPT_DRIFT_DROP)
    return {
        "drift": f1 < floor,
        "status": "checked",
        "labelled": len(actual),
        "weighted_f1": f1,
        "reference_weighted_f1": reference_f1,
        "floor": floor,
    }


def drift_report(
    card: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    predicted: Sequence[str] = (),
    labelled: Sequence[tuple[str, str]] = (),
    dataset_drift_share: float = DATASET_DRIFT_SHARE,
    window: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The drift report of `rows` (report fields, as records carry them) against a card."""
    reference = card["reference_profile"]
    open_categories = {
        f["source"]: [c for c in f.get("categories", []) if c != OTHER]
        for f in card["feature_spec"]["features"]
        if OTHER in f.get("categories", [])
    }
    base = {
        "report": "drift",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {"name": card["name"], "version": card["version"]},
        "window": dict(window or {}),
        "rows": len(rows),
        "method": (
            f"≤ {SMALL_SAMPLE} rows: KS (numbers) and chi-square (categories) at {1 - ALPHA:.0%} confidence; "
            f"above: normalised Wasserstein and Jensen-Shannon distance ≥ {DISTANCE_THRESHOLD}; PSI always"
        ),
    }
    if len(rows) < MIN_ROWS:
        return base | {
            "status": "insufficient_data",
            "dataset_drift": False,
            "drift_found": False,
            "reason": f"{len(rows)} rows, at least {MIN_ROWS} needed",
        }
    features = feature_drift(reference, rows, open_categories=open_categories)
    checked = [n for n, r in features.items() if r.get("test") != "skipped"]
    drifted = [n for n in checked if features[n]["drift"]]
    share = len(drifted) / len(checked) if checked else 0.0
    pred = prediction_drift(card.get("prediction_mix", {}), predicted, reference.get("rows", 0))
    concept = concept_drift(
        card.get("metrics", {}).get("test", {}).get("weighted_f1"),
        [p for p, _ in labelled],
        [a for _, a in labelled],
    )
    dataset = share >= dataset_drift_share and bool(checked)
    return base | {
        "status": "checked",
        "dataset_drift": dataset,
        "drift_share": round(share, 4),
        "dataset_drift_threshold": dataset_drift_share,
        "drifted_features": drifted,
        "features": features,
        "missing_rate_changes": [n for n, r in features.items() if r["missing_rate_changed"]],
        "prediction_drift": pred,
        "concept_drift": concept,
        "drift_found": dataset
        or bool(drifted)
        or bool(pred.get("drift"))
        or bool(concept.get("drift")),
    }


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# Drift report — model {report['model']['name']} {report['model']['version']}",
        "",
        f"Rows: {report['rows']}. Window: {window_text(report.get('window'))}. Method: {report['method']}.",
        "",
    ]
    if report.get("status") != "checked":
        return "\n".join([*lines, f"**Insufficient data**: {report.get('reason')}", ""])
    lines += [
        f"**Dataset drift: {'YES' if report['dataset_drift'] else 'no'}** "
        f"({len(report['drifted_features'])} of {len(report['features'])} features drifted, "
        f"threshold {report['dataset_drift_threshold']:.0%}).",
        "",
        "| feature | test | statistic | p-value | PSI | missing ref → now | drift |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["features"].items():
        p = f"{r['p_value']:.3g}" if "p_value" in r else ""
        stat = f"{r['statistic']:.3f}" if "statistic" in r else ""
        psi_ = f"{r['psi']:.3f}" if "psi" in r else ""
        lines.append(
            f"| {name} | {r['test']} | {stat} | {p} | {psi_} | {r['missing_rate_ref']:.1%} → {r['missing_rate_cur']:.1%} | "
            f"{'**yes**' if r['drift'] else 'no'} |"
        )
    if report["missing_rate_changes"]:
        lines += [
            "",
            f"Missing-rate changes over {MISSING_RATE_CHANGE:.0%}: {', '.join(report['missing_rate_changes'])}.",
        ]
    pd_ = report["prediction_drift"]
    cd = report["concept_drift"]
    lines += [
        "",
        f"Prediction drift (class mix): {'**yes**' if pd_.get('drift') else 'no'} ({pd_.get('test')}).",
        f"Concept drift: {'**yes**' if cd.get('drift') else 'no'} ({cd.get('status')}"
        + (
            f", weighted F1 {cd['weighted_f1']:.3f} vs reference {cd['reference_weighted_f1']:.3f}"
            if "weighted_f1" in cd
            else ""
        )
        + ").",
        "",
    ]
    return "\n".join(lines)
