"""The model for the data as it arrives: guards at the shipped recipe's level on the newest 15%
of the real file, blank-field augmentation, the refit, and the importance and calibration the
card carries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xgboost as xgb
from avsev.serving.features import fit_spec
from avsev_tools.pipeline.evaluate import calibration
from avsev_tools.pipeline.synthetic import generate
from avsev_tools.pipeline.train import (
    TEST_BLANK_SHARE,
    blank_augment,
    blank_field,
    field_importance,
    matrix,
)

TODAY = {"log_loss": 0.9349, "gain_blank": 0.0444}
"""The previous model on the same split (ordinal categories, no augmentation, no refit)."""


@pytest.fixture(scope="module")
def doc(real_model_dir):
    return json.loads((real_model_dir / "training.json").read_text())


SHIPPED = {"log_loss": 0.9405, "weighted_f1": 0.532, "gain_blank": 0.051}
"""The shipped recipe's held-out figures (test log loss, weighted F1, gain over the prior with
the top field blanked in 80% of the rows), measured on the real file. The goals set above them
(0.925 / 0.54 / 6%) are not reached by any recipe searched: docs/model.md lists the search."""
SLACK = {"log_loss": 0.003, "weighted_f1": 0.005, "gain_blank": 0.005}
"""How far a retrain may move them before the guard fails: about the spread across
augmentation seeds (±0.003 log loss); a worse model fails."""


def test_guard_test_log_loss(doc):
    assert doc["metrics"]["test"]["log_loss"] <= SHIPPED["log_loss"] + SLACK["log_loss"]


def test_guard_test_weighted_f1(doc):
    assert doc["metrics"]["test"]["weighted_f1"] >= SHIPPED["weighted_f1"] - SLACK["weighted_f1"]


def test_guard_gain_with_the_top_field_blanked(doc):
    gain = doc["metrics"]["test_top_field_blank"]["gain_over_prior"]
    assert gain >= SHIPPED["gain_blank"] - SLACK["gain_blank"]


def test_held_out_figures_on_the_newest_rows(doc):
    test, blank = doc["metrics"]["test"], doc["metrics"]["test_top_field_blank"]
    assert doc["metrics_from"] == "held-out fit"
    assert test["rows"] == blank["rows"] == doc["split"]["test"] == round(0.15 * 18587)
    assert test["baseline_majority"]["log_loss_prior"] == pytest.approx(1.095, abs=0.002)
    assert blank["field"] == "broad_phase_of_flight" and blank["share"] == TEST_BLANK_SHARE
    # better than today's model where fields are blank, at a small cost on complete rows
    assert blank["gain_over_prior"] > TODAY["gain_blank"]
    assert test["log_loss"] < TODAY["log_loss"] + 0.01
    assert test["gain_over_prior"] == pytest.approx(
        1 - test["log_loss"] / test["baseline_majority"]["log_loss_prior"]
    )


def test_augmentation_rate_is_chosen_on_validation(doc):
    aug = doc["augmentation"]
    grid = aug["grid"]
    assert set(grid) == {"0.0", "0.1", "0.2", "0.3"}
    assert aug["top_field"] == "broad_phase_of_flight"
    best = min(grid, key=lambda r: grid[r]["criterion"])
    assert float(best) == aug["rate"]
    for g in grid.values():
        assert g["criterion"] == pytest.approx(
            (g["valid_log_loss"] + g["valid_log_loss_top_field_blank"]) / 2
        )
    assert doc["metrics"]["valid"]["log_loss"] == pytest.approx(
        grid[str(aug["rate"])]["valid_log_loss"]
    )


def test_shipped_model_is_refit_on_all_rows_with_the_early_stopped_tree_count(doc, real_model_dir):
    booster = xgb.Booster()
    booster.load_model(real_model_dir / "model.json")
    assert booster.num_boosted_rounds() == doc["n_trees"] == doc["refit"]["n_trees"]
    assert doc["refit"]["rows"] == sum(doc["split"][k] for k in ("train", "valid", "test"))
    year = next(f for f in doc["feature_spec"]["features"] if f["name"] == "event_year")
    assert year["cap"] == year["range"][1] == 2019  # the refit's spec: every row's years


def test_blank_augmentation_copies_rows_with_whole_fields_blanked():
    data = generate(400, seed=3)
    rows = data.reports()
    spec = fit_spec(rows)
    x, y = matrix(spec, rows), np.array(data.labels)
    xa, ya, wa = blank_augment(x, y, spec, 0.3, seed=5, weight=np.arange(len(y)))
    assert xa.shape == (2 * len(x), len(spec)) and wa is not None
    assert np.array_equal(xa[: len(x)], x, equal_nan=True)  # the rows themselves, untouched
    assert np.array_equal(ya, np.tile(y, 2)) and np.array_equal(wa, np.tile(np.arange(len(y)), 2))
    extra = xa[len(x) :]
    changed = np.isnan(extra) & ~np.isnan(x)
    assert np.all(np.isnan(extra) | (extra == x))  # only blanks, never another row's value
    year, month = spec.names.index("event_year"), spec.names.index("event_month")
    both = ~np.isnan(x[:, year])
    assert np.array_equal(np.isnan(extra[both, year]), np.isnan(extra[both, month]))
    assert 0.2 < changed.sum() / (~np.isnan(x)).sum() < 0.4
    again = blank_augment(x, y, spec, 0.3, seed=5)[0]
    assert np.array_equal(again, xa, equal_nan=True)  # seeded
    assert blank_augment(x, y, spec, 0.0)[0] is x
    blanked = blank_field(x, spec, "broad_phase_of_flight", 0.8, seed=0)
    col = spec.names.index("broad_phase_of_flight")
    assert 0.75 < np.isnan(blanked[:, col]).mean() < 0.9


def test_importance_per_field_sums_the_exact_tree_shap(doc):
    imp = doc["importance"]
    assert list(imp) == sorted(imp, key=lambda k: -imp[k])
    assert next(iter(imp)) == "broad_phase_of_flight"
    assert set(imp) == {f["source"] for f in doc["feature_spec"]["features"]}
    assert all(v >= 0 for v in imp.values()) and imp["broad_phase_of_flight"] > 0.2 * sum(
        imp.values()
    )
    # on a small model: fields add up to the mean total |contribution| per row
    data = generate(1500, seed=2)
    rows = data.reports()
    spec = fit_spec(rows)
    x = matrix(spec, rows)
    params = {"objective": "multi:softprob", "num_class": 4, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=data.labels, feature_names=spec.names), 20)
    got = field_importance(booster, spec, x)
    contribs = booster.predict(xgb.DMatrix(x, feature_names=spec.names), pred_contribs=True)
    total = np.abs(contribs[:, :, :-1]).sum(axis=(1, 2)).mean()
    assert sum(got.values()) == pytest.approx(float(total), rel=1e-5)
    assert got["event_date"] == pytest.approx(
        float(
            np.abs(
                contribs[:, :, [spec.names.index("event_year"), spec.names.index("event_month")]]
            )
            .sum(axis=(1, 2))
            .mean()
        ),
        rel=1e-5,
    )


def test_calibration_error_by_hand():
    # two rows per bin edge case: confidence 0.9 right once in two → |0.5 - 0.9| = 0.4
    proba = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.5, 0.5, 0, 0], [0.25] * 4])
    y = [0, 1, 0, 3]
    c = calibration(y, proba)
    assert c["bins"] == 15 and len(c["top_label_bins"]) == 15
    # top-label: bin of 0.9 has 2 rows, accuracy 0.5; 0.5 right (argmax 0); 0.25 right (argmax 0
    # is class 0, the label is 3: wrong)
    expected = (2 * abs(0.5 - 0.9) + 1 * abs(1 - 0.5) + 1 * abs(0 - 0.25)) / 4
    assert c["top_label_ece"] == pytest.approx(expected)
    assert sum(b["count"] for b in c["top_label_bins"]) == 4
    # perfectly calibrated in every bin: zero
    perfect = calibration([0, 1, 0, 1], np.array([[0.5, 0.5, 0, 0]] * 4))
    assert perfect["top_label_ece"] == pytest.approx(0.0) and perfect["classwise_ece"] == 0.0
    assert calibration([], np.zeros((0, 4)))["top_label_ece"] is None


def test_calibration_on_held_out_rows_is_in_the_card(doc, real_bundle_dir):
    calib = doc["calibration"]
    assert calib["rows"] == doc["split"]["test"] and calib["from"] == "held-out test rows"
    for key in ("top_label_ece", "classwise_ece"):
        assert 0 <= calib[key] <= 1
    assert calib["top_label_ece"] < 0.1  # softprob on this data is close to calibrated
    bins = calib["top_label_bins"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == calib["rows"]
    assert calib["top_label_ece"] == pytest.approx(
        sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
        / calib["rows"]
    )
    card = json.loads((real_bundle_dir / "card.json").read_text())
    assert card["calibration"] == calib and card["importance"] == doc["importance"]


def test_evaluate_prints_log_loss_gain_ece_and_per_class_f1(
    real_bundle_dir, real_data_path, capsys
):
    from avsev_tools.cli import main

    assert main(["evaluate", "--bundle", str(real_bundle_dir), "--data", str(real_data_path)]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    m = report["metrics"]
    assert m["rows"] == 18587 and math.isfinite(m["gain_over_prior"])
    assert 0 <= report["calibration"]["top_label_ece"] <= 1
    for words in ("log loss", "gain over prior", "ECE", "top-label", "classwise", "F1 per class"):
        assert words in out.err
    for cls in ("Fatal", "Serious", "Minor", "None"):
        assert f"{cls} {m['per_class'][cls]['f1']:.3f}" in out.err
