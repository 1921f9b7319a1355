"""Training on a time-ordered split, and the metrics it reports."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from avsev.serving.schema import SEVERITIES, AccidentReport
from avsev_tools.pipeline.synthetic import generate
from avsev_tools.pipeline.train import class_weights, time_split


def test_time_split_puts_newest_rows_last():
    dates = [
        dt.date(2000, 1, 1) + dt.timedelta(days=int(d))
        for d in (50, 10, 40, 30, 20, 0, 90, 80, 70, 60)
    ]
    dates.append(None)
    split = time_split(dates, valid=0.2, test=0.2)
    newest_train = max(dates[i] for i in split.train if dates[i])
    assert newest_train <= min(dates[i] for i in split.valid)
    assert max(dates[i] for i in split.valid) <= min(dates[i] for i in split.test)
    assert 10 in split.train  # the undated row trains
    assert sorted(split.train + split.valid + split.test) == list(range(len(dates)))


def test_balanced_weights_are_inverse_frequency():
    w = class_weights([0] * 6 + [1] * 2 + [2] + [3])
    assert w[2] == pytest.approx(10 / (4 * 1))
    assert w[1] == pytest.approx(10 / (4 * 2))
    assert w[0] == pytest.approx(10 / (4 * 6))


def test_real_data_model_is_honest_and_beats_the_baseline(real_model_dir):
    doc = json.loads((real_model_dir / "training.json").read_text())
    test = doc["metrics"]["test"]
    base = test["baseline_majority"]
    assert doc["split"]["test_from"] > doc["split"]["valid_from"]
    assert set(test["per_class"]) == set(SEVERITIES)
    assert sum(map(sum, test["confusion"]["matrix"])) == test["rows"] == doc["split"]["test"]
    assert test["weighted_f1"] > base["weighted_f1"] + 0.03
    assert test["log_loss"] < base["log_loss_prior"]
    # the data README: honest features give 0.51-0.54; far above means a leak
    assert test["weighted_f1"] < 0.62
    assert (real_model_dir / "model.json").is_file()


def test_synthetic_data_is_deterministic_valid_and_plausible():
    a, b = generate(4000, seed=7), generate(4000, seed=7)
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(generate(4000, seed=8).frame)
    for row in a.reports():
        AccidentReport.model_validate(row)
    shares = a.frame["severity"].value_counts(normalize=True)
    assert shares["None"] == pytest.approx(0.62, abs=0.01)
    assert shares["Fatal"] == pytest.approx(0.15, abs=0.01)
    f = a.frame
    fatal = f["severity"] == "Fatal"
    imc = f["weather_condition"] == "IMC"
    assert fatal[imc].mean() > 1.5 * fatal[~imc].mean()  # instrument weather is deadlier
    taxi = f["broad_phase_of_flight"] == "Taxi"
    assert fatal[taxi].mean() < fatal[~taxi].mean()
    assert (
        f["pilot_90_days"].dropna()
        <= f["pilot_tot_time"].reindex(f["pilot_90_days"].dropna().index).fillna(1e9)
    ).all()
    assert len(generate(123, seed=1).frame) == 123
