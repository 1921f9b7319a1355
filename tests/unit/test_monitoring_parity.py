"""Parity: on windows the old in-memory code could hold (tests/legacy), the SQL-rollup path
gives the same counts, the same decisions and the same statistics — to 1e-9 where computed
from exact counts; bootstrap intervals, latency quantiles and the latency test within their
stated noise (resampled confusion cells instead of rows; 1%-wide latency bins)."""

from __future__ import annotations

import datetime as dt

import pytest
from ab_traffic import T0, records
from avsev.monitoring.offline import drift_reports_of_rows, reports_from_records
from avsev.monitoring.rollups import SMALL_SAMPLE
from avsev.serving.records import OutcomeRecord
from legacy import ab_inmemory, drift_inmemory

EXACT = 1e-9
BOOTSTRAP_NOISE = 0.015
"""Bootstrap CI bounds from 1,000 resamples move by about this much between seeds."""
LATENCY_BIN = 0.01


def _late(preds, outs, days: int):
    return [o.model_copy(update={"timestamp": o.timestamp + dt.timedelta(days=days)}) for o in outs]


def scenario(name: str):
    a_p, a_o = records("1.0.0", 1200, 0.62, 1)
    b_p, b_o = records("1.1.0", 500, 0.75, 2, start=10_000, latency=0.12)
    if name == "promote":
        return a_p + b_p, a_o + b_o
    if name == "rollback":
        w_p, w_o = records("1.1.0", 500, 0.50, 3, start=10_000)
        return a_p + w_p, a_o + w_o
    if name == "late_duplicate_corrected":
        # outcomes two days late, Firehose redelivery, and corrections later still
        fixes = [
            OutcomeRecord(
                request_id=f"fix{i}",
                ev_id=p.ev_id,
                timestamp=T0 + dt.timedelta(days=3),
                actual_severity=p.predicted,
            )
            for i, p in enumerate(a_p[:40])
        ]
        return a_p + b_p + a_p[:300] + b_p[:20], _late(a_p, a_o + b_o, 2) + a_o[:50] + fixes
    if name == "conflicting_outcomes":
        # a body naming events twice (the later wins), and corrections received later whose
        # clients date them earlier (received time wins over the client's time)
        body = [
            OutcomeRecord(
                request_id="body",
                ev_id=p.ev_id,
                timestamp=T0 + dt.timedelta(hours=1),
                actual_severity=severity,
                observed_at=dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
                seq=2 * i + k,
            )
            for i, p in enumerate(a_p[:80])
            for k, severity in enumerate(
                ("Fatal" if p.predicted != "Fatal" else "None", p.predicted)
            )
        ]
        fixes = [
            OutcomeRecord(
                request_id="fix",
                ev_id=p.ev_id,
                timestamp=T0 + dt.timedelta(hours=2),
                actual_severity=o.actual_severity,
                observed_at=T0 - dt.timedelta(days=30),
                seq=i,
            )
            for i, (p, o) in enumerate(zip(a_p[60:100], a_o[60:100], strict=True))
        ]
        return a_p + b_p, a_o + b_o + body[::-1] + fixes
    if name == "shadow":
        s_p, _ = records("2.0.0", 1200, 0.66, 1, shadow=True)
        return a_p + b_p + s_p, a_o + b_o
    if name == "three_versions":
        c_p, c_o = records("0.9.0", 200, 0.55, 4, start=20_000)
        return a_p + b_p + c_p, a_o + b_o + c_o
    if name == "one_version":
        return a_p, a_o
    if name == "empty":
        return [], []
    raise ValueError(name)


SCENARIOS = [
    "promote",
    "rollback",
    "late_duplicate_corrected",
    "conflicting_outcomes",
    "shadow",
    "three_versions",
    "one_version",
    "empty",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_ab_report_matches_the_in_memory_report(name):
    predictions, outcomes = scenario(name)
    old = ab_inmemory.ab_report(predictions, outcomes)
    # the report as its JSON (what readers see) against the in-memory report's dict
    new = reports_from_records([*predictions, *outcomes], metric="accuracy").ab.dump()

    assert new["decision"] == old["decision"]
    assert (new["champion"], new["candidate"]) == (old["champion"], old["candidate"])
    assert new["records"]["predictions"] == old["records"]["predictions"]
    assert set(new["versions"]) == set(old["versions"])
    for version, o in old["versions"].items():
        n = new["versions"][version]
        assert (n["requests"], n["labelled"]) == (o["requests"], o["labelled"])
        for key in ("labelled_share", "accuracy", "weighted_f1", "macro_f1"):
            if key in o:
                assert n[key] == pytest.approx(o[key], abs=EXACT)
        for key in ("predicted_mix", "recall"):
            for cls, value in o.get(key, {}).items():
                assert n[key][cls] == pytest.approx(value, abs=EXACT)
        for key in ("weighted_f1_ci95", "macro_f1_ci95"):
            if key in o:
                assert n[key] == pytest.approx(o[key], abs=BOOTSTRAP_NOISE)
        for key in ("latency_ms_p50", "latency_ms_p95"):
            if o[key] is not None:
                assert n[key] == pytest.approx(o[key], rel=LATENCY_BIN)
    if "comparison" in old:
        o, n = old["comparison"], new["comparison"]
        for key in ("accuracy_delta", "always_valid_p", "weighted_f1_delta"):
            assert n[key] == pytest.approx(o[key], abs=EXACT)
        assert n["accuracy_delta_ci95"] == pytest.approx(o["accuracy_delta_ci95"], abs=EXACT)
        assert n["accuracy_test"]["method"] == o["accuracy_test"]["method"]
        assert n["accuracy_test"]["p_value"] == pytest.approx(
            o["accuracy_test"]["p_value"], abs=EXACT
        )
        # labelled_per_arm_needed is the decision rule's, not a count: the oracle's rule (a
        # fixed-horizon sample size) was replaced by the always-valid margin (docs/statistics.md)
        assert n["weighted_f1_delta_ci95"] == pytest.approx(
            o["weighted_f1_delta_ci95"], abs=BOOTSTRAP_NOISE
        )
        assert n["latency"]["p95_ratio"] == pytest.approx(
            o["latency"]["p95_ratio"], rel=2 * LATENCY_BIN
        )
        assert n["latency"]["p_value"] == pytest.approx(o["latency"]["p_value"], abs=0.05)
    if "shadow_mcnemar" in old:
        o, n = old["shadow_mcnemar"], new["shadow_mcnemar"]
        for key in ("rows", "only_a_correct", "only_b_correct", "both_correct", "both_wrong"):
            assert n[key] == o[key]
        assert n["p_value"] == pytest.approx(o["p_value"], abs=EXACT)
    else:
        assert "shadow_mcnemar" not in new


def test_the_scenarios_cover_every_decision():
    """A guard against a vacuous parity table: the windows lead to different decisions."""
    decisions = {ab_inmemory.ab_report(*scenario(n))["decision"] for n in SCENARIOS}
    assert {"promote", "rollback", "insufficient_data"} <= decisions


@pytest.mark.parametrize("rows", [300, SMALL_SAMPLE, 3000])
def test_drift_report_matches_the_in_memory_report(real_data, real_bundle, rows):
    card = real_bundle.card
    sample = [dict(r) for r in real_data.reports()[-rows:]]
    for r in sample[: rows // 3]:  # move a third of the rows north: some drift to find
        if r.get("dec_latitude") is not None:
            r["dec_latitude"] = min(90.0, r["dec_latitude"] + 3.0)
    old = drift_inmemory.drift_report(card.to_dict(), sample)
    new = drift_reports_of_rows(card, [sample])[0].dump()

    assert new["rows"] == old["rows"]
    # the value tests as before; issue 13 adds missing-share drift (it can only add drift)
    value_drifted = [n for n in old["features"] if new["features"][n]["value_drift"]]
    assert value_drifted == old["drifted_features"]
    assert set(old["drifted_features"]) <= set(new["drifted_features"])
    assert new["dataset_drift"] or not old["dataset_drift"]
    assert new["missing_rate_changes"] == old["missing_rate_changes"]
    for name, o in old["features"].items():
        n = new["features"][name]
        assert (n["test"], n["rows"], n["value_drift"]) == (o["test"], o["rows"], o["drift"]), name
        assert n["missing_rate_cur"] == o["missing_rate_cur"]
        if "psi" in o:
            assert n["psi"] == pytest.approx(o["psi"], abs=EXACT), name
        if o["kind"] == "numeric" and "mean_cur" in o:
            assert n["mean_cur"] == pytest.approx(o["mean_cur"], abs=EXACT), name
        if o["test"] in ("ks", "chi_square_two_sample", "jensen_shannon"):
            # exact: values themselves at ≤ SMALL_SAMPLE rows, category or integer counts above
            assert n["statistic"] == pytest.approx(o["statistic"], abs=EXACT), name
            assert n.get("p_value", 0) == pytest.approx(o.get("p_value", 0), abs=EXACT), name
        elif o["test"] == "wasserstein_normed":
            # the fine grid: exact for integer features, half a grid step (1/512 of the
            # reference range) for the others
            assert n["statistic"] == pytest.approx(o["statistic"], abs=0.01), name
    assert {n for n, r in old["features"].items() if r["test"] != "skipped"}  # not vacuous
