"""Drift statistics: evaluated over 100 seeds on real rows, and their edge cases."""

from __future__ import annotations

import datetime as dt

import pytest
from avsev.monitoring.evaluation import move_category_share, rates, sample, split_reference
from avsev.monitoring.offline import drift_reports_of_rows, reports_from_records
from avsev.monitoring.rollups import SMALL_SAMPLE
from avsev.serving.records import OutcomeRecord, PredictionRecord

SEEDS = 100
ROWS = 1000


@pytest.fixture(scope="module")
def population(real_data, real_bundle):
    """A card whose reference is one half of the real rows; samples come from the other."""
    return split_reference(real_bundle.card, real_data.reports(), real_bundle.spec)


@pytest.fixture(scope="module")
def measured(population):
    card, other = population
    return rates(card, other, seeds=SEEDS, n=ROWS)


def test_same_data_rarely_flags_dataset_drift(measured):
    assert measured["same_data_dataset_drift_rate"] <= 0.05


def test_half_sd_shift_of_one_number_is_caught(measured):
    assert measured["dec_latitude_half_sd_shift_caught_rate"] >= 0.95


def test_fifteen_point_change_of_one_category_is_caught(measured):
    assert measured["weather_condition_15pt_share_change_caught_rate"] >= 0.95


def test_blanking_half_of_the_top_feature_is_dataset_drift(measured, real_bundle):
    """Issue 13: the importance-weighted rule (dataset drift when the drifted features carry
    ≥ 40% of the model's importance) catches what the count rule (≥ 50% of features) cannot:
    half of the top feature gone blank. Its false alarms are in the same-data rate above."""
    assert real_bundle.card.importance, "the card carries the features' mean |SHAP|"
    (name,) = [k for k in measured if k.endswith("_half_blank_dataset_drift_rate")]
    assert name.startswith("broad_phase_of_flight")
    assert measured[name] >= 0.95


def test_the_changes_are_real(population):
    # The scenarios really move the data (a guard against a vacuous evaluation).
    _, other = population
    rows = sample(other, 3, ROWS)
    before = sum(r.get("weather_condition") == "IMC" for r in rows)
    move_category_share("weather_condition", "VMC", "IMC")(rows, 3)
    assert sum(r.get("weather_condition") == "IMC" for r in rows) - before == int(0.15 * ROWS)


def test_large_samples_use_distances(population):
    card, other = population
    (report,) = drift_reports_of_rows(card, [sample(other, 1, 3000)])
    assert report.rows > SMALL_SAMPLE
    tests = {r.test for r in report.features.values()}
    assert tests <= {"wasserstein_normed", "jensen_shannon"}
    assert not report.dataset_drift
    for r in report.features.values():
        assert r.psi is not None and r.threshold == 0.1


def test_unseen_categories_missing_rates_and_small_data_never_crash(real_bundle):
    card = real_bundle.card
    assert drift_reports_of_rows(card, [[]])[0].status == "insufficient_data"
    at = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = [
        {
            "engine_type": "Hybrid Rocket",
            "make": f"never-seen-{i % 7}",
            "weather_condition": "IMC",
            "dec_latitude": 40.0,
        }
        for i in range(200)
    ]
    records = [
        PredictionRecord(
            request_id=f"r{i}",
            ev_id=f"EV{i}",
            timestamp=at,
            model_name=card.name,
            model_version=card.version,
            function_version="1",
            features=row,
            probabilities={"Fatal": 1.0, "Serious": 0.0, "Minor": 0.0, "None": 0.0},
            predicted="Fatal",
            latency_ms=0.1,
        )
        for i, row in enumerate(rows)
    ] + [
        OutcomeRecord(request_id=f"o{i}", ev_id=f"EV{i}", timestamp=at, actual_severity="None")
        for i in range(200)
    ]
    report = reports_from_records(records, card=card).drift
    make = report.features["make"]
    assert make.unseen_in_other_bucket == 200 and len(make.unseen_categories) == 7
    engine = report.features["engine_type"]
    assert engine.unseen_categories == {"Hybrid Rocket": 200} and engine.drift
    assert "dec_longitude" in report.missing_rate_changes  # 100% missing now
    assert report.dataset_drift and report.drift_found
    assert report.prediction_drift.drift
    concept = report.concept_drift
    assert concept.status == "checked" and concept.drift and concept.weighted_f1 == 0.0
