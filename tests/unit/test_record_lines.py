"""Every record line comes from one writer (`records.lines`), and scoring has one path for one
report or many: the lines and answers are byte for byte those the serving code gave before
(kept as tests/data/records/service_before.py.txt), on the same reports, bundles and clock,
and each line is what its record model writes."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
from avsev.serving import records, scoring, service
from avsev.serving.bundle import load_bundle
from avsev.serving.records import (
    PredictionRecord,
    PredictionRecords,
    emit,
    lines,
    outcome_records,
    parse_records,
)
from avsev.serving.schema import AccidentReport, ExplainRequest, Outcome
from avsev.serving.service import PredictionService
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from record_cases import case_reports, fixed_clock, service_before


@pytest.fixture(scope="module")
def bundles(real_bundle_dir, synthetic_bundle_dir):
    return load_bundle(real_bundle_dir, explain=True), load_bundle(synthetic_bundle_dir)


@pytest.fixture(scope="module")
def services(bundles):
    served, shadow = bundles
    return {"shadow": PredictionService(served, shadow), "alone": PredictionService(served)}


OUTCOMES = (
    {"ev_id": "A1", "actual_severity": "Fatal"},
    {"ev_id": "ODD.1", "actual_severity": "Minor", "observed_at": "2025-03-04T05:06:07+02:00"},
)


def _cases(
    reports: list[AccidentReport],
    single: Callable[[str, AccidentReport, str], tuple[str, str]],
    batch: Callable[[str, list[AccidentReport], list[str]], tuple[str, str]],
    explain: Callable[[ExplainRequest], tuple[str, str]],
    outcomes: Callable[[list[Outcome]], str],
) -> list[tuple[str, str, str]]:
    """(case, answer, record lines) of each report scored alone and all of them as a batch,
    with a shadow and without; three explained; two outcomes."""
    ids = [f"req-1#{i}" for i in range(len(reports))]
    out = []
    for tag in ("shadow", "alone"):
        for r, rid in zip(reports[-12:], ids[-12:], strict=True):
            out.append((f"single/{tag}/{r.ev_id}", *single(tag, r, rid)))
        out.append((f"batch/{tag}", *batch(tag, reports, ids)))
    for r in reports[-3:]:
        request = ExplainRequest.model_validate({**r.model_dump(mode="json"), "top_k": 3})
        out.append((f"explain/{r.ev_id}", *explain(request)))
    out.append(("outcomes", "", outcomes([Outcome.model_validate(o) for o in OUTCOMES])))
    return out


def _before(bundles: Any, reports: list[AccidentReport], mp: pytest.MonkeyPatch) -> list[Any]:
    """What the serving code gave before (its own copy, on its own fixed clock)."""
    old = service_before()
    fixed_clock(mp, [old])
    served, shadow = bundles
    svc = {"shadow": old.PredictionService(served, shadow), "alone": old.PredictionService(served)}

    def logged(scored: Any) -> str:
        out = io.StringIO()
        records.set_sink(out)
        try:
            scored.log()
        finally:
            records.set_sink(None)
        return out.getvalue()

    def single(tag: str, r: AccidentReport, rid: str) -> tuple[str, str]:
        scored = svc[tag].predict([r], [rid], "7")
        return scored.predictions[0].model_dump_json(), logged(scored)

    def batch(tag: str, rs: list[AccidentReport], ids: list[str]) -> tuple[str, str]:
        scored = svc[tag].predict_batch(rs, ids, "7")
        return scored.body, scored.records_text

    def explain(request: ExplainRequest) -> tuple[str, str]:
        explanation, scored = svc["shadow"].explain(request, "ex-1", "7", top_k=3)
        return explanation.model_dump_json(), logged(scored)

    def outcomes(body: list[Outcome]) -> str:
        out = io.StringIO()
        old.emit(old.PredictionService.outcomes(body, "out-1"), out)
        return out.getvalue()

    return _cases(reports, single, batch, explain, outcomes)


def _now(services: Any, reports: list[AccidentReport], mp: pytest.MonkeyPatch) -> list[Any]:
    fixed_clock(mp, [service, scoring, records])

    def written(scored: service.Scored) -> str:
        out = io.StringIO()
        emit(scored.records, out)
        return out.getvalue()

    def single(tag: str, r: AccidentReport, rid: str) -> tuple[str, str]:
        scored = services[tag].predict([r], [rid], "7")
        return scored.predictions[0].model_dump_json(), written(scored)

    def batch(tag: str, rs: list[AccidentReport], ids: list[str]) -> tuple[str, str]:
        scored = services[tag].predict(rs, ids, "7")
        return scored.body, written(scored)

    def explain(request: ExplainRequest) -> tuple[str, str]:
        explanation, scored = services["shadow"].explain(request, "ex-1", "7", top_k=3)
        return explanation.model_dump_json(), written(scored)

    def outcomes(body: list[Outcome]) -> str:
        return lines(outcome_records(body, "out-1"))

    return _cases(reports, single, batch, explain, outcomes)


def test_answers_and_lines_are_those_the_serving_code_gave_before(
    real_data, bundles, services, monkeypatch
):
    # Given real reports and edge cases, the same bundles, and a fixed clock on both sides
    reports = case_reports(real_data)
    # When each is scored alone and all as one batch, with and without a shadow, a few are
    # explained, and two outcomes are received, by the code before and the code now
    before = _before(bundles, reports, monkeypatch)
    now = _now(services, reports, monkeypatch)
    # Then every answer and every record line is the same, byte for byte
    assert [c[0] for c in now] == [c[0] for c in before]
    for mine, theirs in zip(now, before, strict=True):
        assert mine[1] == theirs[1], mine[0]
        assert mine[2] == theirs[2], mine[0]
    assert all(c[2] for c in now)


def test_each_line_is_what_its_record_model_writes(real_data, services):
    reports = case_reports(real_data)
    ids = [f"r#{i}" for i in range(len(reports))]
    scored = services["shadow"].predict(reports, ids, "3")
    written = scored.lines
    models = [m for batch in scored.records for m in batch.records()]
    # one line per record, served then shadow, each the model's own JSON
    assert len(written) == 2 * len(reports)
    assert written == [m.model_dump_json() for m in models]
    assert [m.shadow for m in models] == [False] * len(reports) + [True] * len(reports)
    for line in written:
        assert PredictionRecord.model_validate_json(line).model_dump_json() == line
    parsed, _, skipped = parse_records(written)
    assert skipped == 0 and len(parsed) == len(models)
    assert parsed[len(reports) - 2].features == reports[-2].fields()  # quotes, braces in text
    assert parsed[len(reports) - 3].features == {}  # nothing but an id


def test_one_report_scores_as_it_does_in_a_batch(real_data, services):
    reports = case_reports(real_data)[-40:]
    ids = [f"r#{i}" for i in range(len(reports))]
    batch = services["shadow"].predict(reports, ids, "1")
    alone = [services["shadow"].predict([r], [i], "1") for r, i in zip(reports, ids, strict=True)]
    assert [a.answers[0] for a in alone] == batch.answers
    assert [a.predictions[0] for a in alone] == batch.predictions

    def scores(s: service.Scored) -> list[tuple]:
        return [
            (
                m.shadow,
                m.ev_id,
                m.features,
                m.probabilities,
                m.predicted,
                m.completeness,
                m.warnings,
            )
            for b in s.records
            for m in b.records()
        ]

    expected = scores(batch)
    n = len(reports)
    assert [scores(a)[0] for a in alone] == expected[:n]
    assert [scores(a)[1] for a in alone] == expected[n:]


# Any text a client may send in a report, any score: the writer's line is the model's.
_text = st.text(max_size=12) | st.sampled_from(['"},{"record_type":"x', "\u2028", "é\\n"])


def _report(ev: str, make: str | None, age: float | None, amateur: bool | None) -> Any:
    try:
        return AccidentReport.model_validate(
            {"ev_id": ev, "make": make, "aircraft_age": age, "amateur_built": amateur}
        )
    except ValidationError:
        return None  # (a make that is no make: filtered out)


_reports = st.builds(
    _report,
    st.from_regex(r"\A[A-Za-z0-9._-]{1,12}\Z"),
    _text | st.none(),
    st.integers(0, 80) | st.floats(0, 80, allow_nan=False) | st.none(),
    st.booleans() | st.none(),
).filter(lambda r: r is not None)
_proba = st.floats(0, 1, allow_nan=False)
_warning = st.builds(  # as the input checks give them: InputWarning's fields in its order
    lambda code, field, detail: {"code": code, "field": field, "detail": detail},
    st.sampled_from(["missing_important_field", "out_of_training_range"]),
    st.sampled_from(["make", "aircraft_age"]),
    _text,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            _reports,
            _text,
            st.lists(_proba, min_size=4, max_size=4),
            st.integers(0, 3),
            _proba,
            st.lists(_warning, max_size=2),
        ),
        max_size=4,
    ),
    latency=st.floats(0, 1e4, allow_nan=False),
    shadow=st.booleans(),
    stamp=st.datetimes(timezones=st.just(dt.UTC)),
)
def test_the_writer_writes_each_record_as_its_model_does(rows, latency, shadow, stamp):
    classes = ["Fatal", "Serious", "Minor", "None"]
    batch = PredictionRecords(
        reports=[r[0] for r in rows],
        request_ids=[r[1] for r in rows],
        timestamp=stamp,
        model_name="m",
        model_version="1.2.3",
        function_version="$LATEST",
        shadow=shadow,
        probabilities=[dict(zip(classes, r[2], strict=True)) for r in rows],
        predicted=[classes[r[3]] for r in rows],
        latency_ms=latency,
        completeness=[r[4] for r in rows],
        warnings=[r[5] for r in rows],
    )
    expected = "".join(m.model_dump_json() + "\n" for m in batch.records())
    assert lines([batch]) == expected
