"""Evaluate compiled bundles on any data file, and compare two of them on paired rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avsev.data import LoadedData
from avsev.monitoring.metrics import classification_report
from avsev.monitoring.stats import mcnemar
from avsev.serving.bundle import Bundle, load_bundle
from avsev.serving.schema import SEVERITIES


def predict_proba(bundle: Bundle, data: LoadedData) -> np.ndarray:
    """The bundle's compiled runtime over every row (the serving path, batched)."""
    rows = bundle.spec.encode_many(data.reports())
    return np.asarray(bundle.model.predict_many(rows), dtype=float).reshape(
        len(rows), len(SEVERITIES)
    )


def evaluate(bundle_dir: str | Path, data: LoadedData) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir, explain=False)
    report = classification_report(data.labels, predict_proba(bundle, data))
    return {"bundle": f"{bundle.name}-{bundle.version}", "data": data.summary(), "metrics": report}


def compare(a_dir: str | Path, b_dir: str | Path, data: LoadedData) -> dict[str, Any]:
    """Both models on the same rows: metrics side by side, McNemar on paired correctness."""
    a, b = load_bundle(a_dir, explain=False), load_bundle(b_dir, explain=False)
    y = np.asarray(data.labels)
    pa, pb = predict_proba(a, data), predict_proba(b, data)
    ra, rb = classification_report(y, pa), classification_report(y, pb)
    keys = ("accuracy", "weighted_f1", "macro_f1", "log_loss")
    test = mcnemar(pa.argmax(axis=1) == y, pb.argmax(axis=1) == y)
    return {
        "a": f"{a.name}-{a.version}",
        "b": f"{b.name}-{b.version}",
        "rows": len(y),
        "metrics": {k: {"a": ra[k], "b": rb[k], "b_minus_a": rb[k] - ra[k]} for k in keys},
        "per_class_f1": {
            c: {"a": ra["per_class"][c]["f1"], "b": rb["per_class"][c]["f1"]} for c in SEVERITIES
        },
        "mcnemar": test,
        "verdict": test["verdict"],
    }
