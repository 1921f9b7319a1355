"""Exact TreeSHAP in C: parity with XGBoost's pred_contribs, additivity."""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from avsev_tools.pipeline.train import matrix


def test_shap_matches_xgboost_pred_contribs_on_real_rows(real_data, real_bundle, real_model_dir):
    rows = matrix(real_bundle.spec, real_data.reports()[::37][:400])
    assert np.isnan(rows).any()
    b = xgb.Booster()
    b.load_model(real_model_dir / "model.json")
    expected = b.predict(
        xgb.DMatrix(rows, feature_names=real_bundle.spec.names), pred_contribs=True
    )
    got = np.array([real_bundle.model.shap(r) for r in rows.tolist()])
    assert got.shape == expected.shape == (len(rows), 4, len(real_bundle.spec) + 1)
    assert np.abs(got - expected).max() < 1e-4
    # additivity: contributions + base value = the model's margin, per class and row
    margins = np.array(real_bundle.model.predict_many(rows.tolist(), margin=True))
    assert np.abs(got.sum(axis=2) - margins).max() < 1e-4


def test_one_class_only_walks_that_class(real_data, real_bundle):
    row = matrix(real_bundle.spec, real_data.reports()[:1])[0].tolist()
    full = real_bundle.model.shap(row)
    only = real_bundle.model.shap(row, only_class=2)
    assert np.allclose(only[2], full[2])
    assert not any(any(v != 0 for v in only[c]) for c in (0, 1, 3))
