"""A body its route's model accepts is validated straight from its JSON text
(`serving.http.validated_from_text`); everything else takes the usual path (parse within the
limits, then Powertools' validation). The two must give the same answers, the same records and the same errors."""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from typing import Any

import pytest
from avsev.serving import http, limits
from avsev.serving.records import parse_records
from avsev.serving.schema import AccidentReport, PredictRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lambda_support import call, rest_event
from pydantic import BaseModel, ValidationError

REAL = {
    "ev_id": "CEN11FA292",
    "event_date": "2011-04-16",
    "dec_latitude": 30.004167,
    "dec_longitude": -90.108889,
    "number_of_engines": 1,
    "engine_type": "Reciprocating",
    "purpose_of_flight": "Personal",
    "broad_phase_of_flight": "Climb",
    "weather_condition": "VMC",
    "make": "PIPER",
    "amateur_built": False,
}
ODD_BUT_VALID = [
    {**REAL, "number_of_engines": 2.0, "dec_latitude": -0.0, "dec_longitude": 1e-300},
    {**REAL, "engine_type": " turbo   prop ", "broad_phase_of_flight": "go around"},
    {**REAL, "make": "Soci\u00e9t\u00e9 \U0001f600", "weather_condition": "UNK"},
    {"ev_id": "A1", "aircraft_age": 0, "pilot_tot_time": 50000, "pilot_90_days": 500.0},
    {"ev_id": "A1", "phase_code": 5.7e2, "occurrence_code": 430, "event_date": None},
]
RAW_BODIES = [
    # (route, raw text): spellings json.loads and pydantic's parser might read differently
    ("/predict", '{"ev_id": "A1", "ev_id": "B2", "make": "x", "make": "Cessna"}'),
    ("/predict", ' \n\t{"ev_id":"A1","make":"\\u00e9\\ud83d\\ude00"}\r\n '),
    ("/predict", '{"ev_id": "A1", "make": "\\ud800"}'),
    ("/predict", '\ufeff{"ev_id": "A1"}'),
    ("/predict", '{"ev_id": "A1"} x'),
    ("/predict", '{"ev_id": "A1", "dec_latitude": NaN}'),
    ("/predict", '{"ev_id": "A1", "dec_latitude": 1e400}'),
    ("/predict", '{"ev_id": "A1", "dec_latitude": 1.' + "0" * 150 + "}"),
    ("/predict", '{"ev_id": "A1", "make": "' + "e" * 150 + '"}'),
    ("/predict", '{"ev_id": "A1", "aircraft_age": 2.5}'),
    ("/predict/batch", json.dumps({"reports": [REAL, *ODD_BUT_VALID]})),
    ("/predict/batch", json.dumps({"reports": [REAL, {**REAL, "dec_latitude": 91}]})),
    (
        "/predict/batch",
        json.dumps({"reports": [REAL], "extra": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}),
    ),
    ("/predict/batch", json.dumps([{"reports": [REAL]}])),
    ("/predict/explain", json.dumps({**REAL, "top_k": 3})),
    ("/outcomes", json.dumps({"ev_id": "A1", "actual_severity": "Fatal"})),
    ("/outcomes", json.dumps({"outcomes": [{"ev_id": "A1", "actual_severity": "Minor"}] * 3})),
]
FUNCTION = {"/predict": "predict", "/predict/batch": "predict", "/predict/explain": "explain"}


def _answer(functions, capsys, route: str, raw: str) -> tuple[int, Any, list[dict[str, Any]]]:
    status, body, _ = call(
        functions[FUNCTION.get(route, "outcomes")],
        rest_event("POST", route, raw=raw, request_id="r1"),
    )
    predictions, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    moving = {"timestamp", "latency_ms"}
    records = [
        {k: v for k, v in r.model_dump(mode="json").items() if k not in moving}
        for r in [*predictions, *outcomes]
    ]
    return status, body, records


@pytest.mark.parametrize(
    "route, raw",
    [("/predict", json.dumps(r)) for r in [REAL, *ODD_BUT_VALID]] + RAW_BODIES,
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_both_paths_give_the_same_answers_records_and_errors(
    functions, capsys, monkeypatch, route, raw
):
    fast = _answer(functions, capsys, route, raw)
    monkeypatch.setattr(http, "validated_from_text", lambda route, event: None)
    slow = _answer(functions, capsys, route, raw)
    assert fast == slow
    assert fast[0] < 500, fast


def test_a_valid_body_takes_the_fast_path(functions, capsys, monkeypatch):
    """The usual parse is not reached for a valid batch (so the saving is real), and is for
    a body with a long run of number characters (so the number limit still holds)."""

    def parse_not_expected(text):
        raise AssertionError("the body was parsed by the usual path")

    monkeypatch.setattr(http, "decode_json", parse_not_expected)
    status, body, _ = call(
        functions["predict"], rest_event("POST", "/predict/batch", {"reports": [REAL] * 3})
    )
    assert status == 200 and body["count"] == 3, body
    capsys.readouterr()
    monkeypatch.undo()
    status, body, _ = call(
        functions["predict"],
        rest_event("POST", "/predict", raw='{"ev_id": "A1", "dec_latitude": 1.' + "0" * 150 + "}"),
    )
    assert (status, body["error"]["code"]) == (400, "number_too_long"), body


def test_the_number_check_finds_every_long_run():
    assert limits.may_have_long_number("[" + "1" * 101 + "]")
    assert limits.may_have_long_number('{"a": -1.5e+' + "0" * 97 + "}")
    assert not limits.may_have_long_number("[" + ", ".join(["1" * 100] * 50) + "]")


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["Cessna", "climb", "VMC", "imc", "Go-around", "2019-12-31", "2019-02-29"]),
)
FIELD_VALUES = st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=2))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    report=st.dictionaries(
        st.sampled_from([*AccidentReport.model_fields, "other"]), FIELD_VALUES, max_size=8
    ),
    indent=st.sampled_from([None, 1]),
)
def test_pydantic_json_reads_what_json_loads_reads(report, indent):
    """Whatever the model accepts from the text, it accepts from `json.loads` of the text,
    with equal values (the fast path's claim)."""
    text = json.dumps({"ev_id": "A1", **report}, indent=indent)
    try:
        fast = PredictRequest.model_validate_json(text)
    except ValidationError:
        return  # then the fast path steps aside
    assert fast == PredictRequest.model_validate(json.loads(text))


LEAVES = (str, int, float, bool, dt.date, dt.datetime, type(None))


def _nesting(annotation: Any) -> int:
    """Levels of arrays and objects a value of this type can hold (0 for a scalar); fails on
    a type whose values could nest without bound (a dict, Any, a model allowing extras)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _nesting(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return max(_nesting(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return 0
    if origin is list:
        return 1 + _nesting(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert annotation.model_config.get("extra") == "forbid", annotation
        return 1 + max(
            (_nesting(f.annotation) for f in annotation.model_fields.values()), default=0
        )
    assert annotation in LEAVES, annotation
    return 0


def test_every_body_model_nests_within_the_limit(functions):
    """A body a model accepts nests no deeper than the model: every route validated from its
    text has a model within `MAX_DEPTH`, allowing no unknown fields."""
    seen = []
    for module in functions.values():
        for handler in module.app.handlers.values():
            target = http.sole_body_model(handler)
            if target is not None:
                seen.append(target[1].__name__)
                assert _nesting(target[1]) <= limits.MAX_DEPTH
    assert {"PredictRequest", "BatchRequest", "ExplainRequest", "OutcomesRequest"} <= set(seen)
