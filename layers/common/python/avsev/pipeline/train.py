"""Train an XGBoost severity classifier on a time-ordered split."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from avsev.data import LoadedData
from avsev.monitoring.metrics import classification_report
from avsev.monitoring.profile import reference_profile
from avsev.serving.features import FeatureSpec, fit_spec
from avsev.serving.schema import SEVERITIES

MODEL_FILE = "model.json"
TRAINING_FILE = "training.json"

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "multi:softprob",
    "num_class": len(SEVERITIES),
    "eval_metric": "mlogloss",
    "tree_method": "hist",
    # Shallow trees and a moderate learning rate: on this data deeper trees add little
    # accuracy, and every extra level costs branch mispredictions in the compiled code.
    "max_depth": 4,
    "eta": 0.08,
    "min_child_weight": 4,
    "subsample": 0.85,
    "colsample_bytree": 0.85,
    "lambda": 2.0,
    "nthread": 2,
    "seed": 0,
}
DEFAULT_ROUNDS = 400
EARLY_STOPPING = 30
GOLDEN_COUNT = 8


@dataclass
class Split:
    train: list[int]
    valid: list[int]
    test: list[int]
    boundaries: dict[str, str | None] = field(default_factory=dict)


def time_split(dates: Sequence[dt.date | None], valid: float = 0.15, test: float = 0.15) -> Split:
    """Oldest rows train, then validation, newest test. Undated rows go to training."""
    order = sorted(range(len(dates)), key=lambda i: (dates[i] is not None, dates[i] or dt.date.min))
    n = len(order)
    n_test = round(n * test)
    n_valid = round(n * valid)
    train, val, tst = (
        order[: n - n_valid - n_test],
        order[n - n_valid - n_test : n - n_test],
        order[n - n_test :],
    )

    def first(idx: list[int]) -> str | None:
        return str(dates[idx[0]]) if idx and dates[idx[0]] is not None else None

    return Split(train, val, tst, {"valid_from": first(val), "test_from": first(tst)})


def class_weights(labels: Sequence[int], n_class: int = len(SEVERITIES)) -> list[float]:
    """Inverse-frequency ("balanced") weights per class."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_class).astype(float)
    return (counts.sum() / (n_class * np.maximum(counts, 1))).tolist()


def matrix(spec: FeatureSpec, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The training path of the one encoder: the same `FeatureSpec.encode` serving uses."""
    return np.asarray(spec.encode_many(rows), dtype=np.float32).reshape(len(rows), len(spec))


@dataclass
class TrainResult:
    booster: xgb.Booster
    spec: FeatureSpec
    metrics: dict[str, Any]
    info: dict[str, Any]


def train(
    data: LoadedData,
    *,
    params: Mapping[str, Any] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    balanced: bool = False,
    seed: int = 0,
) -> TrainResult:
    rows = data.reports()
    labels = data.labels
    split = time_split([r.get("event_date") for r in rows])
    pick = lambda idx, seq: [seq[i] for i in idx]  # noqa: E731
    train_rows, valid_rows, test_rows = (
        pick(s, rows) for s in (split.train, split.valid, split.test)
    )
    y_train, y_valid, y_test = (pick(s, labels) for s in (split.train, split.valid, split.test))

    spec = fit_spec(train_rows)
    p = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}
    weights = class_weights(y_train) if balanced else None
    d_train = xgb.DMatrix(
        matrix(spec, train_rows),
        label=y_train,
        weight=[weights[y] for y in y_train] if weights else None,
        feature_names=spec.names,
    )
    d_valid = xgb.DMatrix(matrix(spec, valid_rows), label=y_valid, feature_names=spec.names)
    booster = xgb.train(
        p,
        d_train,
        num_boost_round=rounds,
        evals=[(d_valid, "valid")],
        early_stopping_rounds=EARLY_STOPPING,
        verbose_eval=False,
    )
    best = booster.best_iteration
    booster = booster[: best + 1]

    majority = int(np.bincount(y_train, minlength=len(SEVERITIES)).argmax())

    def report(rows_: list[dict[str, Any]], y: list[int]) -> dict[str, Any]:
        proba = booster.predict(xgb.DMatrix(matrix(spec, rows_), feature_names=spec.names))
        return classification_report(y, proba, majority_class=majority)

    metrics = {"valid": report(valid_rows, y_valid), "test": report(test_rows, y_test)}
    golden = test_rows[:: max(1, len(test_rows) // GOLDEN_COUNT)][:GOLDEN_COUNT]
    golden_proba = booster.predict(xgb.DMatrix(matrix(spec, golden), feature_names=spec.names))
    info = {
        "params": p,
        "rounds_requested": rounds,
        "best_iteration": best,
        "n_trees": best + 1,
        "balanced": balanced,
        "class_weights": weights,
        "split": {
            "train": len(split.train),
            "valid": len(split.valid),
            "test": len(split.test),
            **split.boundaries,
        },
        "data": data.summary(),
        "reference_profile": reference_profile(train_rows, spec, seed=seed),
        "prediction_mix": _class_mix(booster, spec, train_rows),
        "golden": [
            {"request": _jsonable(r), "probabilities": [float(x) for x in pr]}
            for r, pr in zip(golden, golden_proba, strict=True)
        ],
    }
    return TrainResult(booster, spec, metrics, info)


def _class_mix(
    booster: xgb.Booster, spec: FeatureSpec, rows: list[dict[str, Any]]
) -> dict[str, float]:
    pred = booster.predict(xgb.DMatrix(matrix(spec, rows), feature_names=spec.names)).argmax(axis=1)
    counts = np.bincount(pred, minlength=len(SEVERITIES))
    return {c: float(counts[i] / max(len(pred), 1)) for i, c in enumerate(SEVERITIES)}


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in row.items()}


def save(result: TrainResult, out: str | Path) -> Path:
    """Write `model.json` (XGBoost) and `training.json` (spec, metrics, data, reference)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.booster.save_model(out / MODEL_FILE)
    doc = {
        "classes": list(SEVERITIES),
        "feature_spec": result.spec.to_dict(),
        "metrics": result.metrics,
        **result.info,
    }
    (out / TRAINING_FILE).write_text(json.dumps(doc, indent=1, default=str))
    return out


def load_trained(model_dir: str | Path) -> tuple[xgb.Booster, dict[str, Any]]:
    model_dir = Path(model_dir)
    for name in (MODEL_FILE, TRAINING_FILE):
        if not (model_dir / name).exists():
            raise FileNotFoundError(
                f"{model_dir / name}: missing; run `avsev train --out {model_dir}`"
            )
    booster = xgb.Booster()
    booster.load_model(model_dir / MODEL_FILE)
    return booster, json.loads((model_dir / TRAINING_FILE).read_text())
