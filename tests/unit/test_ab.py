"""A/B analysis over plain records: grouping by served version, tests, the sequential rule."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from ab_traffic import T0, records
from avsev.monitoring.ab import ALPHA, always_valid_p, markdown
from avsev.monitoring.offline import reports_from_records
from avsev.serving.records import OutcomeRecord


def ab_report(predictions, outcomes, **kwargs):
    """The A/B report of records, through the rollup queries (DuckDB) and the counts."""
    return reports_from_records([*predictions, *outcomes], **kwargs).ab


def test_a_better_candidate_is_promoted_and_a_worse_one_rolled_back():
    a_p, a_o = records("1.0.0", 3000, 0.60, 1)
    b_p, b_o = records("1.1.0", 1500, 0.70, 2, start=10_000)
    report = ab_report(a_p + b_p, a_o + b_o)
    assert (report.champion, report.candidate) == ("1.0.0", "1.1.0")
    assert report.decision == "promote"
    c = report.comparison
    assert c.accuracy_delta == pytest.approx(0.10, abs=0.03)
    assert c.accuracy_delta_ci95[0] > 0 and c.weighted_f1_delta_ci95[0] > 0
    assert c.accuracy_test.method == "two_proportion_z" and c.accuracy_test.p_value < 1e-6
    v = report.versions["1.1.0"]
    assert v.requests == 1500 and v.labelled_share == 1.0
    lo, hi = v.weighted_f1_ci95
    assert lo < v.weighted_f1 < hi
    md = markdown(report)
    assert (
        "**Decision: promote**" in md and "always-valid p" in md and "| 1.1.0 | 1500 | 1500 |" in md
    )
    b_p, b_o = records("1.1.0", 1500, 0.50, 3, start=10_000)
    assert ab_report(a_p + b_p, a_o + b_o).decision == "rollback"


def test_small_or_one_sided_data_is_insufficient_not_a_crash():
    assert ab_report([], []).decision == "insufficient_data"
    a_p, a_o = records("1.0.0", 500, 0.6, 1)
    assert ab_report(a_p, a_o).decision == "insufficient_data"
    b_p, _ = records("1.1.0", 100, 0.6, 2, start=10_000)
    report = ab_report(a_p + b_p, a_o)  # the candidate's outcomes have not arrived yet
    assert report.decision == "insufficient_data" and "500 and 0 labelled" in report.reason
    assert "Decision: insufficient_data" in markdown(report)


def test_duplicates_and_late_corrections():
    a_p, a_o = records("1.0.0", 400, 0.6, 1)
    b_p, b_o = records("1.1.0", 400, 0.6, 2, start=10_000)
    once = ab_report(a_p + b_p, a_o + b_o)
    twice = ab_report(
        a_p + b_p + a_p[:200] + b_p[:50], a_o + b_o + a_o[:100]
    )  # Firehose redelivery
    assert twice.versions["1.0.0"].requests == 400
    for version, counted in once.versions.items():  # duplicates change no count
        again = twice.versions[version]
        for key in ("requests", "labelled", "accuracy", "weighted_f1", "macro_f1", "recall"):
            assert getattr(again, key) == getattr(counted, key), key
        # sums of probabilities (DuckDB adds doubles in parallel: equal to rounding)
        assert again.without_labels.expected_accuracy == pytest.approx(
            counted.without_labels.expected_accuracy, rel=1e-12
        )
    # a late correction of the first outcome wins over the first report of it
    fix = OutcomeRecord(
        request_id="late",
        ev_id="EV0",
        timestamp=T0 + dt.timedelta(days=3),
        actual_severity=a_p[0].predicted,
    )
    first_wrong = a_o[0].actual_severity != a_p[0].predicted
    fixed = ab_report(a_p + b_p, [*a_o, fix, *b_o])
    delta = fixed.versions["1.0.0"].accuracy - once.versions["1.0.0"].accuracy
    assert delta == pytest.approx(1 / 400 if first_wrong else 0.0)


def test_continue_while_evidence_is_thin():
    a_p, a_o = records("1.0.0", 200, 0.62, 1)
    b_p, b_o = records("1.1.0", 60, 0.64, 2, start=10_000)
    report = ab_report(a_p + b_p, a_o + b_o)
    assert report.decision == "continue"
    assert report.comparison.labelled_per_arm_still_needed > 0


def test_shadow_predictions_are_compared_pairwise():
    a_p, a_o = records("1.0.0", 300, 0.6, 1)
    s_p, _ = records("2.0.0", 300, 0.7, 1, shadow=True)  # same request ids and events
    report = ab_report(a_p + s_p, a_o)
    m = report.shadow_mcnemar
    assert m.served_version == "1.0.0" and m.shadow_version == "2.0.0"
    assert m.rows == 300
    assert "2.0.0" not in report.versions  # a shadow never counts as a served version


def test_always_valid_p_stays_valid_when_read_every_hour():
    # Given no real difference, and the report read after every batch ("hourly"), the share
    # of experiments ever declared significant stays below alpha — unlike a naive z-test.
    rng = np.random.default_rng(7)
    experiments, looks, per_look = 300, 24, 60
    fooled_always_valid = fooled_naive = 0
    for _ in range(experiments):
        a = rng.random((looks, per_look)) < 0.6
        b = rng.random((looks, per_look)) < 0.6
        ever_av = ever_naive = False
        for k in range(1, looks + 1):
            pa, pb = a[:k].mean(), b[:k].mean()
            n = k * per_look
            var = pa * (1 - pa) / n + pb * (1 - pb) / n
            ever_av |= always_valid_p(pb - pa, var) < ALPHA
            ever_naive |= abs(pb - pa) / np.sqrt(var) > 1.96
        fooled_always_valid += ever_av
        fooled_naive += ever_naive
    assert fooled_always_valid / experiments <= ALPHA
    assert (
        fooled_naive / experiments > ALPHA
    )  # peeking with a fixed-horizon test does inflate errors


def test_slower_candidate_is_rolled_back():
    a_p, a_o = records("1.0.0", 400, 0.6, 1, latency=2.0)
    b_p, b_o = records("1.1.0", 400, 0.6, 2, start=10_000, latency=6.0)
    report = ab_report(a_p + b_p, a_o + b_o)
    assert report.decision == "rollback" and "slower" in report.reason
    # microseconds of difference are noise, however large the ratio
    a_p, a_o = records("1.0.0", 400, 0.6, 1, latency=0.01)
    b_p, b_o = records("1.1.0", 400, 0.6, 2, start=10_000, latency=0.05)
    assert ab_report(a_p + b_p, a_o + b_o).decision != "rollback"


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "expected_cost"])
def test_every_decision_metric_stays_valid_when_read_every_hour(metric):
    """Two arms from the same model and data, the report read after each of 24 batches: the
    share of experiments ever declared different stays at or below alpha, for each metric."""
    from avsev.monitoring.performance import estimate, improvement

    rng = np.random.default_rng(11)
    cost = np.array([[0, 5, 5, 10], [2, 0, 2, 4], [1, 1, 0, 2], [1, 1, 1, 0]], dtype=float)
    experiments, looks, per_look = 200, 24, 60
    fooled = 0
    for _ in range(experiments):
        arms = [{"cm": np.zeros((4, 4), dtype=np.int64), "nll": 0.0, "nll2": 0.0} for _ in range(2)]
        ever = False
        for _ in range(looks):
            for arm in arms:
                actual = rng.choice(4, size=per_look, p=[0.15, 0.09, 0.14, 0.62])
                right = rng.random(per_look) < 0.6
                predicted = np.where(right, actual, (actual + 1 + rng.integers(0, 3, per_look)) % 4)
                np.add.at(arm["cm"], (actual, predicted), 1)
                p_actual = np.where(
                    right, rng.uniform(0.4, 0.9, per_look), rng.uniform(0.02, 0.3, per_look)
                )
                nll = -np.log(p_actual)
                arm["nll"] += nll.sum()
                arm["nll2"] += (nll**2).sum()
            a, b = (
                estimate(
                    metric, arm["cm"], nll_sum=arm["nll"], nll2_sum=arm["nll2"], cost=cost
                )
                for arm in arms
            )
            gain, variance = improvement(metric, a, b)
            ever |= always_valid_p(gain, variance) < ALPHA
        fooled += ever
    assert fooled / experiments <= ALPHA, (metric, fooled)


def test_the_decision_metric_is_a_choice_and_log_loss_by_default():
    a_p, a_o = records("1.0.0", 1500, 0.60, 1)
    b_p, b_o = records("1.1.0", 1500, 0.70, 2, start=10_000)
    default = ab_report(a_p + b_p, a_o + b_o)
    assert default.decision_metric == "log_loss"
    assert default.decision == "promote" and "better on log loss" in default.reason
    for metric in ("accuracy", "expected_cost"):
        report = ab_report(a_p + b_p, a_o + b_o, metric=metric)
        assert report.comparison.decision_metric == metric
        assert report.comparison.metric_gain > 0
    with pytest.raises(ValueError, match="decision metric 'f2'"):
        ab_report(a_p + b_p, a_o + b_o, metric="f2")
    # reported, but no always-valid test holds for it: not offered for decisions
    assert default.versions["1.1.0"].macro_f1 is not None
    with pytest.raises(ValueError, match="macro F1 is reported, not offered"):
        ab_report(a_p + b_p, a_o + b_o, metric="macro_f1")


def test_not_worse_is_an_always_valid_bound_against_the_margin():
    """A candidate with the champion's quality is promoted as not worse once the gain's
    always-valid interval clears −margin, and not before; the interval is the inverted
    always-valid p: |gain| beyond its half-width exactly when p < alpha."""
    from avsev.monitoring.ab import confidence_half_width, metric_decision

    variance = 0.0004
    half = confidence_half_width(variance)
    assert always_valid_p(half * 1.0001, variance) < ALPHA < always_valid_p(half * 0.9999, variance)
    assert metric_decision(0.0, variance, margin=half * 0.99) == "undecided"
    assert metric_decision(0.0, variance, margin=half * 1.01) == "not_worse"
    assert metric_decision(half * 1.01, variance, margin=0.0) == "better"
    assert metric_decision(-half * 1.01, variance, margin=1.0) == "worse"
