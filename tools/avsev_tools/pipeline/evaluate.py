"""Evaluate compiled bundles on any data file, and compare two of them on paired rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


ECE_BINS = 15


def calibration(
    y_true: Sequence[int], proba: np.ndarray, *, bins: int = ECE_BINS
) -> dict[str, Any]:
    """Expected calibration error over `bins` equal-width bins of [0, 1].

    Top-label ECE: the most probable class's probability against how often it is right.
    Classwise ECE (Kull et al. 2019): every class's probability against how often that class
    is true, averaged over the classes. Each is the row-weighted mean |accuracy - confidence|
    over non-empty bins. The top-label bins are returned as a table.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    n = len(y)
    edges = np.linspace(0.0, 1.0, bins + 1)

    def binned(conf: np.ndarray, hit: np.ndarray) -> tuple[float, list[dict[str, Any]]]:
        idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
        ece, table = 0.0, []
        for b in range(bins):
            m = idx == b
            count = int(m.sum())
            c: float | None = None
            a: float | None = None
            if count:
                c, a = float(conf[m].mean()), float(hit[m].mean())
                ece += count / n * abs(a - c)
            table.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "count": count,
                    "confidence": c,
                    "accuracy": a,
                }
            )
        return float(ece), table

    if n == 0:
        return {
            "bins": bins,
            "rows": 0,
            "top_label_ece": None,
            "classwise_ece": None,
            "top_label_bins": [],
        }
    top, table = binned(p.max(axis=1), (p.argmax(axis=1) == y).astype(float))
    classwise = float(
        np.mean([binned(p[:, k], (y == k).astype(float))[0] for k in range(p.shape[1])])
    )
    return {
        "bins": bins,
        "rows": n,
        "top_label_ece": top,
        "classwise_ece": classwise,
        "top_label_bins": table,
    }


def gain_over_prior(report: Mapping[str, Any]) -> float | None:
    """1 - log loss / log loss of the rows' own class prior (0: no better than the prior)."""
    ll, prior = report.get("log_loss"), report["baseline_majority"].get("log_loss_prior")
    return None if ll is None or not prior else float(1.0 - ll / prior)


def evaluate(bundle_dir: str | Path, data: LoadedData) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir, explain=False)
    proba = predict_proba(bundle, data)
    report = classification_report(data.labels, proba)
    report["gain_over_prior"] = gain_over_prior(report)
    return {
        "bundle": f"{bundle.name}-{bundle.version}",
        "data": data.summary(),
        "metrics": report,
        "calibration": calibration(data.labels, proba),
    }


def summary_lines(report: Mapping[str, Any], calib: Mapping[str, Any] | None) -> list[str]:
    """What a person reads first: log loss against the prior, F1, ECE, F1 per class."""
    base = report["baseline_majority"]
    gain = gain_over_prior(report)
    lines = [
        f"rows {report['rows']}: log loss {report['log_loss']:.4f} "
        f"(class prior {base['log_loss_prior']:.4f}, gain over prior "
        f"{'n/a' if gain is None else f'{gain:.1%}'}), weighted F1 {report['weighted_f1']:.3f}, "
        f"macro F1 {report['macro_f1']:.3f}, accuracy {report['accuracy']:.3f}"
    ]
    if calib and calib.get("top_label_ece") is not None:
        lines.append(
            f"ECE ({calib['bins']} bins): top-label {calib['top_label_ece']:.4f}, "
            f"classwise {calib['classwise_ece']:.4f}"
        )
    lines.append(
        "F1 per class: "
        + ", ".join(f"{c} {v['f1']:.3f} (n={v['support']})" for c, v in report["per_class"].items())
    )
    return lines


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
