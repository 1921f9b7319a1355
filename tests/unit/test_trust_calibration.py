"""The label-free estimate's trust check, calibrated by simulation on the real model's own
confidences: for a calibrated model each labelled row is right with the probability it
served, and the check must call it untrusted in at most 5% of windows (upper 95% bound ≤ 6%
over 1,000 windows) at every window size; a model 8 points over-confident must be caught."""

from __future__ import annotations

import math

import numpy as np
import pytest
from avsev.monitoring.performance import TRUST_MIN_LABELLED, calibration_check
from avsev.monitoring.rollups import CONFIDENCE_BINS
from avsev_tools.pipeline.train import time_split

WINDOWS = 1000


@pytest.fixture(scope="module")
def confidences(real_data, real_bundle) -> np.ndarray:
    """The top probability the real model serves on its test years."""
    rows = real_data.reports()
    test = time_split([r.get("event_date") for r in rows]).test
    proba = np.asarray(
        real_bundle.model.predict_many(real_bundle.spec.encode_many([rows[i] for i in test]))
    ).reshape(len(test), -1)
    return proba.max(axis=1)


def bins_of(conf: np.ndarray, correct: np.ndarray) -> dict[int, list[float]]:
    """What the rollups keep: per confidence bin, rows, correct rows and confidence sum."""
    out: dict[int, list[float]] = {}
    for b, c, ok in zip(np.floor(conf * CONFIDENCE_BINS).astype(int), conf, correct, strict=True):
        cell = out.setdefault(int(b), [0.0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += float(ok)
        cell[2] += float(c)
    return out


def upper95(k: int, n: int) -> float:
    """Wilson score upper bound of a rate."""
    z = 1.959963984540054
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def untrusted_rate(confidences: np.ndarray, rows: int, shift: float, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    untrusted = 0
    for _ in range(WINDOWS):
        conf = rng.choice(confidences, size=rows, replace=True)
        correct = rng.random(rows) < np.clip(conf - shift, 0, 1)
        untrusted += calibration_check(bins_of(conf, correct), None).verdict == "untrusted"
    return untrusted, WINDOWS


@pytest.mark.parametrize("rows", [30, 100, 300, 1000])
def test_a_calibrated_model_is_called_untrusted_in_at_most_5_percent_of_windows(
    confidences, rows
):
    k, n = untrusted_rate(confidences, rows, 0.0, seed=rows)
    assert upper95(k, n) <= 0.06, (rows, k, n)


def test_a_model_8_points_overconfident_is_caught_on_1000_labelled_rows(confidences):
    k, n = untrusted_rate(confidences, 1000, 0.08, seed=3)
    assert k / n >= 0.8, (k, n)


def test_never_trusted_without_enough_labels(confidences):
    assert calibration_check({}, None).verdict == "no_labels"
    assert not calibration_check({}, None).trusted
    few = confidences[: TRUST_MIN_LABELLED - 1]
    check = calibration_check(bins_of(few, np.ones(len(few), bool)), None)
    assert check.verdict == "not_enough_labels" and not check.trusted
    assert str(TRUST_MIN_LABELLED) in check.why_not[0]


def test_a_badly_calibrated_card_is_untrusted_whatever_the_labels(confidences):
    check = calibration_check({}, card_ece=0.09)
    assert check.verdict == "untrusted" and "0.090" in check.why_not[0]
