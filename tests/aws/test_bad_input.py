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

OBSERVED_AT_BAD = {
    name: {"ev_id": "A1", "actual_severity": "None", "observed_at": value}
    for name, value in {
        "tomorrow": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
        "in 9999": "9999-12-31",
        "in 9999 west of UTC": "9999-12-31T23:00:00-05:00",
        "before 1962": "1961-12-31T23:59:59Z",
        "as epoch seconds": 1700000000,
    }.items()
}
"""Outcome times outside the NTSB database's era to now (+ a few minutes), or not ISO 8601."""

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
    *[
        (
            f"outcome observed {name}",
            "/outcomes",
            {"body": {"outcomes": [{"ev_id": "A1", "actual_severity": "None"}, bad]}},
            422,
            "outcomes[1].observed_at",
        )
        for name, bad in OBSERVED_AT_BAD.items()
    ],
    ("no such route", "/predict/all", {"body": OK}, 404, None),
]
GOOD = json.dumps(OK)
DEEP = "[" * 5000 + "]" * 5000
LIMIT_CASES = [
    # (name, event kwargs, status, code, field named): sent to every route that takes a body
    (
        "JSON as text/plain",
        {"raw": GOOD, "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "JSON as application/xml",
        {"raw": GOOD, "headers": {"Content-Type": "application/xml"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "form encoded",
        {"raw": "ev_id=A1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "multipart",
        {"raw": "--x--", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "JSON in Latin-1",
        {"raw": GOOD, "headers": {"Content-Type": "application/json; charset=latin-1"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "empty body as text/plain",
        {"raw": "", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    ("nested 5,000 deep", {"raw": DEEP}, 400, "body_too_deep", "body"),
    (
        "nested 5,000 deep in an object",
        {"raw": '{"ev_id": "A1", "make": ' + DEEP + "}"},
        400,
        "body_too_deep",
        "body",
    ),
    (
        "nested 17 deep",
        {"raw": '{"ev_id": ' + "[" * 16 + "]" * 16 + "}"},
        400,
        "body_too_deep",
        "body",
    ),
    (
        "integer of 5,000 digits",
        {"raw": '{"ev_id": "A1", "aircraft_age": ' + "9" * 5000 + "}"},
        400,
        "number_too_long",
        "body",
    ),
    (
        "float of 5,000 digits",
        {"raw": '{"ev_id": "A1", "pilot_tot_time": 0.' + "1" * 5000 + "}"},
        400,
        "number_too_long",
        "body",
    ),
    (
        "body over 2 MiB",
        {"raw": '{"ev_id": "A1", "make": "' + "x" * (2 * 1024 * 1024) + '"}'},
        413,
        "body_too_large",
        "body",
    ),
    (
        "base64 flag on bad base64",
        {"raw": "e30", "_bad_b64": True},
        400,
        "bad_encoding",
        "body",
    ),
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


@pytest.mark.parametrize("name", list(OBSERVED_AT_BAD))
def test_an_outcome_time_out_of_range_names_the_range(functions, capsys, name):
    event = rest_event("POST", "/outcomes", {"outcomes": [OBSERVED_AT_BAD[name]]})
    status, body, _ = call(functions["outcomes"], event)
    assert status == 422, body
    [detail] = body["error"]["details"]
    assert detail["field"] == "outcomes[0].observed_at"
    assert "1962-01-01" in detail["allowed"] and "5 minutes from now" in detail["allowed"]
    assert "UTC" in detail["allowed"]
    assert parse_records(capsys.readouterr().out.splitlines())[1] == []


BODY_ROUTES = ["/predict", "/predict/batch", "/predict/explain", "/outcomes"]


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    "name, kwargs, status, code, field", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES]
)
def test_limits_on_every_route(functions, capsys, route, name, kwargs, status, code, field):
    kwargs = dict(kwargs)
    bad_b64 = kwargs.pop("_bad_b64", False)
    event = rest_event("POST", route, **kwargs)
    if bad_b64:
        event["isBase64Encoded"] = True
    got_status, body, _ = call(functions[ROUTE_FUNCTION[route]], event)
    assert (got_status, body["error"]["code"]) == (status, code), body
    check_error(got_status, body)
    named = [d for d in body["error"]["details"] if d["field"] == field]
    assert named and named[0]["allowed"], body
    predictions, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    assert predictions == [] and outcomes == []


def test_limits_name_what_is_allowed(functions):
    from avsev.serving import limits

    event = rest_event("POST", "/predict", raw=DEEP)
    _, body, _ = call(functions["predict"], event)
    assert f"{limits.MAX_DEPTH} levels" in body["error"]["details"][0]["allowed"]
    event = rest_event("POST", "/predict", raw=GOOD, headers={"Content-Type": "text/csv"})
    _, body, _ = call(functions["predict"], event)
    assert "application/json" in body["error"]["details"][0]["allowed"]
    assert "text/csv" in body["error"]["message"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=UTF-8", "APPLICATION/JSON"],
)
def test_json_content_types_are_accepted(functions, content_type):
    event = rest_event("POST", "/predict", OK)
    if content_type is None:
        del event["headers"]["Content-Type"]
        del event["multiValueHeaders"]["Content-Type"]
    else:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    status, body, _ = call(functions["predict"], event)
    assert status == 200, body


def test_the_largest_valid_batch_is_within_the_limits(functions):
    """Every field at its longest, indented, text escaped: still under the limits."""
    from avsev.serving.limits import MAX_BODY_BYTES

    report = {
        "ev_id": "A" * 64,
        "event_date": "2019-12-31",
        "dec_latitude": -89.12345678901234,
        "dec_longitude": -179.12345678901234,
        "aircraft_age": 100,
        "pilot_tot_time": 49999.123456789012,
        "pilot_90_days": 499.12345678901234,
        "phase_code": 600,
        "occurrence_code": 250,
        "number_of_engines": 8,
        "engine_type": "Reciprocating",
        "purpose_of_flight": "Public Aircraft - Federal",
        "broad_phase_of_flight": "Maneuvering",
        "make": "\u00e9" * 64,
        "weather_condition": "VMC",
        "amateur_built": False,
    }
    raw = json.dumps({"reports": [report] * 1000}, indent=4, ensure_ascii=True)
    assert len(raw) < MAX_BODY_BYTES
    status, body, _ = call(functions["predict"], rest_event("POST", "/predict/batch", raw=raw))
    assert status == 200, str(body)[:500]
    assert body["count"] == 1000


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
