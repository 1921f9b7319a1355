"""The label-free estimate's recalibration: a model that serves over-confident probabilities
makes the plain estimate optimistic; the straight-line maps fitted on held-out rows bring the
estimate (accuracy and log loss) and its labelled check back to the truth, through the same
functions the drift report calls, and from the card where `avsev train` stores them."""

from __future__ import annotations

import numpy as np
import pytest
from avsev.monitoring.performance import (
    RECALIBRATION_KEY,
    Recalibration,
    calibration_check,
    expected_performance,
    fit_recalibration,
)
from avsev.monitoring.rollups import CONFIDENCE_BINS
from card_support import card_with


def window(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True class probabilities, labels drawn from them, and what an over-confident model
    serves: the true probabilities sharpened (temperature 0.6)."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet([0.6, 1.0, 1.5, 2.5], size=rows)
    labels = (rng.random((rows, 1)) > np.cumsum(truth, axis=1)).sum(axis=1).clip(0, 3)
    sharp = truth ** (1 / 0.6)
    return truth, labels, sharp / sharp.sum(axis=1, keepdims=True)


def sums(served: np.ndarray) -> tuple[int, float, float, np.ndarray]:
    """What the `served` rollups keep of a window."""
    pred = served.argmax(axis=1)
    expected = np.stack([served[pred == k].sum(axis=0) for k in range(4)], axis=1)
    entropy = -(served * np.log(np.clip(served, 1e-15, None))).sum(axis=1)
    return len(served), float(served.max(axis=1).sum()), float(entropy.sum()), expected


def bins(served: np.ndarray, labels: np.ndarray) -> dict[int, list[float]]:
    """What the `labels` rollups keep: per confidence bin, rows, correct rows, confidence sum."""
    out: dict[int, list[float]] = {}
    conf = served.max(axis=1)
    right = served.argmax(axis=1) == labels
    for b, c, ok in zip(np.floor(conf * CONFIDENCE_BINS).astype(int), conf, right, strict=True):
        cell = out.setdefault(int(b), [0.0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += float(ok)
        cell[2] += float(c)
    return out


@pytest.fixture(scope="module")
def fitted() -> Recalibration:
    _, labels, served = window(20000, seed=1)
    return fit_recalibration(labels, served, fitted_on="synthetic validation rows")


def test_the_recalibrated_estimate_finds_the_truth_where_the_plain_one_is_optimistic(fitted):
    truth, _, served = window(20000, seed=2)
    pred = served.argmax(axis=1)
    true_accuracy = float(truth[np.arange(len(truth)), pred].mean())
    true_log_loss = float(-(truth * np.log(served)).sum(axis=1).mean())

    plain = expected_performance(*sums(served))
    fixed = expected_performance(*sums(served), fitted)

    assert plain.expected_accuracy - true_accuracy > 0.05  # the lean this fixes
    assert true_log_loss - plain.expected_log_loss > 0.1
    assert abs(fixed.expected_accuracy - true_accuracy) < 0.01
    assert abs(fixed.expected_log_loss - true_log_loss) < 0.02
    assert fixed.recalibrated is True
    assert fixed.raw_expected_accuracy == pytest.approx(plain.expected_accuracy)
    assert fixed.raw_expected_log_loss == pytest.approx(plain.expected_log_loss)
    assert fixed.expected_f1 == plain.expected_f1  # the served probabilities' own
    assert "recalibrated" not in plain.dump()


def test_the_labelled_check_checks_the_estimate_the_report_gives(fitted):
    _, labels, served = window(3000, seed=3)
    realized = float((served.argmax(axis=1) == labels).mean())

    plain = calibration_check(bins(served, labels), None)
    fixed = calibration_check(bins(served, labels), None, fitted)

    assert plain.verdict == "untrusted"
    assert fixed.verdict == "trusted"
    assert fixed.realized_accuracy == pytest.approx(realized)
    low, high = fixed.estimate_error_ci95
    assert low <= fixed.estimated_accuracy - realized <= high
    assert fixed.top_label_ece == pytest.approx(plain.top_label_ece)  # the model's own


def test_without_recalibration_the_check_is_unchanged():
    _, labels, served = window(500, seed=4)
    b = bins(served, labels)
    n = len(labels)
    conf = sum(cell[2] for cell in b.values()) / n
    check = calibration_check(b, None)
    assert check.estimated_accuracy == pytest.approx(conf)
    # variance: the rows of each bin at its mean confidence c, c(1 - c) each
    var = sum(c[2] * (1 - c[2] / c[0]) for c in b.values()) / n / n
    gap = check.estimated_accuracy - check.realized_accuracy
    assert check.estimate_error_ci95[1] - gap == pytest.approx(1.959963984540054 * var**0.5)


def test_the_card_carries_the_recalibration(fitted):
    card = card_with(calibration={RECALIBRATION_KEY: fitted.to_dict()})
    assert Recalibration.from_card(card) == fitted
    assert Recalibration.from_card(card_with(calibration={"top_label_ece": 0.02})) is None
    assert Recalibration.from_card(card_with(calibration=None)) is None
    assert Recalibration.from_card(None) is None


def test_a_constant_confidence_fits_a_shift():
    proba = np.tile([0.7, 0.1, 0.1, 0.1], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    r = fit_recalibration(labels, proba)
    assert r.expected_accuracy(0.7) == pytest.approx(0.6)


def test_train_stores_the_recalibration_fitted_on_validation(synthetic_model_dir):
    import json

    training = json.loads((synthetic_model_dir / "training.json").read_text())
    r = Recalibration.from_card(card_with(calibration=training["calibration"]))  # as the build
    assert r is not None
    assert r.rows == training["split"]["valid"]
    assert r.fitted_on.startswith("validation rows")
    assert 0.0 < r.accuracy[1] < 3.0
