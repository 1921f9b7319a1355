"""Bad input: 4xx in the one error shape, naming each bad field and what is allowed; never
a 500, never a stack trace; nothing recorded. A table of cases, then generated ones."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from avsev.serving.errors import ErrorResponse
from avsev.serving.records import parse_records
from hypothesis import HealthCheck, given, settings
from lambda_support import call, rest_event

FUTURE = (dt.date.today() + dt.timedelta(days=30)).isoformat()
OK = {"ev_id": "A1"}

CASES = [
    # (name, route, event kwargs, status, field named)
    ("malformed JSON", "/predict", {"raw": '{"ev_id": "A1",'}, 400, "body"),
    ("missing body", "/predict", {}, 400, "body"),
    ("empty body", "/predict", {"raw": ""}, 400, "body"),
    ("base64 body not UTF-8", "/predict", {"raw": b"\xff\xfe\xfa{"}, 400, "body"),
    ("body is a list", "/predict", {"body": [OK]}, 422, "body"),
    ("body is null", "/predict", {"raw": "null"}, 400, "body"),
    ("ev_id missing", "/predict", {"body": {"make": "Cessna"}}, 422, "ev_id"),
    ("ev_id bad characters", "/predict", {"body": {"ev_id": "A 1/2"}}, 422, "ev_id"),
    ("wrong type", "/predict", {"body": {**OK, "aircraft_age": "ten"}}, 422, "aircraft_age"),
    (
        "number as string",
        "/predict",
        {"body": {**OK, "pilot_tot_time": "120"}},
        422,
        "pilot_tot_time",
    ),
    (
        "float for an integer",
        "/predict",
        {"body": {**OK, "aircraft_age": 5.5}},
        422,
        "aircraft_age",
    ),
    (
        "bool for a number",
        "/predict",
        {"body": {**OK, "number_of_engines": True}},
        422,
        "number_of_engines",
    ),
    ("number for a bool", "/predict", {"body": {**OK, "amateur_built": 1}}, 422, "amateur_built"),
    (
        "latitude out of range",
        "/predict",
        {"body": {**OK, "dec_latitude": 91}},
        422,
        "dec_latitude",
    ),
    (
        "longitude out of range",
        "/predict",
        {"body": {**OK, "dec_longitude": -180.5}},
        422,
        "dec_longitude",
    ),
    (
        "aircraft age out of range",
        "/predict",
        {"body": {**OK, "aircraft_age": 101}},
        422,
        "aircraft_age",
    ),
    ("phase code out of range", "/predict", {"body": {**OK, "phase_code": 499}}, 422, "phase_code"),
    (
        "pilot hours out of range",
        "/predict",
        {"body": {**OK, "pilot_tot_time": 50001}},
        422,
        "pilot_tot_time",
    ),
    (
        "recent hours above total",
        "/predict",
        {"body": {**OK, "pilot_tot_time": 10, "pilot_90_days": 11}},
        422,
        "pilot_90_days",
    ),
    (
        "invalid occurrence code",
        "/predict",
        {"body": {**OK, "occurrence_code": 180}},
        422,
        "occurrence_code",
    ),
    (
        "unknown category",
        "/predict",
        {"body": {**OK, "purpose_of_flight": "Joyride"}},
        422,
        "purpose_of_flight",
    ),
    (
        "unknown weather",
        "/predict",
        {"body": {**OK, "weather_condition": "foggy"}},
        422,
        "weather_condition",
    ),
    (
        "unknown field",
        "/predict",
        {"body": {**OK, "injury_severity": "Fatal"}},
        422,
        "injury_severity",
    ),
    ("NaN", "/predict", {"raw": '{"ev_id": "A1", "dec_latitude": NaN}'}, 422, "dec_latitude"),
    (
        "Infinity",
        "/predict",
        {"raw": '{"ev_id": "A1", "pilot_tot_time": Infinity}'},
        422,
        "pilot_tot_time",
    ),
    ("date in the future", "/predict", {"body": {**OK, "event_date": FUTURE}}, 422, "event_date"),
    ("not a date", "/predict", {"body": {**OK, "event_date": "31/12/2019"}}, 422, "event_date"),
    ("make too long", "/predict", {"body": {**OK, "make": "x" * 65}}, 422, "make"),
    ("batch not a list", "/predict/batch", {"body": {"reports": OK}}, 422, "reports"),
    (
        "batch row wrong",
        "/predict/batch",
        {"body": {"reports": [OK, {"ev_id": "B", "phase_code": 700}]}},
        422,
        "reports[1].phase_code",
    ),
    ("top_k zero", "/predict/explain", {"body": {**OK, "top_k": 0}}, 422, "top_k"),
    (
        "outcome severity unknown",
        "/outcomes",
        {"body": {"ev_id": "A1", "actual_severity": "Bad"}},
        422,
        "outcomes[0].actual_severity",
    ),
    (
        "outcome date bad",
        "/outcomes",
        {"body": {"outcomes": [{"ev_id": "A1", "actual_severity": "None", "observed_at": "soon"}]}},
        422,
        "outcomes[0].observed_at",
    ),
    ("no such route", "/predict/all", {"body": OK}, 404, None),
]
ROUTE_FUNCTION = {
    "/predict": "predict",
    "/predict/batch": "predict",
    "/predict/all": "predict",
    "/predict/explain": "explain",
    "/outcomes": "outcomes",
}


def check_error(status: int, body: dict) -> None:
    assert 400 <= status < 500, body
    ErrorResponse.model_validate(body)
    text = json.dumps(body)
    assert "Traceback" not in text and 'File "' not in text
    assert body["error"]["status"] == status


@pytest.mark.parametrize("name, route, kwargs, status, field", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(functions, capsys, name, route, kwargs, status, field):
    event = rest_event("POST", route, **kwargs)
    got_status, body, _ = call(functions[ROUTE_FUNCTION[route]], event)
    assert got_status == status, body
    check_error(got_status, body)
    if field is not None:
        details = body["error"]["details"]
        named = [d for d in details if d["field"] == field]
        assert named, f"{field} not named in {details}"
        assert named[0]["problem"]
        if field not in ("body",):
            assert named[0].get("allowed"), named[0]
    predictions, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    assert predictions == [] and outcomes == []


def test_many_bad_fields_are_all_named(functions):
    body = {"ev_id": "A1", "dec_latitude": 100, "make": "", "weather_condition": "hail", "extra": 1}
    status, answer, _ = call(functions["predict"], rest_event("POST", "/predict", body))
    assert status == 422
    assert {d["field"] for d in answer["error"]["details"]} == {
        "dec_latitude",
        "make",
        "weather_condition",
        "extra",
    }


def _cases_to_events(openapi_document, path, method="POST"):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(openapi_document)
    return schema[path][method].as_strategy(generation_mode=GenerationMode.NEGATIVE)


@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/predict/explain", "/outcomes"])
def test_generated_negative_cases_never_5xx(functions, openapi_document, path):
    strategy = _cases_to_events(openapi_document, path)
    module = functions[ROUTE_FUNCTION[path]]

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=strategy)
    def run(case):
        body = case.body
        raw = None if body is None or isinstance(body, dict | list) else body
        kwargs = {"raw": raw if isinstance(raw, str | bytes) else json.dumps(body)}
        status, answer, _ = call(
            module,
            rest_event(
                case.method,
                case.formatted_path if hasattr(case, "formatted_path") else path,
                **kwargs,
            ),
        )
        assert status < 500, answer
        if status >= 400:
            check_error(status, answer)

    run()


def test_openapi_document_is_generated_from_the_handlers(openapi_document):
    from openapi_spec_validator import validate

    validate(openapi_document)
    paths = openapi_document["paths"]
    assert set(paths) == {
        "/predict",
        "/predict/batch",
        "/predict/explain",
        "/outcomes",
        "/model",
        "/health",
    }
    schemas = openapi_document["components"]["schemas"]
    report = schemas["PredictRequest"]
    assert report["additionalProperties"] is False and report["required"] == ["ev_id"]
    assert {"pilot_90_days", "occurrence_code", "make"} <= set(report["properties"])
    assert schemas["BatchRequest"]["properties"]["reports"]["maxItems"] == 1000
    for op in paths["/predict"].values():
        assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Prediction"
        }
    assert "HTTPValidationError" not in schemas
