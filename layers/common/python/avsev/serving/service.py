"""What the serving functions do, as plain methods: validated reports in, answers and records
out. The handlers only translate HTTP to these calls."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from avsev.serving.bundle import Bundle, load_bundle
from avsev.serving.features import describe_value
from avsev.serving.records import OutcomeRecord, PredictionRecord, Record, emit, now
from avsev.serving.schema import (
    AccidentReport,
    Explanation,
    Factor,
    Outcome,
    Prediction,
)
from avsev.serving.settings import Settings


@dataclass
class Scored:
    """Answers to return, and records to log."""

    predictions: list[Prediction]
    records: list[Record]
    latency_ms: float


class PredictionService:
    """A serving bundle (and an optional shadow bundle scored beside it, never returned)."""

    def __init__(self, bundle: Bundle, shadow: Bundle | None = None) -> None:
        self.bundle = bundle
        self.shadow = shadow

    @classmethod
    def from_settings(cls, settings: Settings, *, explain: bool = False) -> PredictionService:
        verify = settings.avsev_verify_bundle
        bundle = load_bundle(settings.model_bundle_path, explain=explain, verify=verify)
        shadow = (
            load_bundle(settings.shadow_bundle_path, explain=False, verify=verify)
            if settings.shadow_bundle_path
            else None
        )
        return cls(bundle, shadow)

    @property
    def version(self) -> str:
        return self.bundle.version

    def _answers(
        self, bundle: Bundle, reports: Sequence[AccidentReport], request_ids: Sequence[str]
    ) -> tuple[list[Prediction], list[dict[str, Any]], float]:
        t0 = time.perf_counter()
        fields = [r.fields() for r in reports]
        rows = [bundle.spec.encode(f) for f in fields]
        probas = (
            bundle.model.predict_many(rows) if len(rows) > 1 else [bundle.model.predict(rows[0])]
        )
        latency_ms = (time.perf_counter() - t0) * 1e3
        classes = bundle.classes
        answers = []
        for report, rid, proba in zip(reports, request_ids, probas, strict=True):
            best = max(range(len(proba)), key=proba.__getitem__)
            answers.append(
                Prediction(
                    ev_id=report.ev_id,
                    prediction_label=classes[best],  # type: ignore[arg-type]
                    probabilities={
                        c: round(float(p), 6) for c, p in zip(classes, proba, strict=True)
                    },
                    model_version=bundle.version,
                    request_id=rid,
                )
            )
        return answers, fields, latency_ms

    def _records(
        self,
        bundle: Bundle,
        answers: list[Prediction],
        fields: list[dict[str, Any]],
        latency_ms: float,
        function_version: str,
        *,
        shadow: bool,
    ) -> list[Record]:
        stamp = now()
        per_row = latency_ms / max(len(answers), 1)
        return [
            PredictionRecord.model_construct(  # trusted values: no re-validation on the hot path
                request_id=a.request_id,
                ev_id=a.ev_id,
                timestamp=stamp,
                model_name=bundle.name,
                model_version=bundle.version,
                function_version=function_version,
                shadow=shadow,
                features={
                    k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in f.items()
                },
                probabilities=a.probabilities,
                predicted=a.prediction_label,
                latency_ms=round(per_row, 4),
            )
            for a, f in zip(answers, fields, strict=True)
        ]

    def predict(
        self, reports: Sequence[AccidentReport], request_ids: Sequence[str], function_version: str
    ) -> Scored:
        """Score reports (1 or a batch) with the serving bundle, and the shadow if any."""
        answers, fields, latency = self._answers(self.bundle, reports, request_ids)
        records = self._records(
            self.bundle, answers, fields, latency, function_version, shadow=False
        )
        if self.shadow is not None:
            try:
                s_answers, s_fields, s_latency = self._answers(self.shadow, reports, request_ids)
                records += self._records(
                    self.shadow, s_answers, s_fields, s_latency, function_version, shadow=True
                )
            except Exception as e:  # a shadow must never break the answer
                print(
                    f'{{"level": "WARNING", "message": "shadow scoring failed: {type(e).__name__}"}}',
                    file=sys.stderr,
                )
        return Scored(answers, records, latency)

    def explain(
        self, report: AccidentReport, request_id: str, function_version: str, top_k: int = 5
    ) -> tuple[Explanation, Scored]:
        """Prediction plus the exact TreeSHAP contributions to the predicted class's margin."""
        scored = self.predict([report], [request_id], function_version)
        answer = scored.predictions[0]
        bundle = self.bundle
        cls = bundle.classes.index(answer.prediction_label)
        fields = report.fields()
        phi = bundle.model.shap(bundle.spec.encode(fields), only_class=cls)[cls]
        base = phi[-1]
        contributions = sorted(
            zip(bundle.spec.features, phi[:-1], strict=True),
            key=lambda fc: abs(fc[1]),
            reverse=True,
        )
        factors = [
            Factor(
                feature=f.name,
                value=describe_value(f, fields),
                impact=round(c, 6),
                direction="raises" if c > 0 else "lowers",
            )
            for f, c in contributions[:top_k]
            if c != 0
        ]
        explanation = Explanation(
            **answer.model_dump(),
            base_value=round(base, 6),
            margin=round(base + sum(phi[:-1]), 6),
            top_contributing_factors=factors,
        )
        return explanation, scored

    @staticmethod
    def outcomes(outcomes: Sequence[Outcome], request_id: str) -> list[Record]:
        stamp = now()
        return [
            OutcomeRecord(
                request_id=request_id,
                ev_id=o.ev_id,
                timestamp=stamp,
                actual_severity=o.actual_severity,
                observed_at=o.observed_at,
            )
            for o in outcomes
        ]


def record(records: Sequence[Record]) -> None:
    """Log records (one JSON line each)."""
    emit(records)
