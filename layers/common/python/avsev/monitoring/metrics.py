"""Classification metrics over plain arrays (numpy): one implementation for training,
evaluation, comparison and A/B analysis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from avsev.serving.schema import SEVERITIES

Labels = Sequence[int] | np.ndarray
"""Class indices, as a list or an array."""


def confusion(y_true: Labels, y_pred: Labels, n_class: int = 4) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((n_class, n_class), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return m


def f1_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def weighted_f1_of(cm: np.ndarray) -> float:
    """Support-weighted F1 of a confusion matrix."""
    _, _, f1 = f1_scores(cm)
    support = cm.sum(axis=1)
    return float((f1 * support).sum() / support.sum()) if support.sum() else 0.0


def macro_f1_of(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in a confusion matrix."""
    _, _, f1 = f1_scores(cm)
    present = cm.sum(axis=1) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def weighted_f1(y_true: Labels, y_pred: Labels, n_class: int = 4) -> float:
    return weighted_f1_of(confusion(y_true, y_pred, n_class))


def macro_f1(y_true: Labels, y_pred: Labels, n_class: int = 4) -> float:
    return macro_f1_of(confusion(y_true, y_pred, n_class))


def log_loss(y_true: Labels, proba: np.ndarray) -> float:
    p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y_true, dtype=int)])))


def classification_report(
    y_true: Labels,
    proba: np.ndarray,
    *,
    classes: Sequence[str] = SEVERITIES,
    majority_class: int | None = None,
) -> dict[str, Any]:
    """Weighted/macro F1, accuracy, log loss, per-class P/R/F1, confusion, and the
    majority-class baseline beside them (majority of `y_true` unless given, e.g. the
    training set's)."""
    y = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    pred = proba.argmax(axis=1)
    n = len(classes)
    cm = confusion(y, pred, n)
    precision, recall, f1 = f1_scores(cm)
    if majority_class is None:
        majority_class = int(np.bincount(y, minlength=n).argmax())
    base = np.full_like(y, majority_class)
    prior = np.bincount(y, minlength=n) / max(len(y), 1)
    return {
        "rows": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "weighted_f1": weighted_f1(y, pred, n),
        "macro_f1": macro_f1(y, pred, n),
        "log_loss": log_loss(y, proba) if len(y) else None,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(cm[i].sum()),
            }
            for i, c in enumerate(classes)
        },
        "confusion": {"labels": list(classes), "matrix": cm.tolist()},
        "baseline_majority": {
            "class": classes[majority_class],
            "accuracy": float((base == y).mean()) if len(y) else 0.0,
            "weighted_f1": weighted_f1(y, base, n),
            "macro_f1": macro_f1(y, base, n),
            "log_loss_prior": log_loss(y, np.tile(prior, (len(y), 1))) if len(y) else None,
        },
    }
