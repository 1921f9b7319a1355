"""A/B analysis of model versions from prediction and outcome records.

Versions are told apart by the model version that really served each request (alias
routing is random per invocation). The decision rule uses an always-valid p-value (a
mixture sequential probability ratio test, Johari et al. 2017) on the accuracy difference,
so reading the report every hour does not inflate false decisions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from avsev.monitoring.metrics import confusion, f1_scores, macro_f1, weighted_f1
from avsev.monitoring.stats import mcnemar
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.schema import SEVERITIES
from scipy import stats

ALPHA = 0.05
POWER = 0.8
MIN_LABELLED = 30
"""Per version, before any test is run."""
TAU = 0.05
"""mSPRT mixture scale: the accuracy differences we care about are a few points."""
NON_INFERIORITY = 0.02
"""Promote without a significant gain once enough evidence says the candidate is at most this much worse."""
LATENCY_SLOWDOWN = 1.25
LATENCY_MIN_DIFF_MS = 1.0
"""A slowdown counts when p95 grows by 25% and by at least this much (µs-level noise does not)."""
BOOTSTRAP = 1000
FISHER_BELOW = 5
IDX = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Joined:
    """One served prediction, with its true severity when known."""

    record: PredictionRecord
    actual: str | None


def dedupe_predictions(records: Iterable[PredictionRecord]) -> list[PredictionRecord]:
    """Firehose may deliver a record twice: keep one per (request, event, served/shadow, version)."""
    seen: dict[tuple[str, str, bool, str], PredictionRecord] = {}
    for r in records:
        seen.setdefault((r.request_id, r.ev_id, r.shadow, r.model_version), r)
    return list(seen.values())


def latest_outcomes(records: Iterable[OutcomeRecord]) -> dict[str, str]:
    """The latest true severity per event (late corrections win): the latest received, then
    the greater request id, then the later in its body (the rollups' LATEST_OUTCOME_ORDER)."""
    best: dict[str, OutcomeRecord] = {}

    def key(r: OutcomeRecord) -> tuple[dt.datetime, str, int]:
        return (r.timestamp, r.request_id, -1 if r.seq is None else r.seq)

    for r in records:
        current = best.get(r.ev_id)
        if current is None or key(r) > key(current):
            best[r.ev_id] = r
    return {ev: r.actual_severity for ev, r in best.items()}


def join(predictions: Sequence[PredictionRecord], outcomes: Mapping[str, str]) -> list[Joined]:
    return [Joined(p, outcomes.get(p.ev_id)) for p in predictions if not p.shadow]


def bootstrap_ci(
    values: Sequence[tuple[int, int]], stat: Any, rng: np.random.Generator
) -> tuple[float, float]:
    if not values:
        return (math.nan, math.nan)
    y = np.array([v[0] for v in values])
    p = np.array([v[1] for v in values])
    n = len(y)
    draws = rng.integers(0, n, size=(BOOTSTRAP, n))
    samples = [stat(y[d], p[d]) for d in draws]
    return (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))


def version_summary(rows: Sequence[Joined], rng: np.random.Generator) -> dict[str, Any]:
    labelled = [(IDX[j.actual], IDX[j.record.predicted]) for j in rows if j.actual is not None]
    latency = np.array([j.record.latency_ms for j in rows], dtype=float)
    mix = {s: 0 for s in SEVERITIES}
    for j in rows:
        mix[j.record.predicted] += 1
    out: dict[str, Any] = {
        "requests": len(rows),
        "labelled": len(labelled),
        "labelled_share": len(labelled) / len(rows) if rows else 0.0,
        "predicted_mix": {s: n / max(len(rows), 1) for s, n in mix.items()},
        "latency_ms_p50": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if len(latency) else None,
    }
    if labelled:
        y = [a for a, _ in labelled]
        p = [b for _, b in labelled]
        cm = confusion(y, p)
        _, recall, _ = f1_scores(cm)
        out |= {
            "accuracy": float(np.mean(np.array(y) == np.array(p))),
            "weighted_f1": weighted_f1(y, p),
            "weighted_f1_ci95": bootstrap_ci(labelled, weighted_f1, rng),
            "macro_f1": macro_f1(y, p),
            "macro_f1_ci95": bootstrap_ci(labelled, macro_f1, rng),
            "recall": {s: float(recall[i]) for i, s in enumerate(SEVERITIES)},
        }
    return out


def always_valid_p(diff: float, variance: float, tau: float = TAU) -> float:
    """mSPRT with a normal mixture N(0, tau²) over the effect, for an estimate with the
    given variance: 1/Λ is a p-value valid at any number of looks."""
    if variance <= 0:
        return 1.0
    ratio = variance / (variance + tau**2)
    log_lambda = 0.5 * math.log(ratio) + diff**2 * tau**2 / (2 * variance * (variance + tau**2))
    return float(min(1.0, math.exp(-log_lambda)))


def accuracy_test(correct_a: int, n_a: int, correct_b: int, n_b: int) -> dict[str, Any]:
    """Two-proportion z-test, or Fisher's exact test when a cell is small."""
    table = [[correct_a, n_a - correct_a], [correct_b, n_b - correct_b]]
    if min(min(r) for r in table) < FISHER_BELOW:
        _, p = stats.fisher_exact(table)
        return {"method": "fisher_exact", "p_value": float(p)}
    pa, pb = correct_a / n_a, correct_b / n_b
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se if se > 0 else 0.0
    return {"method": "two_proportion_z", "z": z, "p_value": float(2 * stats.norm.sf(abs(z)))}


def sample_size_per_arm(
    p_a: float, p_b: float, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """Labelled rows per version to detect the observed accuracy difference (fixed-horizon)."""
    delta = abs(p_b - p_a)
    if delta == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.ceil(z**2 * (p_a * (1 - p_a) + p_b * (1 - p_b)) / delta**2))


def compare(
    champion: Sequence[Joined], candidate: Sequence[Joined], rng: np.random.Generator
) -> dict[str, Any]:
    a = [(IDX[j.actual], IDX[j.record.predicted]) for j in champion if j.actual is not None]
    b = [(IDX[j.actual], IDX[j.record.predicted]) for j in candidate if j.actual is not None]
    ca, cb = sum(y == p for y, p in a), sum(y == p for y, p in b)
    pa, pb = ca / len(a), cb / len(b)
    diff = pb - pa
    variance = pa * (1 - pa) / len(a) + pb * (1 - pb) / len(b)
    se = math.sqrt(variance)
    ya, pa_ = np.array([y for y, _ in a]), np.array([p for _, p in a])
    yb, pb_ = np.array([y for y, _ in b]), np.array([p for _, p in b])
    draws = [
        weighted_f1(yb[i], pb_[i]) - weighted_f1(ya[j], pa_[j])
        for i, j in zip(
            rng.integers(0, len(b), (BOOTSTRAP, len(b))),
            rng.integers(0, len(a), (BOOTSTRAP, len(a))),
            strict=True,
        )
    ]
    lat_a = [j.record.latency_ms for j in champion]
    lat_b = [j.record.latency_ms for j in candidate]
    latency = stats.mannwhitneyu(lat_b, lat_a, alternative="greater") if lat_a and lat_b else None
    needed = sample_size_per_arm(pa, pb)
    return {
        "accuracy_delta": diff,
        "accuracy_delta_ci95": (diff - 1.96 * se, diff + 1.96 * se),
        "accuracy_test": accuracy_test(ca, len(a), cb, len(b)),
        "always_valid_p": always_valid_p(diff, variance),
        "weighted_f1_delta": weighted_f1(yb, pb_) - weighted_f1(ya, pa_),
        "weighted_f1_delta_ci95": (
            float(np.percentile(draws, 2.5)),
            float(np.percentile(draws, 97.5)),
        ),
        "latency": {
            "test": "mann_whitney_u (candidate slower)",
            "p_value": float(latency.pvalue) if latency else None,
            "p95_ratio": (
                float(np.percentile(lat_b, 95)) / max(float(np.percentile(lat_a, 95)), 1e-9)
            )
            if lat_a and lat_b
            else None,
            "p95_diff_ms": float(np.percentile(lat_b, 95) - np.percentile(lat_a, 95))
            if lat_a and lat_b
            else None,
        },
        "labelled_per_arm_needed": needed,
        "labelled_per_arm_still_needed": max(0.0, needed - min(len(a), len(b))) if needed else None,
    }


def decide(comparison: Mapping[str, Any], n_a: int, n_b: int) -> tuple[str, str]:
    """promote / rollback / continue, and why."""
    lat = comparison["latency"]
    if (
        lat["p_value"] is not None
        and lat["p_value"] < ALPHA
        and (lat["p95_ratio"] or 0) > LATENCY_SLOWDOWN
        and (lat["p95_diff_ms"] or 0) >= LATENCY_MIN_DIFF_MS
    ):
        return (
            "rollback",
            f"the candidate is slower (p95 ×{lat['p95_ratio']:.2f}, p = {lat['p_value']:.3g})",
        )
    p = comparison["always_valid_p"]
    diff = comparison["accuracy_delta"]
    if p < ALPHA:
        if diff > 0:
            return (
                "promote",
                f"the candidate is more accurate by {diff:+.3f} (always-valid p = {p:.3g})",
            )
        return (
            "rollback",
            f"the candidate is less accurate by {diff:+.3f} (always-valid p = {p:.3g})",
        )
    low = comparison["accuracy_delta_ci95"][0]
    needed = comparison["labelled_per_arm_needed"]
    if needed is not None and min(n_a, n_b) >= needed and low > -NON_INFERIORITY:
        return (
            "promote",
            f"no significant difference after {min(n_a, n_b)} labelled rows per arm and the candidate is at most {NON_INFERIORITY:.0%} worse",
        )
    return (
        "continue",
        f"not enough evidence yet (always-valid p = {p:.3g}, accuracy delta {diff:+.3f})",
    )


def ab_report(
    predictions: Iterable[PredictionRecord],
    outcomes: Iterable[OutcomeRecord],
    *,
    champion: str | None = None,
    candidate: str | None = None,
    window: Mapping[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The A/B report for a window of records. Champion and candidate default to the most
    and second-most served model versions."""
    rng = np.random.default_rng(seed)
    preds = dedupe_predictions(predictions)
    truths = latest_outcomes(outcomes)
    served = join(preds, truths)
    by_version: dict[str, list[Joined]] = {}
    for j in served:
        by_version.setdefault(j.record.model_version, []).append(j)
    ranked = sorted(by_version, key=lambda v: len(by_version[v]), reverse=True)
    champion = champion or (ranked[0] if ranked else None)
    candidate = candidate or next((v for v in ranked if v != champion), None)
    base: dict[str, Any] = {
        "report": "ab",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "window": dict(window or {}),
        "records": {"predictions": len(preds), "outcomes": len(truths)},
        "champion": champion,
        "candidate": candidate,
        "versions": {v: version_summary(rows, rng) for v, rows in by_version.items()},
    }
    shadow = _shadow_mcnemar(preds, truths)
    if shadow:
        base["shadow_mcnemar"] = shadow
    if not champion or not candidate:
        return base | {
            "decision": "insufficient_data",
            "reason": "records from two model versions are needed",
        }
    la, lb = (
        sum(j.actual is not None for j in by_version.get(v, [])) for v in (champion, candidate)
    )
    if min(la, lb) < MIN_LABELLED:
        return base | {
            "decision": "insufficient_data",
            "reason": f"{la} and {lb} labelled predictions; at least {MIN_LABELLED} per version are needed",
        }
    comparison = compare(by_version[champion], by_version[candidate], rng)
    decision, reason = decide(comparison, la, lb)
    return base | {"comparison": comparison, "decision": decision, "reason": reason}


def _shadow_mcnemar(
    preds: Sequence[PredictionRecord], truths: Mapping[str, str]
) -> dict[str, Any] | None:
    """Served and shadow predictions of the same requests, paired, where the truth is known."""
    served = {(p.request_id, p.ev_id): p for p in preds if not p.shadow}
    pairs = [
        (served[(s.request_id, s.ev_id)], s)
        for s in preds
        if s.shadow and (s.request_id, s.ev_id) in served and s.ev_id in truths
    ]
    if not pairs:
        return None
    ok_served = [a.predicted == truths[a.ev_id] for a, _ in pairs]
    ok_shadow = [b.predicted == truths[b.ev_id] for _, b in pairs]
    result = mcnemar(ok_served, ok_shadow)
    return result | {
        "served_version": pairs[0][0].model_version,
        "shadow_version": pairs[0][1].model_version,
    }


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# A/B report",
        "",
        f"Window: {window_text(report.get('window'))}. Champion: **{report.get('champion')}**, candidate: **{report.get('candidate')}**.",
        "",
        f"**Decision: {report['decision']}** — {report.get('reason', '')}",
        "",
        "| version | requests | labelled | accuracy | weighted F1 (95% CI) | macro F1 | latency p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, s in report["versions"].items():
        ci = s.get("weighted_f1_ci95")
        f1 = f"{s['weighted_f1']:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if "weighted_f1" in s else "–"
        acc = f"{s['accuracy']:.3f}" if "accuracy" in s else "–"
        mf1 = f"{s['macro_f1']:.3f}" if "macro_f1" in s else "–"
        lat = (
            f"{s['latency_ms_p50']:.3f} / {s['latency_ms_p95']:.3f}"
            if s["latency_ms_p50"] is not None
            else "–"
        )
        lines.append(f"| {v} | {s['requests']} | {s['labelled']} | {acc} | {f1} | {mf1} | {lat} |")
    c = report.get("comparison")
    if c:
        lo, hi = c["accuracy_delta_ci95"]
        flo, fhi = c["weighted_f1_delta_ci95"]
        lines += [
            "",
            f"- accuracy, candidate − champion: {c['accuracy_delta']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}); "
            f"{c['accuracy_test']['method']} p = {c['accuracy_test']['p_value']:.3g}; always-valid p = {c['always_valid_p']:.3g}",
            f"- weighted F1, candidate − champion: {c['weighted_f1_delta']:+.3f} (bootstrap 95% CI {flo:+.3f} to {fhi:+.3f})",
            f"- latency: candidate p95 ×{c['latency']['p95_ratio']:.2f} ({c['latency']['p95_diff_ms']:+.3f} ms), "
            f"Mann-Whitney p = {c['latency']['p_value']:.3g} (a slowdown counts from ×{LATENCY_SLOWDOWN} and "
            f"+{LATENCY_MIN_DIFF_MS} ms)",
            f"- labelled rows per version still needed to detect this difference: {c['labelled_per_arm_still_needed'] or 0:.0f}",
        ]
    if "shadow_mcnemar" in report:
        lines += ["", f"- shadow (paired, McNemar): {report['shadow_mcnemar']['verdict']}"]
    return "\n".join([*lines, ""])


def window_text(window: Mapping[str, str] | None) -> str:
    if not window:
        return "all records"
    if "from" in window:
        return f"{window['from']} → {window['to']} (id {window.get('id')})"
    return ", ".join(f"{k} {v}" for k, v in window.items())
