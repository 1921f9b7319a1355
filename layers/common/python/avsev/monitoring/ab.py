"""A/B analysis of model versions from the counts of a window's rollups.

Every statistic comes from counts (see avsev.monitoring.rollups): confusion matrices per
served version, latency histograms, paired served/shadow counts. Versions are told apart by the model version that really served each request (alias
routing is random per invocation). The decision rule uses an always-valid p-value (a
mixture sequential probability ratio test, Johari et al. 2017) on the accuracy difference,
so reading the report every hour does not inflate false decisions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from avsev import clock
from avsev.monitoring.metrics import f1_scores, macro_f1_of, weighted_f1_of
from avsev.monitoring.performance import (
    DEFAULT_METRIC,
    MARGIN,
    calibration_check,
    check_decision_metric,
    estimate,
    expected_performance,
    improvement,
)
from avsev.monitoring.reports import (
    ABReport,
    AccuracyTest,
    Comparison,
    Decision,
    LatencyTest,
    RecordCounts,
    ShadowMcNemar,
    VersionSummary,
)
from avsev.monitoring.rollup_types import LabelRow, ServedRow
from avsev.monitoring.rollups import latency_value
from avsev.monitoring.stats import mcnemar_counts
from avsev.serving.schema import SEVERITIES

ALPHA = 0.05
POWER = 0.8
MIN_LABELLED = 30
"""Per version, before any test is run."""
TAU = 0.05
"""mSPRT mixture scale: the accuracy differences we care about are a few points."""
LATENCY_SLOWDOWN = 1.25
LATENCY_MIN_DIFF_MS = 1.0
"""A slowdown counts when p95 grows by 25% and by at least this much (µs-level noise does not)."""
BOOTSTRAP = 1000
FISHER_BELOW = 5
IDX = {s: i for i, s in enumerate(SEVERITIES)}
K = len(SEVERITIES)


@dataclass
class VersionCounts:
    """What a report needs of one model version: counts only."""

    requests: int = 0
    mix: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    """Latency histogram: log-scale bin (see rollups.latency_value) → served requests."""
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((K, K), dtype=np.int64))
    """Labelled served predictions: rows actual class, columns predicted class."""
    expected: np.ndarray = field(default_factory=lambda: np.zeros((K, K)))
    """Served probabilities summed under each predicted class (the expected confusion)."""
    p_max_sum: float = 0.0
    entropy_sum: float = 0.0
    nll_sum: float = 0.0
    """Labelled rows: sum of −ln p(actual), and of its square (log loss and its variance)."""
    nll2_sum: float = 0.0
    confidence_bins: dict[int, list[float]] = field(default_factory=dict)
    """Labelled rows by top-probability bin: [rows, correct, confidence sum] (calibration)."""

    @property
    def labelled(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))


@dataclass
class ABCounts:
    """The sum of the rollups of a window."""

    versions: dict[str, VersionCounts] = field(default_factory=dict)
    shadow_pairs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(served version, shadow version) → 2×2 counts [served right?][shadow right?]."""
    predictions: int = 0
    """Distinct prediction records (served and shadow)."""
    newer_schema: int = 0

    def version(self, name: str) -> VersionCounts:
        return self.versions.setdefault(name, VersionCounts())


def ab_counts(served: Iterable[ServedRow], labels: Iterable[LabelRow]) -> ABCounts:
    """Sum the `served` and `labels` rollup rows of a window (see avsev.monitoring.rollups)."""
    counts = ABCounts()
    for r in served:
        n = r.n
        if r.newer_schema:
            counts.newer_schema += n
            continue
        counts.predictions += n
        if r.shadow:
            continue
        assert r.model_version is not None and r.predicted is not None  # checked when read
        v = counts.version(r.model_version)
        v.requests += n
        v.mix[r.predicted] = v.mix.get(r.predicted, 0) + n
        b = int(r.latency_bin or 0)
        v.latency[b] = v.latency.get(b, 0) + n
        if r.p_max is not None:
            column = IDX[r.predicted]
            for i, p in enumerate(r.probability_sums or ()):
                v.expected[i, column] += float(p or 0.0)
            v.p_max_sum += float(r.p_max)
            v.entropy_sum += float(r.entropy or 0.0)
    for lr in labels:
        n = lr.n
        if lr.kind == "served":
            v = counts.version(lr.version)
            v.confusion[IDX[lr.actual], IDX[lr.predicted]] += n
            if lr.nll is not None:
                v.nll_sum += float(lr.nll)
                v.nll2_sum += float(lr.nll2 or 0.0)
                bin_ = v.confidence_bins.setdefault(int(lr.conf_bin or 0), [0.0, 0.0, 0.0])
                bin_[0] += n
                bin_[1] += n if lr.predicted == lr.actual else 0
                bin_[2] += float(lr.conf_sum or 0.0)
        else:
            pair = (lr.version, lr.shadow_version or "")
            table = counts.shadow_pairs.setdefault(pair, np.zeros((2, 2), dtype=np.int64))
            table[int(lr.predicted == lr.actual), int(lr.shadow_predicted == lr.actual)] += n
    return counts


def latency_quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-quantile of a latency histogram (the bin's middle; bins are 1% wide)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen > rank:
            return latency_value(b)
    return latency_value(max(histogram))


def mann_whitney_greater(b: Mapping[int, int], a: Mapping[int, int]) -> float:
    """One-sided Mann-Whitney U p-value that b is stochastically greater than a, from binned
    values (ties within a bin, normal approximation with tie and continuity corrections)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 1.0
    u = 0.0
    below_a = 0
    ties = 0.0
    for k in sorted(set(a) | set(b)):
        ca, cb = a.get(k, 0), b.get(k, 0)
        u += cb * (below_a + 0.5 * ca)
        below_a += ca
        t = ca + cb
        ties += t**3 - t
    n = na + nb
    mean = na * nb / 2
    variance = na * nb / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (u - mean - 0.5) / math.sqrt(variance)
    return float(stats.norm.sf(z))


def bootstrap_f1(cm: np.ndarray, rng: np.random.Generator, stat: Any) -> np.ndarray:
    """The statistic on BOOTSTRAP resamples of the labelled rows (multinomial over the
    confusion cells: the same distribution as resampling the rows)."""
    n = int(cm.sum())
    draws = rng.multinomial(n, cm.ravel() / n, size=BOOTSTRAP).reshape(BOOTSTRAP, *cm.shape)
    return np.array([stat(d) for d in draws])


def _ci(samples: np.ndarray) -> tuple[float, float]:
    return (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))


def version_summary(v: VersionCounts, rng: np.random.Generator) -> VersionSummary:
    on_labels: dict[str, Any] = {}
    if v.labelled:
        cm = v.confusion
        _, recall, _ = f1_scores(cm)
        on_labels = {
            "accuracy": v.correct / v.labelled,
            "weighted_f1": weighted_f1_of(cm),
            "weighted_f1_ci95": _ci(bootstrap_f1(cm, rng, weighted_f1_of)),
            "macro_f1": macro_f1_of(cm),
            "macro_f1_ci95": _ci(bootstrap_f1(cm, rng, macro_f1_of)),
            "recall": {s: float(recall[i]) for i, s in enumerate(SEVERITIES)},
            "log_loss": v.nll_sum / v.labelled if v.confidence_bins else None,
            "calibration": calibration_check(v.confidence_bins, None)
            if v.confidence_bins
            else None,
        }
    return VersionSummary(
        requests=v.requests,
        labelled=v.labelled,
        labelled_share=v.labelled / v.requests if v.requests else 0.0,
        predicted_mix={s: v.mix.get(s, 0) / max(v.requests, 1) for s in SEVERITIES},
        latency_ms_p50=latency_quantile(v.latency, 0.50),
        latency_ms_p95=latency_quantile(v.latency, 0.95),
        without_labels=expected_performance(v.requests, v.p_max_sum, v.entropy_sum, v.expected),
        **on_labels,
    )


def always_valid_p(diff: float, variance: float, tau: float = TAU) -> float:
    """mSPRT with a normal mixture N(0, tau²) over the effect, for an estimate with the
    given variance: 1/Λ is a p-value valid at any number of looks."""
    if variance <= 0:
        return 1.0
    ratio = variance / (variance + tau**2)
    log_lambda = 0.5 * math.log(ratio) + diff**2 * tau**2 / (2 * variance * (variance + tau**2))
    return float(min(1.0, math.exp(-log_lambda)))


def accuracy_test(correct_a: int, n_a: int, correct_b: int, n_b: int) -> AccuracyTest:
    """Two-proportion z-test, or Fisher's exact test when a cell is small."""
    table = [[correct_a, n_a - correct_a], [correct_b, n_b - correct_b]]
    if min(min(r) for r in table) < FISHER_BELOW:
        _, p = stats.fisher_exact(table)
        return AccuracyTest(method="fisher_exact", p_value=float(p))
    pa, pb = correct_a / n_a, correct_b / n_b
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se if se > 0 else 0.0
    return AccuracyTest(method="two_proportion_z", z=z, p_value=float(2 * stats.norm.sf(abs(z))))


def compare(
    champion: VersionCounts,
    candidate: VersionCounts,
    rng: np.random.Generator,
    *,
    metric: str = DEFAULT_METRIC,
    cost: np.ndarray | None = None,
    margin: float | None = None,
) -> Comparison:
    """Champion against candidate on every measure; the decision metric's gain with its
    always-valid 95% interval and what it says against the non-inferiority `margin` (the
    metric's default in `MARGIN` unless given)."""
    na, nb = champion.labelled, candidate.labelled
    ca, cb = champion.correct, candidate.correct
    pa, pb = ca / na, cb / nb
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    a_est, b_est = (
        estimate(metric, arm.confusion, nll_sum=arm.nll_sum, nll2_sum=arm.nll2_sum, cost=cost)
        for arm in (champion, candidate)
    )
    gain, variance = improvement(metric, a_est, b_est)
    metric_se = math.sqrt(variance) if math.isfinite(variance) else math.inf
    f1_draws = bootstrap_f1(candidate.confusion, rng, weighted_f1_of) - bootstrap_f1(
        champion.confusion, rng, weighted_f1_of
    )
    margin = MARGIN[metric] if margin is None else margin
    half = confidence_half_width(variance) if math.isfinite(variance) else math.inf
    needed = rows_for_margin(variance, min(na, nb), margin)
    return Comparison(
        decision_metric=metric,
        metric_champion=a_est.value,
        metric_candidate=b_est.value,
        metric_gain=gain,
        metric_gain_ci95=(gain - 1.96 * metric_se, gain + 1.96 * metric_se),
        always_valid_p=always_valid_p(gain, variance) if math.isfinite(variance) else 1.0,
        accuracy_delta=diff,
        accuracy_delta_ci95=(diff - 1.96 * se, diff + 1.96 * se),
        accuracy_test=accuracy_test(ca, na, cb, nb),
        weighted_f1_delta=weighted_f1_of(candidate.confusion) - weighted_f1_of(champion.confusion),
        weighted_f1_delta_ci95=_ci(f1_draws),
        latency=latency_test(champion.latency, candidate.latency),
        labelled_per_arm_needed=needed,
        labelled_per_arm_still_needed=max(0.0, needed - min(na, nb)) if needed else None,
        margin=margin,
        metric_gain_always_valid_ci95=(gain - half, gain + half),
        metric_outcome=metric_decision(gain, variance, margin),
    )


def latency_test(champion: Mapping[int, int], candidate: Mapping[int, int]) -> LatencyTest:
    """Is the candidate slower? Its p95 against the champion's, and Mann-Whitney U."""
    test = "mann_whitney_u (candidate slower), on 1%-wide latency bins"
    p95_a, p95_b = latency_quantile(champion, 0.95), latency_quantile(candidate, 0.95)
    if not (p95_a and p95_b):
        return LatencyTest(test=test, p_value=None, p95_ratio=None, p95_diff_ms=None)
    return LatencyTest(
        test=test,
        p_value=mann_whitney_greater(candidate, champion),
        p95_ratio=p95_b / max(p95_a, 1e-9),
        p95_diff_ms=p95_b - p95_a,
    )


def confidence_half_widths(
    variance: np.ndarray, tau: float = TAU, alpha: float = ALPHA
) -> np.ndarray:
    """Half-width of the always-valid (1 − alpha) confidence sequence of estimates with these
    variances: the normal-mixture mSPRT inverted (Howard et al. 2021, eq. 14), so that
    `always_valid_p(d, variance) < alpha` exactly when |d| exceeds it (0 where the variance is
    not positive)."""
    variance = np.asarray(variance, dtype=float)
    ok = variance > 0
    v = np.where(ok, variance, 1.0)
    half = np.sqrt((2 * np.log(1 / alpha) + np.log((v + tau**2) / v)) * v * (v + tau**2) / tau**2)
    return np.where(ok, half, 0.0)


def confidence_half_width(variance: float, tau: float = TAU, alpha: float = ALPHA) -> float:
    """`confidence_half_widths` of one estimate."""
    return float(confidence_half_widths(np.array([variance]), tau, alpha)[0])


def rows_for_margin(variance: float, labelled_per_arm: int, margin: float) -> float | None:
    """Labelled rows per arm at which the always-valid interval narrows to the margin (the
    variance shrinking as 1/rows): when a candidate no worse than the champion can be
    promoted as not worse."""
    if not math.isfinite(variance) or variance <= 0 or labelled_per_arm <= 0 or margin <= 0:
        return None
    if confidence_half_width(variance) <= margin:
        return float(labelled_per_arm)
    lo, hi = 1.0, 2.0
    while confidence_half_width(variance / hi) > margin:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if confidence_half_width(variance / mid) > margin else (lo, mid)
    return float(math.ceil(labelled_per_arm * hi))


def decide(comparison: Comparison, n_a: int, n_b: int) -> tuple[Decision, str]:
    """promote / rollback / continue, and why: a slower candidate is rolled back; otherwise
    the decision metric decides (`metric_decision`)."""
    lat = comparison.latency
    if (
        lat.p_value is not None
        and lat.p_value < ALPHA
        and (lat.p95_ratio or 0) > LATENCY_SLOWDOWN
        and (lat.p95_diff_ms or 0) >= LATENCY_MIN_DIFF_MS
    ):
        return (
            "rollback",
            f"the candidate is slower (p95 ×{lat.p95_ratio:.2f}, p = {lat.p_value:.3g})",
        )
    metric = comparison.decision_metric
    name = metric.replace("_", " ")
    shown = f"{comparison.metric_candidate - comparison.metric_champion:+.3f}"
    p = comparison.always_valid_p
    outcome = comparison.metric_outcome
    if outcome == "better":
        better = "more accurate" if metric == "accuracy" else f"better on {name}"
        return "promote", f"the candidate is {better} by {shown} (always-valid p = {p:.3g})"
    if outcome == "worse":
        worse = "less accurate" if metric == "accuracy" else f"worse on {name}"
        return "rollback", f"the candidate is {worse} by {shown} (always-valid p = {p:.3g})"
    if outcome == "not_worse":
        low = (comparison.metric_gain_always_valid_ci95 or (math.nan, math.nan))[0]
        return (
            "promote",
            f"the candidate is not worse on {name} by more than the margin {comparison.margin} "
            f"(always-valid 95% lower bound of its gain {low:+.3f}, after {min(n_a, n_b)} "
            "labelled rows per arm)",
        )
    return (
        "continue",
        f"not enough evidence yet (always-valid p = {p:.3g}, {name} {shown})",
    )


MetricOutcome = Literal["better", "worse", "not_worse", "undecided"]
_OUTCOMES: dict[int, MetricOutcome] = {2: "better", 1: "not_worse", -1: "worse", 0: "undecided"}


def metric_decisions(
    gain: np.ndarray, variance: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """What the decision metric says at many looks at once (arrays of one shape): the gain
    (positive: candidate better) and its variance, against the non-inferiority margin.
    Returns (decision, kind): decision 1 promote, -1 rollback, 0 continue; kind 2
    significantly better, 1 not worse than the margin, -1 significantly worse, 0 undecided.

    Significance is the always-valid p (mSPRT) against no difference; "not worse" is the
    always-valid confidence sequence's lower bound above −margin. Both hold at every look, so
    reading the report each hour does not inflate either error: a candidate worse by the
    margin or more is promoted in at most ALPHA of experiments, identical arms are rolled back
    or called better in at most ALPHA. bench/stats.py simulates it at every look."""
    gain = np.asarray(gain, dtype=float)
    variance = np.asarray(variance, dtype=float)
    ok = np.isfinite(variance) & (variance > 0)
    v = np.where(ok, variance, 1.0)
    p = always_valid_ps(gain, variance)
    significant = ok & (p < ALPHA)
    half = confidence_half_widths(v)
    not_worse = ok & ~significant & (gain - half > -margin)
    kind = np.where(significant, np.where(gain > 0, 2, -1), np.where(not_worse, 1, 0))
    return np.where(kind > 0, 1, np.where(kind < 0, -1, 0)), kind


def metric_decision(gain: float, variance: float, margin: float) -> MetricOutcome:
    """`metric_decisions` at one look."""
    _, kind = metric_decisions(np.array([gain]), np.array([variance]), margin)
    return _OUTCOMES[int(kind[0])]


def always_valid_ps(diff: np.ndarray, variance: np.ndarray, tau: float = TAU) -> np.ndarray:
    """`always_valid_p` over arrays (1 where the variance is not positive or not finite)."""
    ok = np.isfinite(variance) & (variance > 0)
    v = np.where(ok, variance, 1.0)
    log_lambda = 0.5 * np.log(v / (v + tau**2)) + diff**2 * tau**2 / (2 * v * (v + tau**2))
    return np.where(ok, np.minimum(1.0, np.exp(-np.clip(log_lambda, -700, 700))), 1.0)


def ab_report(
    counts: ABCounts,
    *,
    champion: str | None = None,
    candidate: str | None = None,
    window: Mapping[str, Any] | None = None,
    seed: int = 0,
    metric: str = DEFAULT_METRIC,
    cost: np.ndarray | None = None,
    margin: float | None = None,
) -> ABReport:
    """The A/B report of a window's counts. Champion and candidate default to the most and
    second-most served model versions; the decision is on `metric` (see
    avsev.monitoring.performance)."""
    check_decision_metric(metric)
    rng = np.random.default_rng(seed)
    by_version = {v: c for v, c in counts.versions.items() if c.requests or c.labelled}
    ranked = sorted(by_version, key=lambda v: by_version[v].requests, reverse=True)
    champion = champion or (ranked[0] if ranked else None)
    candidate = candidate or next((v for v in ranked if v != champion), None)
    versions = {v: version_summary(c, rng) for v, c in by_version.items()}
    parts: dict[str, Any] = {}  # keys a report has only when they apply
    shadow = _shadow_mcnemar(counts.shadow_pairs)
    if shadow:
        parts["shadow_mcnemar"] = shadow
    decision: Decision = "insufficient_data"
    if not champion or not candidate:
        reason = "records from two model versions are needed"
    else:
        arm_a, arm_b = counts.version(champion), counts.version(candidate)
        la, lb = arm_a.labelled, arm_b.labelled
        if min(la, lb) < MIN_LABELLED:
            reason = f"{la} and {lb} labelled predictions; at least {MIN_LABELLED} per version are needed"
        else:
            comparison = compare(arm_a, arm_b, rng, metric=metric, cost=cost, margin=margin)
            decision, reason = decide(comparison, la, lb)
            parts["comparison"] = comparison
    return ABReport(
        generated_at=clock.now().isoformat(timespec="seconds"),
        window=dict(window or {}),
        records=RecordCounts(
            predictions=counts.predictions,
            labelled=sum(c.labelled for c in by_version.values()),
            skipped_newer_schema=counts.newer_schema,
        ),
        champion=champion,
        candidate=candidate,
        decision_metric=metric,
        versions=versions,
        **parts,
        decision=decision,
        reason=reason,
    )


def _shadow_mcnemar(pairs: Mapping[tuple[str, str], np.ndarray]) -> ShadowMcNemar | None:
    """Served and shadow predictions of the same requests, paired, where the truth is known
    (the most frequent pair of versions)."""
    if not pairs:
        return None
    (served, shadow), table = max(pairs.items(), key=lambda kv: int(kv[1].sum()))
    result = mcnemar_counts(
        only_a=int(table[1, 0]),
        only_b=int(table[0, 1]),
        both=int(table[1, 1]),
        neither=int(table[0, 0]),
    )
    return ShadowMcNemar(**result, served_version=served, shadow_version=shadow)


def markdown(report: ABReport) -> str:
    lines = [
        "# A/B report",
        "",
        f"Window: {window_text(report.window)}. Champion: **{report.champion}**, candidate: **{report.candidate}**.",
        "",
        f"**Decision: {report.decision}** — {report.reason}",
        "",
        "| version | requests | labelled | accuracy | weighted F1 (95% CI) | macro F1 | latency p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, s in report.versions.items():
        ci = s.weighted_f1_ci95
        f1 = (
            f"{s.weighted_f1:.3f} ({ci[0]:.3f}–{ci[1]:.3f})"
            if s.weighted_f1 is not None and ci is not None
            else "–"
        )
        acc = f"{s.accuracy:.3f}" if s.accuracy is not None else "–"
        mf1 = f"{s.macro_f1:.3f}" if s.macro_f1 is not None else "–"
        lat = (
            f"{s.latency_ms_p50:.3f} / {s.latency_ms_p95:.3f}"
            if s.latency_ms_p50 is not None and s.latency_ms_p95 is not None
            else "–"
        )
        lines.append(f"| {v} | {s.requests} | {s.labelled} | {acc} | {f1} | {mf1} | {lat} |")
    c = report.comparison
    if c:
        lo, hi = c.accuracy_delta_ci95
        flo, fhi = c.weighted_f1_delta_ci95
        gain_low, gain_high = c.metric_gain_always_valid_ci95 or (math.nan, math.nan)
        lat_test = c.latency
        slower = (
            f"- latency: candidate p95 ×{lat_test.p95_ratio:.2f} ({lat_test.p95_diff_ms:+.3f} ms), "
            f"Mann-Whitney p = {lat_test.p_value:.3g} (a slowdown counts from ×{LATENCY_SLOWDOWN} and "
            f"+{LATENCY_MIN_DIFF_MS} ms)"
            if lat_test.p95_ratio is not None
            and lat_test.p95_diff_ms is not None
            and lat_test.p_value is not None
            else "- latency: not measured for both versions"
        )
        lines += [
            "",
            f"- accuracy, candidate − champion: {c.accuracy_delta:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}); "
            f"{c.accuracy_test.method} p = {c.accuracy_test.p_value:.3g}; always-valid p = {c.always_valid_p:.3g}",
            f"- weighted F1, candidate − champion: {c.weighted_f1_delta:+.3f} (bootstrap 95% CI {flo:+.3f} to {fhi:+.3f})",
            slower,
            f"- {c.decision_metric.replace('_', ' ')} gain, always-valid 95% interval: "
            f"{gain_low:+.3f} to {gain_high:+.3f} (not worse when its lower end is above −{c.margin})",
            f"- labelled rows per version still needed for that interval to reach the margin: {c.labelled_per_arm_still_needed or 0:.0f}",
        ]
    if report.shadow_mcnemar:
        lines += ["", f"- shadow (paired, McNemar): {report.shadow_mcnemar.verdict}"]
    return "\n".join([*lines, ""])


def window_text(window: Mapping[str, str] | None) -> str:
    if not window:
        return "all records"
    if "from" in window:
        return f"{window['from']} → {window['to']} (id {window.get('id')})"
    return ", ".join(f"{k} {v}" for k, v in window.items())
