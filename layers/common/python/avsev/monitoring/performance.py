"""Model performance from counts: the A/B decision metrics, and estimates without labels.

Decision metrics (the A/B report's `decision_metric`), each a mean over labelled rows with
the variance of that mean, so the always-valid test (mSPRT) and its confidence sequence
apply to any of them:
- `log_loss` (the default): a proper scoring rule — it rewards probabilities that are right,
  not only the top class, so a model cannot win it by shifting its decision rule;
- `accuracy`; `expected_cost`: the mean of a class cost matrix (rows actual, columns
  predicted; accuracy is the 0/1 matrix).
Macro F1 is reported but not offered for decisions: it is not a mean over rows, so its
variance is a bootstrap of the confusion cells, which is smallest exactly when rare classes
are still missing (the first looks); simulated, it made 7–15% false decisions where 5% is
promised (bench/stats_before.json).

Performance without labels (confidence-based performance estimation, as NannyML's CBPE): if
the served probabilities are calibrated, the expected accuracy is the mean top probability,
the expected log loss the mean entropy, and the expected confusion matrix adds each row's
probabilities under its predicted class. It cannot be trusted when the model is not
calibrated (the card's ECE), or under concept drift (the same inputs now mean other
outcomes): the labelled check says so when labels exist.

The held-out fit's probabilities run over-confident on the years after its training rows (the
estimate leans optimistic: bench/stats.py --part lean, docs/statistics.md). The card may
therefore carry a `Recalibration` fitted on the validation years: a straight line from the
mean top probability to accuracy, and from the mean entropy to log loss. The estimate applies
it to the window's means; the served probabilities are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avsev.monitoring.reports import CalibrationCheck, ExpectedPerformance, TrustVerdict
from avsev.serving.card import Card
from avsev.serving.schema import SEVERITIES

DECISION_METRICS = ("log_loss", "accuracy", "expected_cost")
DEFAULT_METRIC = "log_loss"
LOWER_IS_BETTER = {"log_loss", "expected_cost"}
MARGIN = {"log_loss": 0.05, "accuracy": 0.03, "expected_cost": 0.1}
"""Default non-inferiority margins, in the metric's own units: a candidate is promoted without
a significant gain once its always-valid interval shows it at most this much worse. Fixed
before the rollout (`-c ab_margin=` or the A/B function's AB_MARGIN overrides it). The
smaller the margin, the more labelled rows the proof takes (the report says how many)."""


def check_decision_metric(metric: str) -> None:
    """ValueError naming the metrics offered (and why macro F1 is not)."""
    if metric not in DECISION_METRICS:
        why = (
            " (macro F1 is reported, not offered for decisions: no always-valid test holds "
            "for it at rollout sample sizes)"
            if metric == "macro_f1"
            else ""
        )
        raise ValueError(
            f"decision metric {metric!r}: one of {', '.join(DECISION_METRICS)}{why}"
        )
TRUST_ECE = 0.05
"""Above this top-label calibration error (on the card's test rows), the estimate is not trusted."""
TRUST_GAP = 0.03
"""The tolerance on the gap between estimated and realized accuracy on labelled rows: the
estimate is untrusted once the gap is shown to exceed it (beyond its sampling error)."""
TRUST_MIN_LABELLED = 100
"""Below this many labelled rows the check says "not enough labels": the gap's 95% interval
is then wider than ±0.08 for a model near 70% accuracy, too wide to tell anything."""
TRUST_Z = 1.959963984540054
"""Two-sided 95%: the gap's interval is gap ± TRUST_Z × its standard error."""


@dataclass(frozen=True)
class Estimate:
    """A metric as a mean over labelled rows, and the variance of that mean."""

    value: float
    variance: float
    per_row_variance: float


def estimate(
    metric: str,
    confusion: np.ndarray,
    *,
    nll_sum: float = 0.0,
    nll2_sum: float = 0.0,
    cost: np.ndarray | None = None,
) -> Estimate:
    """The metric of one arm from its labelled counts."""
    n = int(confusion.sum())
    if n == 0:
        return Estimate(math.nan, math.inf, math.nan)
    if metric == "accuracy":
        cost = 1.0 - np.eye(len(confusion))
        mean = float(np.trace(confusion)) / n
        return Estimate(mean, mean * (1 - mean) / n, mean * (1 - mean))
    if metric == "expected_cost":
        c = np.asarray(cost if cost is not None else 1.0 - np.eye(len(confusion)), dtype=float)
        mean = float((confusion * c).sum()) / n
        var = max(float((confusion * c**2).sum()) / n - mean**2, 0.0)
        return Estimate(mean, var / n, var)
    if metric == "log_loss":
        mean = nll_sum / n
        var = max(nll2_sum / n - mean**2, 0.0)
        return Estimate(mean, var / n, var)
    check_decision_metric(metric)
    raise AssertionError(metric)


def improvement(metric: str, champion: Estimate, candidate: Estimate) -> tuple[float, float]:
    """Candidate over champion, signed so that positive is better; and its variance."""
    diff = candidate.value - champion.value
    if metric in LOWER_IS_BETTER:
        diff = -diff
    return diff, champion.variance + candidate.variance


def parse_cost_matrix(text: str | None) -> np.ndarray | None:
    """A cost matrix from JSON: {"Fatal": {"None": 10, ...}, ...} (actual → predicted → cost;
    missing cells cost 0 on the diagonal and 1 elsewhere)."""
    if not text:
        return None
    import json

    doc = json.loads(text)
    k = len(SEVERITIES)
    out = 1.0 - np.eye(k)
    for actual, row in doc.items():
        for predicted, value in row.items():
            out[SEVERITIES.index(actual), SEVERITIES.index(predicted)] = float(value)
    return out


# ---- without labels ---------------------------------------------------------------------


RECALIBRATION_KEY = "estimate_recalibration"
"""Where the card's `calibration` holds the estimate's `Recalibration`."""


@dataclass(frozen=True)
class Recalibration:
    """Straight-line maps from a row's top probability to its chance of being right, and from
    its entropy to its expected log loss, fitted by least squares on held-out rows.

    A line, not a curve (temperature scaling, isotonic): the reports only ever see the sums of
    the rollups, never a row, and only a map affine in the per-row quantity commutes with the
    sum, so the mean of the mapped rows is the map of the mean. It applies unchanged to any
    window, day or version rollup, with no query re-run. On the real data a line does
    nearly as well as temperature scaling fitted on the same rows (bench/stats.py --part
    lean)."""

    accuracy: tuple[float, float]
    """(intercept, slope): accuracy ≈ intercept + slope × top probability."""
    log_loss: tuple[float, float]
    """(intercept, slope): log loss ≈ intercept + slope × entropy."""
    rows: int = 0
    fitted_on: str = ""

    def expected_accuracy(self, mean_confidence: float) -> float:
        a, b = self.accuracy
        return min(max(a + b * mean_confidence, 0.0), 1.0)

    def expected_log_loss(self, mean_entropy: float) -> float:
        a, b = self.log_loss
        return max(a + b * mean_entropy, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "linear",
            "accuracy": {"intercept": self.accuracy[0], "slope": self.accuracy[1]},
            "log_loss": {"intercept": self.log_loss[0], "slope": self.log_loss[1]},
            "rows": self.rows,
            "fitted_on": self.fitted_on,
        }

    @staticmethod
    def from_card(card: Card | None) -> Recalibration | None:
        """The card's recalibration (in `calibration`), or None when it has none."""
        doc = card.recalibration() if card is not None else None
        if doc is None:
            return None
        return Recalibration(
            (doc.accuracy.intercept, doc.accuracy.slope),
            (doc.log_loss.intercept, doc.log_loss.slope),
            doc.rows or 0,
            doc.fitted_on or "",
        )


def fit_recalibration(
    labels: Sequence[int], proba: np.ndarray, *, fitted_on: str = ""
) -> Recalibration:
    """Least-squares lines of `correct` on top probability and of −ln p(actual) on entropy,
    over held-out rows (`labels`: class indices; `proba`: n × classes)."""
    p = np.asarray(proba, dtype=float)
    y = np.asarray(labels, dtype=int)
    if len(y) < 2:
        raise ValueError("a recalibration needs at least 2 rows")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    logs = np.log(np.clip(p, 1e-15, None))
    entropy = -(p * logs).sum(axis=1)
    nll = -logs[np.arange(len(y)), y]

    def line(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        if float(np.ptp(x)) == 0.0:
            return float(target.mean() - x.mean()), 1.0
        slope, intercept = np.polyfit(x, target, 1)
        return float(intercept), float(slope)

    return Recalibration(line(confidence, correct), line(entropy, nll), len(y), fitted_on)


def expected_performance(
    requests: int,
    p_max_sum: float,
    entropy_sum: float,
    expected_confusion: np.ndarray,
    recalibration: Recalibration | None = None,
) -> ExpectedPerformance:
    """Confidence-based estimates from the served probabilities (no labels needed). With a
    `recalibration`, expected accuracy and log loss are its maps of the mean top probability
    and mean entropy (the uncorrected values are kept as `raw_*`); recall and F1 stay those of
    the served probabilities."""
    if requests == 0:
        return ExpectedPerformance()
    corrected: dict[str, Any] = {}
    if recalibration is not None:
        corrected = {
            "expected_accuracy": recalibration.expected_accuracy(p_max_sum / requests),
            "expected_log_loss": recalibration.expected_log_loss(entropy_sum / requests),
            "raw_expected_accuracy": p_max_sum / requests,
            "raw_expected_log_loss": entropy_sum / requests,
            "recalibrated": True,
        }
    ec = expected_confusion
    tp = np.diag(ec)
    actual, predicted = ec.sum(axis=1), ec.sum(axis=0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    fields: dict[str, Any] = {
        "expected_accuracy": p_max_sum / requests,
        "expected_log_loss": entropy_sum / requests,
        "expected_recall": {s: float(recall[i]) for i, s in enumerate(SEVERITIES)},
        "expected_f1": {s: float(f1[i]) for i, s in enumerate(SEVERITIES)},
        "expected_weighted_f1": float((f1 * actual).sum() / actual.sum())
        if actual.sum()
        else 0.0,
    }
    return ExpectedPerformance(**{**fields, **corrected})


def calibration_check(
    confidence_bins: Mapping[int, Sequence[float]],
    card_ece: float | None,
    recalibration: Recalibration | None = None,
) -> CalibrationCheck:
    """On labelled rows: top-label ECE, realized vs estimated accuracy, and whether the
    label-free estimate can be trusted. Bins: index → (rows, correct, confidence sum).

    The gap (realized − estimated accuracy) is a mean of per-row `correct − confidence`; for a
    calibrated model each row's `correct` is a Bernoulli draw with the row's confidence, so the
    gap's variance is the mean of c(1 − c) over rows, divided by n. Per bin only the mean
    confidence is known; c̄(1 − c̄) ≥ the bin's mean of c(1 − c) (concavity), so the variance
    used is an upper bound and the test errs towards "trusted". The estimate is **untrusted**
    when the whole 95% interval of the gap lies beyond ±TRUST_GAP (or the card's test ECE is
    above TRUST_ECE): a model whose true gap is within the tolerance is called untrusted in at
    most 2.5% of windows. Below TRUST_MIN_LABELLED rows the verdict is `not_enough_labels`,
    never trusted; with no labels at all it is `no_labels`.

    With a `recalibration` the estimate checked is the one the report gives: each bin's
    expected accuracy is the map of its mean confidence (the ECE stays the served
    probabilities')."""
    n = sum(b[0] for b in confidence_bins.values())
    reasons = []
    if card_ece is not None and card_ece > TRUST_ECE:
        reasons.append(f"the model's test ECE {card_ece:.3f} is above {TRUST_ECE}")
    measured: dict[str, Any] = {}
    enough = n >= TRUST_MIN_LABELLED
    if n:
        correct = sum(b[1] for b in confidence_bins.values())
        ece = sum(abs(b[1] - b[2]) for b in confidence_bins.values()) / n
        # per bin: rows and the expected accuracy of its mean row
        expected = [
            (
                b[0],
                recalibration.expected_accuracy(b[2] / b[0]) if recalibration else b[2] / b[0],
            )
            for b in confidence_bins.values()
            if b[0]
        ]
        realized = correct / n
        estimated = sum(rows * g for rows, g in expected) / n
        variance = sum(rows * g * (1 - g) for rows, g in expected) / n / n
        half = TRUST_Z * math.sqrt(max(variance, 0.0))
        gap = realized - estimated
        measured = {
            "top_label_ece": ece,
            "realized_accuracy": realized,
            "estimated_accuracy": estimated,
            "estimate_error_ci95": [-gap - half, -gap + half],
        }
        if enough and abs(gap) - half > TRUST_GAP:
            reasons.append(
                f"on {int(n)} labelled rows the estimate is off by {-gap:+.3f} "
                f"(95% interval {-gap - half:+.3f} to {-gap + half:+.3f}, beyond the "
                f"±{TRUST_GAP} tolerance): calibration or concept drift"
            )
    verdict: TrustVerdict
    if reasons:
        verdict = "untrusted"
    elif not n:
        verdict = "no_labels"
        reasons.append("no labelled rows: the estimate is unchecked")
    elif not enough:
        verdict = "not_enough_labels"
        reasons.append(
            f"{int(n)} labelled rows, fewer than the {TRUST_MIN_LABELLED} the check needs"
        )
    else:
        verdict = "trusted"
    return CalibrationCheck(
        labelled=int(n),
        card_top_label_ece=card_ece,
        **measured,
        trusted=verdict == "trusted",
        verdict=verdict,
        why_not=reasons,
    )
