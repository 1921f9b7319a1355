"""Scoring: reports in, answers and prediction records out, by one path for one report or a
thousand (a single report is a batch of one).

The reports' fields are read and encoded column by column, scored in one C call, and each
row's probabilities rounded and its label decided in C (`Model.decide`); no pydantic model is
built per row. A single report takes the row-wise kernels of the same steps instead (encode
one row, score it, check it: `ROW_WISE_MAX`), whose fixed cost is a fraction of the column-wise
ones'; both give the same scores, checks and rounding (tests hold them equal). A shadow model
scores the same rows beside the served one, reusing their encoding when the two read the same
features; what it gives is recorded, never returned.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from avsev.serving.bundle import Bundle
from avsev.serving.records import PredictionRecords
from avsev.serving.schema import AccidentReport

ROW_WISE_MAX = 1
"""Up to this many reports, the row-wise kernels (the column-wise ones pay off from a few rows)."""


def _per_class(classes: Sequence[str], flat: list[float]) -> list[dict[str, float]]:
    """Rows of per-class values (flat, row-major) as {class: value} dicts, in class order."""
    rows = zip(*[iter(flat)] * len(classes), strict=True)
    if len(classes) == 4:  # the severity model: a dict display is ~3x faster than dict(zip)
        c0, c1, c2, c3 = classes
        return [{c0: a, c1: b, c2: c, c3: d} for a, b, c, d in rows]
    return [dict(zip(classes, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class Scores:
    """One model's scores of some reports, row by row, and the inputs it read (which a shadow
    with the same features reuses)."""

    bundle: Bundle
    reports: Sequence[AccidentReport]
    labels: list[str]
    """The predicted class: the first of equal maxima."""
    probabilities: list[dict[str, float]]
    """Per class, rounded to 6 digits (as `round(float(p), 6)` gives them)."""
    completeness: list[float]
    warnings: list[list[dict[str, Any]]]
    latency_ms: float
    """Reading, encoding and scoring the rows (all of them)."""
    inputs: tuple[Any, Any]
    """What the model read: (the fields of each report, by `fields()`; the encoded rows)
    row-wise, (the values of each field it reads; `spec.encode_columns` of them)
    column-wise."""
    row_wise: bool

    def answers(self, request_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The answers, as plain dicts with `Prediction`'s fields in its order."""
        version = self.bundle.version
        return [
            {
                "ev_id": r.ev_id,
                "prediction_label": label,
                "probabilities": p,
                "model_version": version,
                "request_id": rid,
                "completeness": c,
                "warnings": w,
            }
            for r, label, p, rid, c, w in zip(
                self.reports,
                self.labels,
                self.probabilities,
                request_ids,
                self.completeness,
                self.warnings,
                strict=True,
            )
        ]

    def records(
        self,
        request_ids: Sequence[str],
        function_version: str,
        timestamp: dt.datetime,
        *,
        shadow: bool,
    ) -> PredictionRecords:
        """The prediction records of these scores."""
        return PredictionRecords(
            reports=self.reports,
            request_ids=request_ids,
            timestamp=timestamp,
            model_name=self.bundle.name,
            model_version=self.bundle.version,
            function_version=function_version,
            shadow=shadow,
            probabilities=self.probabilities,
            predicted=self.labels,
            latency_ms=round(self.latency_ms / max(len(self.reports), 1), 4),
            completeness=self.completeness,
            warnings=self.warnings,
            features=self.inputs[0] if self.row_wise else None,
        )


class Scorer:
    """A bundle's model over reports: the one scoring path."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def score(self, reports: Sequence[AccidentReport], *, like: Scores | None = None) -> Scores:
        """Score `reports` (one or many). `like`: another model's scores of the same reports,
        whose read fields and encoding are reused when the two models read the same
        features (a shadow beside the served model)."""
        t0 = time.perf_counter()
        bundle = self.bundle
        spec, model, classes = bundle.spec, bundle.model, bundle.classes
        n = len(reports)
        same = like is not None and like.bundle.spec == spec
        if n <= ROW_WISE_MAX:
            if same:
                fields, rows = like.inputs  # type: ignore[union-attr]
            else:
                fields = [r.fields() for r in reports]
                rows = [spec.encode(f) for f in fields]
            probas = [model.predict(row) for row in rows]
            latency_ms = (time.perf_counter() - t0) * 1e3
            completeness, warnings = bundle.inputs.assess_rows(fields, rows)
            probabilities = [
                {c: round(float(p), 6) for c, p in zip(classes, proba, strict=True)}
                for proba in probas
            ]
            labels = [classes[proba.index(max(proba))] for proba in probas]  # the first maximum
            inputs: tuple[Any, Any] = (fields, rows)
        else:
            if same:
                columns, encoded = like.inputs  # type: ignore[union-attr]
            else:
                given = [vars(r) for r in reports]  # a pydantic model's field values, by name
                columns = {s: [g[s] for g in given] for s in spec.sources}
                encoded = spec.encode_columns(columns)
            out = model.predict_buffer(spec.pack(encoded, n), n)
            latency_ms = (time.perf_counter() - t0) * 1e3
            completeness, warnings = bundle.inputs.assess(columns, encoded, n)
            rounded, best = model.decide(out, n, digits=6)
            probabilities = _per_class(classes, rounded)
            labels = [classes[b] for b in best]
            inputs = (columns, encoded)
        return Scores(
            bundle=bundle,
            reports=reports,
            labels=labels,
            probabilities=probabilities,
            completeness=completeness,
            warnings=warnings,  # type: ignore[arg-type]
            latency_ms=latency_ms,
            inputs=inputs,
            row_wise=n <= ROW_WISE_MAX,
        )


class ShadowScorer:
    """A shadow bundle scored beside the served one: its records are kept, its answers never
    returned, and its failure never fails the answer (it is logged as a warning)."""

    def __init__(self, bundle: Bundle) -> None:
        self.scorer = Scorer(bundle)

    @property
    def bundle(self) -> Bundle:
        return self.scorer.bundle

    def score(self, served: Scores) -> Scores | None:
        """The shadow's scores of the reports `served` scored, or None if it failed."""
        try:
            return self.scorer.score(served.reports, like=served)
        except Exception as e:  # a shadow must never break the answer
            print(
                f'{{"level": "WARNING", "message": "shadow scoring failed: {type(e).__name__}"}}',
                file=sys.stderr,
            )
            return None
