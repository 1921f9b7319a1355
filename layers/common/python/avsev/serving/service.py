"""What the serving functions do, as plain methods: validated reports in, answers and records
out. The handlers only translate HTTP to these calls."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import pydantic_core

from avsev.serving import records as record_format
from avsev.serving.bundle import Bundle, load_bundle
from avsev.serving.completeness import RowCheck
from avsev.serving.features import describe_value
from avsev.serving.records import (
    SCHEMA_VERSION,
    OutcomeRecord,
    PredictionRecord,
    Record,
    emit,
    now,
    to_line,
)
from avsev.serving.schema import (
    REPORT_FIELDS,
    AccidentReport,
    Explanation,
    Factor,
    Outcome,
    Prediction,
    utc_text,
)
from avsev.serving.settings import Settings

REPORT_FIELD_ORDER = tuple(f for f in AccidentReport.model_fields if f in REPORT_FIELDS)
"""The report fields in the model's order: the order `AccidentReport.fields()` gives them."""


@dataclass
class Scored:
    """Answers to return, and records to log."""

    predictions: list[Prediction]
    records: list[Record]
    """The served records (models)."""
    latency_ms: float
    lines: str = ""
    """With a shadow: the served and shadow record lines, serialized once (what `log` writes)."""

    def log(self) -> None:
        """Log the records: one JSON line each, the shadow's too."""
        if self.lines:
            record_lines(self.lines)
        else:
            emit(self.records)


@dataclass
class BatchScored:
    """A batch's answer and its records, each serialized once: the response body is the
    JSON of `BatchPrediction`, each record line the JSON of a `PredictionRecord` (byte for
    byte what the pydantic models give; tests hold them equal)."""

    body: str
    labels: list[str]
    records_text: str
    """The record lines, each ended by a newline, as they are logged."""
    latency_ms: float
    count: int = field(default=0)

    @property
    def lines(self) -> list[str]:
        return self.records_text.split("\n")[:-1]  # (not splitlines: U+2028 may be in text)


def _per_class(classes: Sequence[str], flat: list[float]) -> list[dict[str, float]]:
    """Rows of per-class values (flat, row-major) as {class: value} dicts, in class order."""
    rows = zip(*[iter(flat)] * len(classes), strict=True)
    if len(classes) == 4:  # the severity model: a dict display is ~3x faster than dict(zip)
        c0, c1, c2, c3 = classes
        return [{c0: a, c1: b, c2: c, c3: d} for a, b, c, d in rows]
    return [dict(zip(classes, row, strict=True)) for row in rows]


_RECORD_START = '},{"record_type":'


def _json_lines(docs: list[dict[str, Any]], not_features: set[str]) -> str:
    """The records as JSON lines (each ended by a newline), serialized in one call. A
    record's `features` is the report itself, written as `AccidentReport.fields()` gives it
    (missing values and the fields in `not_features` left out). The array's text is cut
    where one record ends and the next begins: `},{"record_type":` cannot occur inside a
    JSON string (every quote there is escaped) nor inside a record (its nested objects have
    no such key); a JSON text has no raw newline."""
    if not docs:
        return ""
    text = pydantic_core.to_json(
        docs, exclude_none=True, exclude={"__all__": {"features": not_features}}
    ).decode()
    return text[1:-1].replace(_RECORD_START, '}\n{"record_type":') + "\n"


class PredictionService:
    """A serving bundle (and an optional shadow bundle scored beside it, never returned)."""

    def __init__(self, bundle: Bundle, shadow: Bundle | None = None) -> None:
        self.bundle = bundle
        self.shadow = shadow
        self._shadow_same_spec = shadow is not None and shadow.spec == bundle.spec
        """Then the shadow scores the served rows as encoded: no second encoding."""

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
    ) -> tuple[list[Prediction], list[dict[str, Any]], list[list[float]], list[RowCheck], float]:
        t0 = time.perf_counter()
        fields = [r.fields() for r in reports]
        rows = [bundle.spec.encode(f) for f in fields]
        probas = (
            bundle.model.predict_many(rows) if len(rows) > 1 else [bundle.model.predict(rows[0])]
        )
        latency_ms = (time.perf_counter() - t0) * 1e3
        checks = bundle.inputs.check_rows(fields, rows)
        classes = bundle.classes
        answers = []
        for report, rid, proba, (blank, _, w) in zip(
            reports, request_ids, probas, checks, strict=True
        ):
            c = bundle.inputs.completeness_of(blank)
            best = proba.index(max(proba))  # the first of equal maxima
            answers.append(
                Prediction(
                    ev_id=report.ev_id,
                    prediction_label=classes[best],  # type: ignore[arg-type]
                    probabilities={
                        c: round(float(p), 6) for c, p in zip(classes, proba, strict=True)
                    },
                    model_version=bundle.version,
                    request_id=rid,
                    completeness=c,
                    warnings=w,  # type: ignore[arg-type]  # dicts, validated into InputWarning
                )
            )
        return answers, fields, rows, checks, latency_ms

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
                completeness=a.completeness,
                warnings=a.warnings,
            )
            for a, f in zip(answers, fields, strict=True)
        ]

    def _shadow_lines(
        self,
        served: Sequence[Record],
        fields: Sequence[dict[str, Any]],
        rows: Sequence[Sequence[float]],
        checks: Sequence[RowCheck],
    ) -> str:
        """The served record lines, each followed by its shadow's, on the cheap path: each is the
        served line with the model, `shadow`, the scores and the input checks changed (the
        served features and time are the shadow's too; completeness and warnings are the
        shadow model's own, by its importance and spec), and the served rows' encoding is
        reused when the specs agree. No model object is built for the shadow."""
        shadow = self.shadow
        assert shadow is not None
        t0 = time.perf_counter()
        rows = rows if self._shadow_same_spec else [shadow.spec.encode(f) for f in fields]
        probas = (
            shadow.model.predict_many(rows) if len(rows) > 1 else [shadow.model.predict(rows[0])]
        )
        per_row = round((time.perf_counter() - t0) * 1e3 / max(len(rows), 1), 4)
        if self._shadow_same_spec:  # the served rows' checks, weighed by the shadow's model
            completeness, warnings = shadow.inputs.assess_as(self.bundle.inputs, checks)
        else:
            completeness, warnings = shadow.inputs.assess_rows(fields, rows)
        classes = shadow.classes
        served_head = f'"model_name":"{self.bundle.name}","model_version":"{self.bundle.version}"'
        shadow_head = f'"model_name":"{shadow.name}","model_version":"{shadow.version}"'
        out, shadow_out = [], []
        for record, proba, c, w in zip(served, probas, completeness, warnings, strict=True):
            line = to_line(record)
            out.append(line)
            # Our own fields come before the features (ev_id and request_id hold no quote);
            # the scores and input checks are the last fields, after any text a client sent
            # (in a warning's text a quote is escaped: `,"probabilities":` cannot occur there).
            head, _ = line.rsplit(',"probabilities":', 1)
            head = head.replace(served_head, shadow_head, 1).replace(
                '"shadow":false', '"shadow":true', 1
            )
            tail = pydantic_core.to_json(
                {
                    "probabilities": dict(zip(classes, [round(p, 6) for p in proba], strict=True)),
                    "predicted": classes[proba.index(max(proba))],  # the first of equal maxima
                    "latency_ms": per_row,
                    "completeness": c,
                    "warnings": w,
                }
            ).decode()
            shadow_out.append(f"{head},{tail[1:]}")
        return "".join(line + "\n" for line in out + shadow_out)  # served lines, then shadow

    def _batch(
        self,
        bundle: Bundle,
        reports: Sequence[AccidentReport],
        request_ids: Sequence[str],
        function_version: str,
        *,
        shadow: bool,
    ) -> tuple[list[dict[str, Any]], list[str], str, float]:
        """Answers (plain dicts), labels and record lines of a batch: the reports' fields are
        read and encoded column by column, scored in one C call, no model object per row."""
        t0 = time.perf_counter()
        n = len(reports)
        spec = bundle.spec
        given = [vars(r) for r in reports]  # a pydantic model's field values, by name
        columns = {s: [g[s] for g in given] for s in spec.sources}
        encoded = spec.encode_columns(columns)
        out = bundle.model.predict_buffer(spec.pack(encoded, n), n)
        latency_ms = (time.perf_counter() - t0) * 1e3
        completeness, warnings = bundle.inputs.assess(columns, encoded, n)
        classes = bundle.classes
        # round(float(p), 6) and the first of equal maxima, as `_answers` gives them
        rounded, best = bundle.model.decide(out, n, digits=6)
        labels = [classes[b] for b in best]
        probabilities = _per_class(classes, rounded)
        version = bundle.version
        answers = [
            {
                "ev_id": g["ev_id"],
                "prediction_label": label,
                "probabilities": p,
                "model_version": version,
                "request_id": rid,
                "completeness": c,
                "warnings": w,
            }
            for g, label, p, rid, c, w in zip(
                given, labels, probabilities, request_ids, completeness, warnings, strict=True
            )
        ]
        # the timestamp as the record's serializer writes it, once for the batch
        stamp, name = utc_text(now()), bundle.name
        latency_row = round(latency_ms / max(n, 1), 4)
        docs = [
            {
                "record_type": "prediction",
                "schema_version": SCHEMA_VERSION,
                "request_id": rid,
                "ev_id": r.ev_id,
                "timestamp": stamp,
                "model_name": name,
                "model_version": version,
                "function_version": function_version,
                "shadow": shadow,
                "features": r,  # serialized as `fields()` gives them: see _json_lines
                "probabilities": p,
                "predicted": label,
                "latency_ms": latency_row,
                "completeness": c,
                "warnings": w,
            }
            for r, label, p, rid, c, w in zip(
                reports, labels, probabilities, request_ids, completeness, warnings, strict=True
            )
        ]
        not_features = set(type(reports[0]).model_fields) - REPORT_FIELDS if n else set()
        return answers, labels, _json_lines(docs, not_features), latency_ms

    def predict_batch(
        self, reports: Sequence[AccidentReport], request_ids: Sequence[str], function_version: str
    ) -> BatchScored:
        """`predict` for a batch, answered as JSON: the same answers and the same record
        lines, without a pydantic model per row, serialized once."""
        # Thousands of small acyclic objects, freed by reference counting: a cyclic
        # collection in the middle (one per ~700 allocations) would only walk the heap.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._predict_batch(reports, request_ids, function_version)
        finally:
            if collecting:
                gc.enable()

    def _predict_batch(
        self, reports: Sequence[AccidentReport], request_ids: Sequence[str], function_version: str
    ) -> BatchScored:
        answers, labels, text, latency = self._batch(
            self.bundle, reports, request_ids, function_version, shadow=False
        )
        if self.shadow is not None:
            try:
                text += self._batch(
                    self.shadow, reports, request_ids, function_version, shadow=True
                )[2]
            except Exception as e:  # a shadow must never break the answer
                print(
                    f'{{"level": "WARNING", "message": "shadow scoring failed: {type(e).__name__}"}}',
                    file=sys.stderr,
                )
        body = pydantic_core.to_json(
            {"predictions": answers, "model_version": self.version, "count": len(answers)}
        ).decode()
        return BatchScored(body, labels, text, latency, len(answers))

    def predict(
        self, reports: Sequence[AccidentReport], request_ids: Sequence[str], function_version: str
    ) -> Scored:
        """Score reports (1 or a batch) with the serving bundle, and the shadow if any."""
        answers, fields, rows, checks, latency = self._answers(self.bundle, reports, request_ids)
        records = self._records(
            self.bundle, answers, fields, latency, function_version, shadow=False
        )
        lines = ""
        if self.shadow is not None:
            try:
                lines = self._shadow_lines(records, fields, rows, checks)
            except Exception as e:  # a shadow must never break the answer
                print(
                    f'{{"level": "WARNING", "message": "shadow scoring failed: {type(e).__name__}"}}',
                    file=sys.stderr,
                )
        return Scored(answers, records, latency, lines)

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
        """One record per outcome, stamped with the time received and its place in the body
        (what orders an event's outcomes: the later in the body wins over the earlier)."""
        stamp = now()
        return [
            OutcomeRecord(
                request_id=request_id,
                ev_id=o.ev_id,
                timestamp=stamp,
                actual_severity=o.actual_severity,
                observed_at=o.observed_at,
                seq=i,
            )
            for i, o in enumerate(outcomes)
        ]


def record(records: Sequence[Record]) -> None:
    """Log records (one JSON line each)."""
    emit(records)


def record_lines(text: str, stream: TextIO | None = None) -> None:
    """Log records already serialized (`BatchScored.records_text`: JSON lines) where `emit`
    would write them."""
    out = stream or record_format._sink or sys.stdout
    out.write(text)
    out.flush()
