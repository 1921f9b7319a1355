"""Synthetic A/B traffic: predictions of a version right with a given probability, and
their outcomes (shared by the A/B, parity, SQL and AWS monitoring tests)."""

from __future__ import annotations

import datetime as dt

import numpy as np
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.schema import SEVERITIES

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def records(
    version: str,
    n: int,
    accuracy: float,
    seed: int,
    *,
    start: int = 0,
    latency: float = 0.1,
    shadow: bool = False,
    request_prefix: str = "r",
):
    """n predictions by `version`, right with probability `accuracy`, and their outcomes."""
    rng = np.random.default_rng(seed)
    preds, outs = [], []
    for i in range(start, start + n):
        actual = SEVERITIES[rng.choice(4, p=[0.15, 0.09, 0.14, 0.62])]
        right = rng.random() < accuracy
        predicted = (
            actual if right else SEVERITIES[(SEVERITIES.index(actual) + 1 + rng.integers(3)) % 4]
        )
        preds.append(
            PredictionRecord(
                request_id=f"{request_prefix}{i}",
                ev_id=f"EV{i}",
                timestamp=T0,
                model_name="m",
                model_version=version,
                function_version="1",
                shadow=shadow,
                features={},
                # confident in its answer: right rows score well on log loss, wrong ones badly
                probabilities={s: 0.7 if s == predicted else 0.1 for s in SEVERITIES},
                predicted=predicted,
                latency_ms=float(latency * rng.uniform(0.8, 1.2)),
            )
        )
        outs.append(
            OutcomeRecord(request_id=f"o{i}", ev_id=f"EV{i}", timestamp=T0, actual_severity=actual)
        )
    return preds, outs
