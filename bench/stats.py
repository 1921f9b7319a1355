"""How often the system's decisions are wrong, by simulation on the real NTSB data.

A model is fit on the oldest years (the held-out fit of `avsev train`, no refit); its
probabilities on the newest years are the pool every simulation draws from. Labels are drawn
from those probabilities, so the model is calibrated by construction, and the truth of every
scenario is known.

- **A/B decisions** (`avsev.monitoring.ab.metric_decision`): two arms read at every look (an
  hour's labelled rows), for each decision metric, with 50/50 and 90/10 traffic: identical
  arms (a false decision is a significant promote or any rollback), a candidate worse by the
  metric's margin (a false decision is any promotion), a candidate better or worse by twice
  the margin (power: the right decision). Reported as the share of experiments decided by 24,
  100 and 500 looks. Per look, the metric's mean and variance and the decision are computed
  for all experiments at once with numpy; `check_vectorized` proves they equal the project's
  own `estimate`, `improvement`, `always_valid_p` and `metric_decision` on sampled looks.
- **Drift** (`avsev.monitoring.jobs.drift_report_of` on each window's drift rollup): the
  reference profile from one random half of the real rows, 1,000 windows each of 300 /
  1,000 / 5,000 / 50,000 rows from the other half (with replacement above its size): each
  feature's false-alarm rate, dataset drift, prediction drift and the daily alert; and power:
  the top feature half blanked (dataset drift), latitude shifted by half its SD and a
  weather share moved 15 points (that feature's drift). A window's rollup is counted with
  numpy from the rows' columns and the model's answers computed once (`rollup_of`);
  `check_rollups` proves it equals the real path's (records, the drift SQL in DuckDB) on a
  window of each size up to 5,000 rows.
- **Trust** (`avsev.monitoring.performance.calibration_check`): windows of labelled rows from
  the calibrated model and from one 8 points over-confident.
- **Lean** (`avsev.monitoring.performance.expected_performance`): no simulation; the held-out
  fit answers the real rows of the newest years, fields blanked at 0 / 50 / 90%, and the
  label-free estimate (plain, through the card's recalibration, and with temperature scaling
  for comparison) is set against the real labels' accuracy and log loss, year by year.

Every rate carries its Wilson 95% interval. Writes bench/stats_results.json (or --out);
--quick is a smoke run (tests/e2e/test_benches.py), not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from avsev.serving.card import Card

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "stats_results.json"
Z95 = 1.959963984540054
SEVERITY_COST = np.array([[0, 5, 5, 10], [2, 0, 2, 4], [1, 1, 0, 2], [1, 1, 1, 0]], dtype=float)
"""An example cost matrix for `expected_cost` (rows actual, columns predicted)."""


@dataclass(frozen=True)
class Sizes:
    ab_experiments: int = 1000
    looks: tuple[int, ...] = (24, 100, 500)
    rows_per_look: int = 60
    chunk: int = 50
    drift_sizes: tuple[int, ...] = (300, 1000, 5000, 50000)
    drift_windows: dict[int, int] | None = None
    trust_windows: int = 1000
    rounds: int = 400

    @staticmethod
    def quick() -> Sizes:
        return Sizes(
            ab_experiments=40,
            looks=(24, 100),
            drift_sizes=(300, 5000),
            drift_windows={300: 10, 5000: 4},
            trust_windows=100,
            rounds=30,
        )

    def windows(self, size: int) -> int:
        """Drift windows of `size` rows: 1,000 by default at every size, enough for a rate
        of 2.5% to show a Wilson upper bound near 3.6% (the promise is ≤ 5%, bound ≤ 6%)."""
        if self.drift_windows:
            return self.drift_windows[size]
        return 1000


def wilson(k: int, n: int) -> dict[str, Any]:
    """A rate with its Wilson score 95% interval."""
    if n == 0:
        return {"rate": None, "k": 0, "n": 0, "ci95": None}
    p = k / n
    centre = p + Z95**2 / (2 * n)
    spread = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    denom = 1 + Z95**2 / n
    return {
        "rate": p,
        "k": k,
        "n": n,
        "ci95": [max(0.0, (centre - spread) / denom), min(1.0, (centre + spread) / denom)],
    }


# ---- the model and its pool ------------------------------------------------------------


@dataclass
class Pool:
    card: Card
    rows: list[dict[str, Any]]
    """All real rows (the drift simulation splits them)."""
    proba: np.ndarray
    """The model's probabilities on the newest years' rows (n × 4)."""
    spec: Any
    booster: Any


def pool(sizes: Sizes) -> Pool:
    from avsev.data import default_data_path, load
    from avsev.serving.card import Card
    from avsev.serving.runtime import host_arch
    from avsev.serving.schema import SEVERITIES
    from avsev_tools.pipeline.train import dmatrix, matrix, time_split, train

    data = load(default_data_path())
    rows = data.reports()
    fit = train(data, rounds=sizes.rounds, refit=False)
    split = time_split([r.get("event_date") for r in rows])
    newest = [rows[i] for i in split.test]
    proba = fit.booster.predict(dmatrix(fit.spec, matrix(fit.spec, newest)))
    card = {
        **fit.info,
        "name": "avsev-severity",
        "version": "1.0.0",
        "arch": host_arch(),
        "classes": list(SEVERITIES),
        "metrics": fit.metrics,
        "feature_spec": fit.spec.to_dict(),
        "files": {},  # not compiled: the pool predicts with the booster
    }
    return Pool(Card.from_dict(card), rows, np.asarray(proba, dtype=float), fit.spec, fit.booster)


# ---- A/B ---------------------------------------------------------------------------------


def noisy(proba: np.ndarray, sigma: float, seed: int = 99) -> np.ndarray:
    """A worse model: each row's probabilities perturbed by a fixed log-normal noise."""
    if sigma == 0:
        return proba
    z = np.random.default_rng(seed).standard_normal(proba.shape)
    q = proba * np.exp(sigma * z)
    return q / q.sum(axis=1, keepdims=True)


def true_metric(metric: str, truth: np.ndarray, served: np.ndarray) -> float:
    """The metric's expectation when labels follow `truth` and `served` answers."""
    pred = served.argmax(axis=1)
    if metric == "log_loss":
        return float(-(truth * np.log(np.clip(served, 1e-15, None))).sum(axis=1).mean())
    if metric == "accuracy":
        return float(truth[np.arange(len(truth)), pred].mean())
    if metric == "expected_cost":
        return float((truth * SEVERITY_COST[:, pred].T).sum(axis=1).mean())
    raise ValueError(metric)


def worse_model(metric: str, proba: np.ndarray, worse_by: float) -> np.ndarray:
    """A model worse than `proba` by `worse_by` on `metric` when labels follow `proba`.

    Log loss and accuracy: `proba` perturbed by a fixed log-normal noise of a scale found by
    bisection (any change of the top class costs accuracy, since `proba`'s argmax is the
    accurate answer). Expected cost: the argmax is not the cost-optimal answer, so noise can
    lower the cost; instead, the rows of a fixed random subset answer the class with the
    highest expected cost, the subset grown until the cost rises by `worse_by`."""
    base = true_metric(metric, proba, proba)

    def gap(served: np.ndarray) -> float:
        d = true_metric(metric, proba, served) - base
        return -d if metric == "accuracy" else d

    if metric == "expected_cost":
        worst = (proba @ SEVERITY_COST).argmax(axis=1)
        order = np.random.default_rng(98).permutation(len(proba))

        def served_with(k: int) -> np.ndarray:
            out = proba.copy()
            rows = order[:k]
            out[rows] = np.eye(proba.shape[1])[worst[rows]]
            return out

        lo_k, hi_k = 0, len(proba)
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            lo_k, hi_k = (mid, hi_k) if gap(served_with(mid)) < worse_by else (lo_k, mid)
        served = served_with(hi_k)
    else:
        s_lo, s_hi = 0.0, 0.5
        while gap(noisy(proba, s_hi)) < worse_by and s_hi < 64:
            s_hi *= 2
        for _ in range(40):
            s_mid = (s_lo + s_hi) / 2
            s_lo, s_hi = (s_mid, s_hi) if gap(noisy(proba, s_mid)) < worse_by else (s_lo, s_mid)
        served = noisy(proba, s_hi)
    reached = gap(served)
    assert abs(reached - worse_by) <= 0.05 * worse_by + 1e-3, (metric, worse_by, reached)
    return served


def per_row(metric: str, y: np.ndarray, served: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The metric's per-row value for labels `y` of pool rows `idx` answered by `served`."""
    q = served[idx]
    if metric == "log_loss":
        return -np.log(np.clip(np.take_along_axis(q, y[..., None], -1)[..., 0], 1e-15, None))
    pred = q.argmax(axis=-1)
    if metric == "accuracy":
        return (pred == y).astype(float)
    if metric == "expected_cost":
        return SEVERITY_COST[y, pred]
    raise ValueError(metric)


def arm_sums(
    rng: np.random.Generator,
    truth: np.ndarray,
    served: np.ndarray,
    metric: str,
    experiments: int,
    looks: int,
    rows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One arm of `experiments` runs: cumulative sum of the per-row metric and of its square
    after each look (experiments × looks), and the rows themselves (pool index, label)."""
    idx = rng.integers(0, len(truth), size=(experiments, looks, rows))
    u = rng.random((experiments, looks, rows, 1))
    y = (u > np.cumsum(truth[idx], axis=-1)).sum(axis=-1).clip(0, 3)
    x = per_row(metric, y, served, idx)
    return x.sum(-1).cumsum(1), (x**2).sum(-1).cumsum(1), idx, y


def vectorized_decisions(
    metric: str,
    s1a: np.ndarray,
    s2a: np.ndarray,
    na: np.ndarray,
    s1b: np.ndarray,
    s2b: np.ndarray,
    nb: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The decision at every look of every experiment: 1 promote, -1 rollback, 0 continue
    (with the kind in a second array: 2 better, 1 not worse)."""
    from avsev.monitoring import ab
    from avsev.monitoring.performance import LOWER_IS_BETTER, MARGIN

    ma, mb = s1a / na, s1b / nb
    pra = np.maximum(s2a / na - ma**2, 0.0)
    prb = np.maximum(s2b / nb - mb**2, 0.0)
    gain = (mb - ma) * (-1 if metric in LOWER_IS_BETTER else 1)
    variance = pra / na + prb / nb
    return ab.metric_decisions(gain, variance, MARGIN[metric])


def check_vectorized(metric: str, rng: np.random.Generator, proba: np.ndarray) -> int:
    """The vectorized decisions equal the project's per-look functions on sampled looks."""
    from avsev.monitoring import ab
    from avsev.monitoring.performance import MARGIN, estimate, improvement

    looks, rows = 40, 30
    checked = 0
    served_b = noisy(proba, 0.3)
    arms = []
    for served in (proba, served_b):
        s1, s2, idx, y = arm_sums(rng, proba, served, metric, 1, looks, rows)
        arms.append((s1, s2, idx, y, served))
    n = np.arange(1, looks + 1)[None, :] * rows
    vec = vectorized_decisions(metric, arms[0][0], arms[0][1], n, arms[1][0], arms[1][1], n)
    for k in range(0, looks, 7):
        ests = []
        for _, _, idx, y, served in arms:
            yy, ii = y[0, : k + 1].ravel(), idx[0, : k + 1].ravel()
            pred = served[ii].argmax(axis=1)
            cm = np.zeros((4, 4), dtype=np.int64)
            np.add.at(cm, (yy, pred), 1)
            nll = per_row("log_loss", yy, served, ii)
            ests.append(
                estimate(
                    metric,
                    cm,
                    nll_sum=float(nll.sum()),
                    nll2_sum=float((nll**2).sum()),
                    cost=SEVERITY_COST,
                )
            )
        gain, variance = improvement(metric, ests[0], ests[1])
        one = ab.metric_decision(gain, variance, MARGIN[metric])
        code = {"better": 1, "not_worse": 1, "worse": -1, "undecided": 0}[one]
        assert code == int(vec[0][0, k]), (metric, k, one, vec[0][0, k])
        checked += 1
    return checked


def ab_scenarios(p: Pool, sizes: Sizes, metrics: tuple[str, ...]) -> dict[str, Any]:
    from avsev.monitoring.ab import MIN_LABELLED
    from avsev.monitoring.performance import MARGIN

    rng = np.random.default_rng(2026)
    looks = max(sizes.looks)
    out: dict[str, Any] = {}
    for metric in metrics:
        margin = MARGIN[metric]
        checked = check_vectorized(metric, rng, p.proba)
        worse1 = worse_model(metric, p.proba, margin)
        worse2 = worse_model(metric, p.proba, 2 * margin)
        # (champion answers, candidate answers, what counts as the event measured)
        scenarios: dict[str, tuple[np.ndarray, np.ndarray, str]] = {
            "identical": (p.proba, p.proba, "false: significant promote or any rollback"),
            "worse_by_margin": (p.proba, worse1, "false: any promotion"),
            "better_by_2_margins": (worse2, p.proba, "power: promoted"),
            "worse_by_2_margins": (p.proba, worse2, "power: rolled back"),
        }
        per_metric: dict[str, Any] = {"margin": margin, "vectorized_checked_looks": checked}
        for split in (0.5, 0.1):
            r_b = max(1, round(sizes.rows_per_look * split))
            r_a = sizes.rows_per_look - r_b
            for name, (champ, cand, event) in scenarios.items():
                first = np.full(sizes.ab_experiments, looks, dtype=int)
                kind = np.zeros(sizes.ab_experiments, dtype=int)
                for start in range(0, sizes.ab_experiments, sizes.chunk):
                    e = min(sizes.chunk, sizes.ab_experiments - start)
                    s1a, s2a, _, _ = arm_sums(rng, p.proba, champ, metric, e, looks, r_a)
                    s1b, s2b, _, _ = arm_sums(rng, p.proba, cand, metric, e, looks, r_b)
                    k = np.arange(1, looks + 1)[None, :]
                    na, nb = k * r_a, k * r_b
                    decided, how = vectorized_decisions(metric, s1a, s2a, na, s1b, s2b, nb)
                    decided = np.where(np.minimum(na, nb) >= MIN_LABELLED, decided, 0)
                    any_ = decided != 0
                    at = np.where(any_.any(1), any_.argmax(1), looks)
                    first[start : start + e] = at
                    rows_ = np.arange(e)
                    picked = np.where(at < looks, at, 0)
                    code = decided[rows_, picked] * np.where(at < looks, 1, 0)
                    kind[start : start + e] = np.where(
                        code > 0, how[rows_, picked], np.where(code < 0, -1, 0)
                    )
                result: dict[str, Any] = {"measures": event}
                for n_looks in sizes.looks:
                    done = first < n_looks
                    if name == "identical":
                        hit = done & ((kind == -1) | (kind == 2))
                    elif name in ("worse_by_margin", "better_by_2_margins"):
                        hit = done & (kind > 0)
                    else:
                        hit = done & (kind == -1)
                    result[f"{n_looks}_looks"] = wilson(int(hit.sum()), sizes.ab_experiments)
                per_metric[f"{int(split * 100)}%_candidate/{name}"] = result
        out[metric] = per_metric
    return out


# ---- drift -------------------------------------------------------------------------------


@dataclass
class Columns:
    """The rows' profiled fields as numpy columns — numbers as floats (NaN when missing),
    categories as codes into `labels` (-1 when missing) — and the model's answer for every
    row as it is and with the top feature blank. A window is a vector of row indices; its
    rollup is counted from these columns (`rollup_of`), not through records and SQL."""

    numeric: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    predicted: np.ndarray
    predicted_blank: np.ndarray


def columns(
    rows: list[dict[str, Any]],
    spec: Any,
    top: str,
    answers: Callable[[list[dict[str, Any]]], np.ndarray],
) -> Columns:
    """The columns of `rows`; `answers` gives the model's class index for each of some rows."""
    from avsev.monitoring.evaluation import blank_field
    from avsev.monitoring.profile import profile_fields

    numeric: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    for name, kind in profile_fields(spec).items():
        raw = [r.get(name) for r in rows]
        if kind == "numeric":
            numeric[name] = np.array(
                [np.nan if v is None or v != v else float(v) for v in raw], dtype=float
            )
        else:
            text = [None if v is None or v != v else str(v) for v in raw]
            labels[name] = sorted({t for t in text if t is not None})
            index = {t: i for i, t in enumerate(labels[name])}
            codes[name] = np.array([-1 if t is None else index[t] for t in text], dtype=np.int64)
    blanked = [dict(r) for r in rows]
    blank_field(top, share=1.0)(blanked, 0)
    return Columns(numeric, codes, labels, answers(rows), answers(blanked))


def booster_answers(p: Pool) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    """The pool's model answering rows (class indices)."""
    from avsev_tools.pipeline.train import dmatrix, matrix

    def answers(rows: list[dict[str, Any]]) -> np.ndarray:
        proba = p.booster.predict(dmatrix(p.spec, matrix(p.spec, rows)))
        return np.asarray(proba).argmax(axis=1)

    return answers


def _tally(values: np.ndarray, names: list[str] | None = None) -> dict[str, int]:
    """Counts of the values (of their names when the values are codes into `names`)."""
    keys, counts = np.unique(values, return_counts=True)
    return {
        (names[k] if names is not None else str(k)): int(c)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True)
    }


def numeric_rollup(ref: dict[str, Any], x: np.ndarray) -> tuple[dict[str, Any], list[float]]:
    """One number's part of a drift rollup, and its present values: the reference bin as the
    SQL's CASE steps give it (numpy's searchsorted, right), the fine grid as SQL's round
    (half away from zero)."""
    from avsev.monitoring.rollups import grid_width

    present = x[~np.isnan(x)]
    width = grid_width(ref)
    inner = np.asarray(ref["bin_edges"][1:-1], dtype=float)
    scaled = present / width
    grid = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int64)
    return {
        "missing": len(x) - len(present),
        "bins": _tally(np.searchsorted(inner, present, side="right")),
        "grid": _tally(grid),
        "counts": {},
        "sum": float(present.sum()),
        "n": len(present),
        "grid_width": width,
    }, present.tolist()


def categorical_rollup(codes: np.ndarray, labels: list[str]) -> dict[str, Any]:
    known = codes[codes >= 0]
    return {
        "missing": len(codes) - len(known),
        "bins": {},
        "grid": {},
        "counts": _tally(known, labels),
        "sum": 0.0,
        "n": 0,
    }


def rollup_of(
    reference: dict[str, Any], cols: Columns, idx: np.ndarray, predicted: np.ndarray
) -> dict[str, Any]:
    """The drift rollup (as `avsev.monitoring.rollups.drift_rollup` returns it) of the rows
    `idx`, whose answers are `predicted` (class indices)."""
    from avsev.monitoring.rollups import SMALL_SAMPLE
    from avsev.serving.schema import SEVERITIES

    out: dict[str, Any] = {
        "rows": len(idx),
        "predicted": _tally(predicted, list(SEVERITIES)),
        "fields": {},
    }
    sample: dict[str, list[float]] = {}
    for name, ref in reference["fields"].items():
        if ref["kind"] == "numeric":
            out["fields"][name], sample[name] = numeric_rollup(ref, cols.numeric[name][idx])
        else:
            out["fields"][name] = categorical_rollup(cols.codes[name][idx], cols.labels[name])
    if 0 < len(idx) <= SMALL_SAMPLE:
        out["sample"] = sample
    return out


def with_field(
    rollup: dict[str, Any], name: str, part: dict[str, Any], values: list[float] | None
) -> dict[str, Any]:
    """`rollup` with one field's part (and its kept values, for a number) replaced."""
    out = {**rollup, "fields": {**rollup["fields"], name: part}}
    if "sample" in rollup and values is not None:
        out["sample"] = {**rollup["sample"], name: values}
    return out


def check_rollups(p: Pool, cols: Columns, sizes: tuple[int, ...]) -> int:
    """`rollup_of` equals the rollup the real path computes (records, the drift SQL in
    DuckDB) on a window of each size: the same counts and kept values, sums to rounding."""
    from avsev.monitoring.evaluation import split_reference
    from avsev.monitoring.offline import drift_rollups_of_rows
    from avsev.serving.schema import SEVERITIES

    checked = 0
    for size in sizes:
        card, _ = split_reference(p.card, p.rows, p.spec, seed=size)
        idx = np.random.default_rng(size).choice(len(p.rows), size, replace=False)
        answers = [SEVERITIES[i] for i in cols.predicted[idx]]
        (rolled,) = drift_rollups_of_rows(card, [[p.rows[i] for i in idx]], predicted=[answers])
        real = rolled.to_doc()
        fast = rollup_of(card.reference().to_dict(), cols, idx, cols.predicted[idx])
        assert (real["rows"], real["predicted"]) == (fast["rows"], fast["predicted"]), size
        assert ("sample" in real) == ("sample" in fast), size
        for name, f in fast["fields"].items():
            r = real["fields"][name]
            for key in ("missing", "bins", "grid", "counts", "n", "grid_width"):
                assert r.get(key) == f.get(key), (size, name, key)
            assert math.isclose(r["sum"], f["sum"], rel_tol=1e-9, abs_tol=1e-6), (size, name)
            if "sample" in fast and name in fast["sample"]:
                assert sorted(real["sample"][name]) == sorted(fast["sample"][name]), name
        checked += 1
    return checked


POWER_NUMBER = "dec_latitude"
POWER_CATEGORY = ("weather_condition", "VMC", "IMC")


def drift(
    p: Pool, sizes: Sizes, answers: Callable[[list[dict[str, Any]]], np.ndarray] | None = None
) -> dict[str, Any]:
    """False alarms of every drift decision on unchanged windows, and power: the top feature
    half blank (dataset drift), one number shifted by half its SD and one category's share
    moved 15 points (that feature's drift). Each window has its own reference half (one
    split per window index, shared by the sizes). `answers`: the model's class index for
    rows (default: the pool's booster)."""
    from avsev.monitoring.evaluation import split_halves, split_reference, top_feature
    from avsev.monitoring.jobs import drift_report_of
    from avsev.monitoring.rollup_types import DriftRollup
    from avsev.serving.schema import SEVERITIES

    def report_of(card: Card, doc: dict[str, Any]) -> Any:
        """The drift report of one window's rollup, as `rollup_of` builds it."""
        return drift_report_of(card, [DriftRollup.from_doc(doc)], [])

    top = top_feature(p.card)
    cols = columns(p.rows, p.spec, top, answers or booster_answers(p))
    field, source, target = POWER_CATEGORY
    src, dst = (cols.labels[field].index(v) for v in (source, target))
    out: dict[str, Any] = {
        "top_feature": top,
        "rollups_checked_against_sql": check_rollups(
            p, cols, tuple(s for s in sizes.drift_sizes if s <= 5000)
        ),
    }
    tallies: dict[int, dict[str, Any]] = {
        s: {
            "features": {},
            "dataset": 0,
            "alert": 0,
            "prediction": 0,
            "blank": 0,
            "shift": 0,
            "move": 0,
        }
        for s in sizes.drift_sizes
    }
    for w in range(max(sizes.windows(s) for s in sizes.drift_sizes)):
        card, _ = split_reference(p.card, p.rows, p.spec, seed=w)
        _, other = split_halves(len(p.rows), w)
        reference = card.reference().to_dict()
        sd = float(reference["fields"][POWER_NUMBER]["std"])
        for size in sizes.drift_sizes:
            if w >= sizes.windows(size):
                continue
            t = tallies[size]
            rng = np.random.default_rng([size, w])
            idx = rng.choice(other, size, replace=size > len(other))
            same = rollup_of(reference, cols, idx, cols.predicted[idx])
            report = report_of(card, same)
            for name, f in (report.features or {}).items():
                if f.test != "skipped":
                    t["features"].setdefault(name, []).append(int(bool(f.drift)))
            t["dataset"] += bool(report.dataset_drift)
            t["alert"] += bool(report.drift_found)
            t["prediction"] += bool(report.prediction_drift and report.prediction_drift.drift)
            # the top feature blank in half of the rows, and the model's answers for them
            gone = np.zeros(size, dtype=bool)
            gone[rng.choice(size, size // 2, replace=False)] = True
            answered = np.where(gone, cols.predicted_blank[idx], cols.predicted[idx])
            if top in cols.codes:
                part, values = (
                    categorical_rollup(np.where(gone, -1, cols.codes[top][idx]), cols.labels[top]),
                    None,
                )
            else:
                part, values = numeric_rollup(
                    reference["fields"][top], np.where(gone, np.nan, cols.numeric[top][idx])
                )
            blanked = with_field(same, top, part, values)
            blanked["predicted"] = _tally(answered, list(SEVERITIES))
            t["blank"] += bool(report_of(card, blanked).dataset_drift)
            # a number shifted by half its reference SD
            part, values = numeric_rollup(
                reference["fields"][POWER_NUMBER], cols.numeric[POWER_NUMBER][idx] + 0.5 * sd
            )
            shifted = report_of(card, with_field(same, POWER_NUMBER, part, values))
            t["shift"] += bool(shifted.features and shifted.features[POWER_NUMBER].drift)
            # a category's share up 15 points (of all rows), taken from another category
            c = cols.codes[field][idx].copy()
            at = np.flatnonzero(c == src)
            c[rng.choice(at, min(len(at), int(0.15 * size)), replace=False)] = dst
            moved = report_of(
                card, with_field(same, field, categorical_rollup(c, cols.labels[field]), None)
            )
            t["move"] += bool(moved.features and moved.features[field].drift)
    for size, t in tallies.items():
        windows = sizes.windows(size)
        out[str(size)] = {
            "windows": windows,
            "per_feature_false_alarm": {
                n: wilson(sum(v), len(v)) for n, v in t["features"].items()
            },
            "any_feature_false_alarm": None,
            "dataset_drift_false_alarm": wilson(t["dataset"], windows),
            "prediction_drift_false_alarm": wilson(t["prediction"], windows),
            "daily_alert_false_alarm": wilson(t["alert"], windows),
            f"{top}_half_blank_dataset_drift_caught": wilson(t["blank"], windows),
            f"{POWER_NUMBER}_half_sd_shift_caught": wilson(t["shift"], windows),
            f"{field}_15pt_share_change_caught": wilson(t["move"], windows),
        }
    return out


# ---- trust -------------------------------------------------------------------------------


def trust(p: Pool, sizes: Sizes) -> dict[str, Any]:
    from avsev.monitoring.performance import calibration_check
    from avsev.monitoring.rollups import CONFIDENCE_BINS

    conf_all = p.proba.max(axis=1)
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {}
    for shift, label in (
        (0.0, "calibrated_called_untrusted"),
        (0.08, "overconfident_by_8_points_caught"),
    ):
        for rows in (30, 100, 300, 1000):
            hits = 0
            for _ in range(sizes.trust_windows):
                conf = rng.choice(conf_all, size=rows)
                correct = rng.random(rows) < np.clip(conf - shift, 0, 1)
                bins: dict[int, list[float]] = {}
                for b, c, ok in zip(
                    np.floor(conf * CONFIDENCE_BINS).astype(int), conf, correct, strict=True
                ):
                    cell = bins.setdefault(int(b), [0.0, 0.0, 0.0])
                    cell[0] += 1
                    cell[1] += float(ok)
                    cell[2] += float(c)
                hits += calibration_check(bins, None).verdict == "untrusted"
            out[f"{label}/{rows}_rows"] = wilson(hits, sizes.trust_windows)
    return out


# ---- lean of the label-free estimate -------------------------------------------------------

LEAN_RULE_CUT = 1 / 3
"""The recalibration is applied when it cuts the mean |lean| of accuracy and of log loss
over the test years × blank shares by at least this share, and the largest |accuracy lean|
is no larger."""
LEAN_BLANK_SHARES = (0.0, 0.5, 0.9)
"""Each report field (but the event id) blanked independently with this probability."""


def blanked(rows: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """Copies of `rows` with each field but `ev_id` set to None with probability `share`."""
    rng = np.random.default_rng(seed)
    return [
        {k: (None if k != "ev_id" and rng.random() < share else v) for k, v in r.items()}
        for r in rows
    ]


def temperature(proba: np.ndarray, t: float) -> np.ndarray:
    """Temperature scaling: p_i^(1/t), renormalised (Guo et al. 2017)."""
    z = np.log(np.clip(proba, 1e-15, None)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _nll(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, None)))


def lean_of(proba: np.ndarray, y: np.ndarray, recal: Any, t: float) -> dict[str, Any]:
    """Realized accuracy and log loss of one group of rows against the label-free estimates:
    plain (the served probabilities' means), through the card's `Recalibration` (the
    project's own `expected_performance`), and from temperature-scaled probabilities."""
    from avsev.monitoring.performance import expected_performance

    n = len(y)
    pred = proba.argmax(axis=1)
    correct = (pred == y).astype(float)
    conf = proba.max(axis=1)
    ent = -(proba * np.log(np.clip(proba, 1e-15, None))).sum(axis=1)
    # served probabilities summed under each predicted class (rows: class, columns: predicted)
    expected = np.stack([proba[pred == k].sum(axis=0) for k in range(4)], axis=1)
    args = (n, float(conf.sum()), float(ent.sum()), expected)
    plain, fixed = expected_performance(*args), expected_performance(*args, recal)
    scaled = temperature(proba, t)
    s_ent = -(scaled * np.log(np.clip(scaled, 1e-15, None))).sum(axis=1)
    gap = conf - correct
    half = Z95 * float(gap.std(ddof=1)) / math.sqrt(n)
    acc, ll = float(correct.mean()), float(_nll(proba, y).mean())
    return {
        "rows": n,
        "accuracy": acc,
        "log_loss": ll,
        "lean_accuracy": {
            "plain": float(plain.expected_accuracy or 0.0) - acc,
            "plain_ci95": [float(gap.mean()) - half, float(gap.mean()) + half],
            "recalibrated": float(fixed.expected_accuracy or 0.0) - acc,
            "temperature": float(scaled.max(axis=1).mean()) - acc,
        },
        # positive: the estimated log loss is lower (better) than realized, i.e. optimistic
        "lean_log_loss": {
            "plain": ll - float(plain.expected_log_loss or 0.0),
            "recalibrated": ll - float(fixed.expected_log_loss or 0.0),
            "temperature": float(_nll(scaled, y).mean()) - float(s_ent.mean()),
        },
        "log_loss_of_temperature_scaled": float(_nll(scaled, y).mean()),
    }


def lean(p: Pool, sizes: Sizes) -> dict[str, Any]:
    """The label-free estimate against the truth, by year of the newest (test) rows, with
    report fields blanked at LEAN_BLANK_SHARES; plain, through the card's recalibration
    (fitted by `avsev train` on the validation rows), and with temperature scaling fitted on
    the same validation rows (the standard one-parameter alternative, for comparison)."""
    from avsev.data import default_data_path, load
    from avsev.monitoring.performance import Recalibration
    from avsev_tools.pipeline.train import dmatrix, matrix, time_split
    from scipy.optimize import minimize_scalar

    labels = np.asarray(load(default_data_path()).labels, dtype=int)
    split = time_split([r.get("event_date") for r in p.rows])
    recal = Recalibration.from_card(p.card)
    assert recal is not None, "the card has no recalibration"

    def predicted(idx: list[int], share: float) -> np.ndarray:
        rows = blanked([p.rows[i] for i in idx], share, seed=7)
        return np.asarray(p.booster.predict(dmatrix(p.spec, matrix(p.spec, rows))), dtype=float)

    valid_proba, valid_y = predicted(split.valid, 0.0), labels[split.valid]
    t = float(
        minimize_scalar(
            lambda x: float(_nll(temperature(valid_proba, x), valid_y).mean()),
            bounds=(0.25, 4.0),
            method="bounded",
        ).x
    )
    years = np.asarray([p.rows[i]["event_date"].year for i in split.test])
    test_y = labels[split.test]
    out: dict[str, Any] = {
        "recalibration": recal.to_dict(),
        "temperature": t,
        "test_from": split.boundaries.get("test_from"),
        "validation": lean_of(valid_proba, valid_y, recal, t),
    }
    for share in LEAN_BLANK_SHARES:
        proba = predicted(split.test, share)
        per: dict[str, Any] = {"all test years": lean_of(proba, test_y, recal, t)}
        for year in sorted(set(years.tolist())):
            m = years == year
            per[str(year)] = lean_of(proba[m], test_y[m], recal, t)
        out[f"{int(share * 100)}%_blank"] = per
    out["summary"] = lean_summary(out)
    return out


def lean_summary(le: dict[str, Any]) -> dict[str, Any]:
    """Over the test years × blank shares (never seen by the fit): the mean and the largest
    |lean| of each estimate, and whether the recalibration meets the rule for applying it
    (LEAN_RULE_CUT)."""
    cells = [
        r
        for key, per in le.items()
        if key.endswith("_blank")
        for year, r in per.items()
        if year.isdigit()
    ]
    out: dict[str, Any] = {"cells": len(cells)}
    for metric in ("lean_accuracy", "lean_log_loss"):
        for how in ("plain", "recalibrated", "temperature"):
            values = [abs(c[metric][how]) for c in cells]
            out[f"{metric}/{how}"] = {"mean_abs": float(np.mean(values)), "max_abs": max(values)}
    acc = {h: out[f"lean_accuracy/{h}"] for h in ("plain", "recalibrated")}
    ll = {h: out[f"lean_log_loss/{h}"] for h in ("plain", "recalibrated")}
    keep = 1 - LEAN_RULE_CUT
    out["rule_met"] = bool(
        acc["recalibrated"]["mean_abs"] <= keep * acc["plain"]["mean_abs"]
        and ll["recalibrated"]["mean_abs"] <= keep * ll["plain"]["mean_abs"]
        and acc["recalibrated"]["max_abs"] <= acc["plain"]["max_abs"]
    )
    return out


def lean_table(results: dict[str, Any]) -> list[str]:
    """The lean as a markdown table (empty without a `lean` part)."""
    le = results.get("lean") or {}
    if not le:
        return []
    out = [
        "**Lean of the label-free estimate** — estimated minus realized accuracy, and realized "
        "minus estimated log loss (positive: optimistic), on the newest years, by the held-out "
        f"fit (recalibration fitted on the validation rows; temperature T = {le['temperature']:.3f} "
        "for comparison):",
        "",
        "| fields blank | year | rows | accuracy | lean: plain (95% CI) | recalibrated | temperature "
        "| log loss | lean: plain | recalibrated | temperature | log loss, T-scaled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, per in le.items():
        if not key.endswith("_blank"):
            continue
        for year, r in per.items():
            a, ll = r["lean_accuracy"], r["lean_log_loss"]
            lo, hi = a["plain_ci95"]
            out.append(
                f"| {key.split('_')[0]} | {year} | {r['rows']:,} | {r['accuracy']:.3f} "
                f"| {a['plain']:+.3f} ({lo:+.3f} to {hi:+.3f}) | {a['recalibrated']:+.3f} "
                f"| {a['temperature']:+.3f} | {r['log_loss']:.3f} | {ll['plain']:+.3f} "
                f"| {ll['recalibrated']:+.3f} | {ll['temperature']:+.3f} "
                f"| {r['log_loss_of_temperature_scaled']:.3f} |"
            )
    summary = le.get("summary")
    if summary:
        out += [
            "",
            f"Over the {summary['cells']} year × blank-share cells, mean (largest) |lean|:",
            "",
            "| estimate | accuracy | log loss |",
            "|---|---|---|",
        ]
        for how in ("plain", "recalibrated", "temperature"):
            a, ll = summary[f"lean_accuracy/{how}"], summary[f"lean_log_loss/{how}"]
            out.append(
                f"| {how} | {a['mean_abs']:.3f} ({a['max_abs']:.3f}) "
                f"| {ll['mean_abs']:.3f} ({ll['max_abs']:.3f}) |"
            )
        out += [
            "",
            "Rule for applying the recalibration (mean |lean| of accuracy and of log loss each "
            f"cut by at least {LEAN_RULE_CUT:.0%}, largest |accuracy lean| no larger): "
            + ("**met**." if summary["rule_met"] else "**not met**."),
        ]
    out.append("")
    return out


def _pct(r: dict[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "–"
    lo, hi = r["ci95"]
    return f"{100 * r['rate']:.1f}% ({100 * lo:.1f}–{100 * hi:.1f})"


def tables(results: dict[str, Any]) -> str:
    """The results as the markdown tables of docs/statistics.md."""
    out: list[str] = []
    ab = results.get("ab") or {}
    if ab:
        looks = [f"{n}_looks" for n in results["sizes"]["looks"]]
        out += [
            "**A/B decisions** — share of experiments decided by the look (Wilson 95% interval):",
            "",
            "| metric (margin) | traffic | scenario | measures | "
            + " | ".join(x.replace("_", " ") for x in looks)
            + " |",
            "|---|---|---|---|" + "---|" * len(looks),
        ]
        for metric, per in ab.items():
            for key, r in per.items():
                if "/" not in key:
                    continue
                split, scenario = key.split("/")
                out.append(
                    f"| {metric} ({per.get('margin', '–')}) | {split.split('_')[0]} | {scenario.replace('_', ' ')} "
                    f"| {r['measures']} | " + " | ".join(_pct(r.get(x)) for x in looks) + " |"
                )
        out.append("")
    drift_ = results.get("drift") or {}
    sizes = [k for k in drift_ if k.isdigit()]
    if sizes:
        top = drift_["top_feature"]
        powers = [k for k in drift_[sizes[0]] if k.endswith("_caught")]
        out += [
            "**Drift on unchanged data** — share of windows (Wilson 95% interval), and power "
            "(share of changed windows caught):",
            "",
            "| rows | windows | daily alert | dataset drift | prediction drift | worst feature | "
            + " | ".join(k.replace("_", " ") for k in powers)
            + " |",
            "|---|---|---|---|---|---|" + "---|" * len(powers),
        ]
        for size in sizes:
            d = drift_[size]
            worst_name, worst = max(
                d["per_feature_false_alarm"].items(), key=lambda kv: kv[1]["rate"] or 0
            )
            out.append(
                f"| {int(size):,} | {d['windows']} | {_pct(d['daily_alert_false_alarm'])} "
                f"| {_pct(d['dataset_drift_false_alarm'])} | {_pct(d['prediction_drift_false_alarm'])} "
                f"| {worst_name} {_pct(worst)} | "
                + " | ".join(_pct(d.get(k)) for k in powers)
                + " |"
            )
        features = list(drift_[sizes[0]]["per_feature_false_alarm"])
        out += [
            "",
            f"**Each feature's false alarms on unchanged data** (the top feature is {top}):",
            "",
            "| feature | " + " | ".join(f"{int(s):,} rows" for s in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for name in features:
            out.append(
                f"| {name} | "
                + " | ".join(_pct(drift_[s]["per_feature_false_alarm"].get(name)) for s in sizes)
                + " |"
            )
        out.append("")
    trust_ = results.get("trust") or {}
    if trust_:
        rows = sorted({k.split("/")[1] for k in trust_}, key=lambda x: int(x.split("_")[0]))
        out += [
            "**Trust in the label-free estimate** — share of windows called untrusted:",
            "",
            "| model | " + " | ".join(r.replace("_", " ") for r in rows) + " |",
            "|---|" + "---|" * len(rows),
        ]
        for label in ("calibrated_called_untrusted", "overconfident_by_8_points_caught"):
            out.append(
                f"| {label.replace('_', ' ')} | "
                + " | ".join(_pct(trust_.get(f"{label}/{r}")) for r in rows)
                + " |"
            )
        out.append("")
    out += lean_table(results)
    return "\n".join(out)


TABLE_START = "<!-- bench/stats.py tables: start -->"
TABLE_END = "<!-- bench/stats.py tables: end -->"


def write_tables(doc: Path, results: dict[str, Any]) -> None:
    """Replace the tables between the markers of `doc` with these results'."""
    text = doc.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    stamp = f"From `bench/stats_results.json` (commit {results.get('commit')}, {results.get('seconds')} s)."
    doc.write_text(f"{head}{TABLE_START}\n{stamp}\n\n{tables(results)}\n{TABLE_END}{tail}")


def commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small sizes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--tables", type=Path, help="write the tables into this markdown file (between markers)"
    )
    parser.add_argument(
        "--part",
        action="append",
        choices=["ab", "drift", "trust", "lean"],
        help="default: all; with --part, the other parts of an existing --out are kept",
    )
    parser.add_argument(
        "--drift-sizes", help="comma-separated window sizes (the others already in --out are kept)"
    )
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.drift_sizes:
        chosen = tuple(int(x) for x in args.drift_sizes.split(","))
        sizes = Sizes(**{**sizes.__dict__, "drift_sizes": chosen})
    parts = args.part or ["ab", "drift", "trust", "lean"]
    started = time.perf_counter()
    p = pool(sizes)
    from avsev.monitoring.performance import DECISION_METRICS

    results: dict[str, Any] = {
        "commit": commit(),
        "sizes": sizes.__dict__ | {"looks": list(sizes.looks)},
    }
    if args.part and args.out.exists():
        results = {**json.loads(args.out.read_text()), "commit": results["commit"]}
    if args.quick:
        results["quick"] = True
    steps: dict[str, Callable[[], Any]] = {
        "ab": lambda: ab_scenarios(p, sizes, DECISION_METRICS),
        "drift": lambda: drift(p, sizes),
        "trust": lambda: trust(p, sizes),
        "lean": lambda: lean(p, sizes),
    }
    for part in parts:
        t = time.perf_counter()
        fresh = steps[part]()
        if part == "drift" and args.drift_sizes and isinstance(results.get("drift"), dict):
            fresh = {**results["drift"], **fresh}
        results[part] = fresh
        print(f"{part}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if args.tables:
        write_tables(args.tables, results)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
