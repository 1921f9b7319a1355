"""What the serving functions do, as plain calls: validated reports in, answers and records
out. Each job has its own piece: `Scorer` (the one scoring path, `serving.scoring`), the
shadow's `ShadowScorer`, the `Explainer`, and `records.outcome_records`; `PredictionService`
only puts them together for a function. The handlers translate HTTP to these calls and hand
the records to their `Api` (`serving.http`), which writes them."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pydantic_core

from avsev.serving.bundle import Bundle, load_bundle
from avsev.serving.features import describe_value
from avsev.serving.records import PredictionRecords, lines, now
from avsev.serving.schema import (
    AccidentReport,
    Explanation,
    Factor,
    Prediction,
)
from avsev.serving.scoring import Scorer, ShadowScorer
from avsev.serving.settings import Settings


@dataclass
class Scored:
    """Answers to return, and records to log: the served model's, then the shadow's."""

    answers: list[dict[str, Any]]
    """Each report's answer, with `Prediction`'s fields (plain dicts)."""
    labels: list[str]
    records: list[PredictionRecords]
    latency_ms: float
    model_version: str

    @cached_property
    def predictions(self) -> list[Prediction]:
        """The answers as `Prediction` models."""
        return [Prediction.model_validate(a) for a in self.answers]

    @property
    def body(self) -> str:
        """The answers as `BatchPrediction`'s JSON, byte for byte."""
        return pydantic_core.to_json(
            {
                "predictions": self.answers,
                "model_version": self.model_version,
                "count": len(self.answers),
            }
        ).decode()

    @property
    def lines(self) -> list[str]:
        """The record lines, as they are logged."""
        return lines(self.records).split("\n")[:-1]  # (not splitlines: U+2028 may be in text)


class Explainer:
    """The exact TreeSHAP contributions to an answer's predicted class (a bundle loaded with
    `explain=True`)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def explain(self, report: AccidentReport, answer: Prediction, top_k: int = 5) -> Explanation:
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
        return Explanation(
            **answer.model_dump(),
            base_value=round(base, 6),
            margin=round(base + sum(phi[:-1]), 6),
            top_contributing_factors=factors,
        )


class PredictionService:
    """A function's serving bundle, scored by a `Scorer`; an optional shadow bundle scored
    beside it (`ShadowScorer`); an `Explainer` when loaded to explain."""

    def __init__(self, bundle: Bundle, shadow: Bundle | None = None) -> None:
        self.scorer = Scorer(bundle)
        self.shadow = ShadowScorer(shadow) if shadow is not None else None
        self.explainer = Explainer(bundle)

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
    def bundle(self) -> Bundle:
        return self.scorer.bundle

    @property
    def version(self) -> str:
        return self.bundle.version

    def predict(
        self, reports: Sequence[AccidentReport], request_ids: Sequence[str], function_version: str
    ) -> Scored:
        """Score reports (one or a batch) with the serving bundle, and the shadow if any."""
        # Thousands of small acyclic objects in a batch, freed by reference counting: a
        # cyclic collection in the middle (one per ~700 allocations) would only walk the heap.
        collecting = gc.isenabled()
        gc.disable()
        try:
            served = self.scorer.score(reports)
            stamp = now()
            records = [served.records(request_ids, function_version, stamp, shadow=False)]
            if self.shadow is not None:
                shadow = self.shadow.score(served)
                if shadow is not None:
                    records.append(
                        shadow.records(request_ids, function_version, stamp, shadow=True)
                    )
            return Scored(
                served.answers(request_ids),
                served.labels,
                records,
                served.latency_ms,
                self.version,
            )
        finally:
            if collecting:
                gc.enable()

    def explain(
        self, report: AccidentReport, request_id: str, function_version: str, top_k: int = 5
    ) -> tuple[Explanation, Scored]:
        """Prediction plus the exact TreeSHAP contributions to the predicted class's margin."""
        scored = self.predict([report], [request_id], function_version)
        return self.explainer.explain(report, scored.predictions[0], top_k), scored
