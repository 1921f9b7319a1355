"""Performance without labels on real rows: as report fields go blank at rising rates, the
confidence-based estimate (from the served probabilities alone, through the rollups) follows
the accuracy realized on the labelled rows.

The model is the held-out fit of `avsev train` (trained on the oldest years, no refit) and the
rows are the newest years, which it never saw: a shipped model serves reports of years after
its training rows, never its training rows. Its card carries the recalibration `avsev train`
fits on the validation years; without it the estimate leans optimistic on these years and
runs 0.049 above the realized accuracy with 90% of the fields blank (docs/statistics.md)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from avsev.monitoring.drift import markdown
from avsev.monitoring.offline import reports_from_records
from avsev.serving.card import Card
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.runtime import host_arch
from avsev.serving.schema import SEVERITIES
from avsev_tools.pipeline.train import dmatrix, matrix, time_split, train

AT = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def held_out(real_data):
    """The held-out fit's booster, spec and card (as `avsev build` writes the card's fields)."""
    fit = train(real_data, refit=False)
    card = Card.from_dict(
        {
            "name": "avsev-severity",
            "version": "1.0.0",
            "arch": host_arch(),
            "classes": list(SEVERITIES),
            "feature_spec": fit.spec.to_dict(),
            "metrics": fit.metrics,
            **{k: fit.info[k] for k in ("importance", "calibration", "split", "reference_profile")},
            "files": {},  # not compiled: the booster predicts
        }
    )
    return fit.booster, fit.spec, card


def served(model, rows, labels, rate: float, seed: int):
    """Predictions of the rows with each field blanked with probability `rate`, and outcomes."""
    booster, spec, card = model
    rng = np.random.default_rng(seed)
    blanked = [
        {k: (None if k != "ev_id" and rng.random() < rate else v) for k, v in r.items()}
        for r in rows
    ]
    proba = np.asarray(booster.predict(dmatrix(spec, matrix(spec, blanked)))).reshape(
        len(rows), len(SEVERITIES)
    )
    records: list[PredictionRecord | OutcomeRecord] = []
    for i, (row, p) in enumerate(zip(blanked, proba, strict=True)):
        records.append(
            PredictionRecord(
                request_id=f"r{i}",
                ev_id=f"EV{i}",
                timestamp=AT,
                model_name=card.name,
                model_version=card.version,
                function_version="1",
                features={k: v for k, v in row.items() if k != "ev_id" and v is not None},
                probabilities={s: float(x) for s, x in zip(SEVERITIES, p, strict=True)},
                predicted=SEVERITIES[int(p.argmax())],
                latency_ms=0.1,
            )
        )
        records.append(
            OutcomeRecord(
                request_id=f"o{i}", ev_id=f"EV{i}", timestamp=AT, actual_severity=labels[i]
            )
        )
    return records, float((proba.argmax(axis=1) == [SEVERITIES.index(y) for y in labels]).mean())


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 0.9])
def test_the_estimate_follows_realized_accuracy_as_fields_go_blank(real_data, held_out, rate):
    rows = real_data.reports()
    labels = list(real_data.frame["severity"])
    test = time_split([r.get("event_date") for r in rows]).test
    records, realized = served(
        held_out, [rows[i] for i in test], [labels[i] for i in test], rate, 7
    )
    report = reports_from_records(records, card=held_out[2]).drift
    estimate = report.performance_without_labels
    assert estimate.recalibrated is True
    assert "recalibrated on the validation years" in markdown(report)
    check = estimate.calibration_check
    assert check.labelled == len(test)
    assert check.realized_accuracy == pytest.approx(realized, abs=1e-9)
    # the estimate itself never saw a label
    assert abs(estimate.expected_accuracy - realized) <= 0.03, (
        rate,
        estimate.expected_accuracy,
        realized,
    )
    low, high = check.estimate_error_ci95
    assert low <= check.estimated_accuracy - realized <= high
    assert check.trusted is not (low > 0.03 or high < -0.03)
    assert 0.0 <= check.top_label_ece <= 1.0
    assert estimate.expected_log_loss > 0 and set(estimate.expected_f1) == set(SEVERITIES)
