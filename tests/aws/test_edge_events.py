"""The handlers at the edge: an encoded body they cannot read, HEAD on their routes, events
that are not API Gateway proxy events, a date sent as a number. Each answered in the one
error shape, naming what was wrong and what is allowed; nothing scored."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from avsev.serving.records import parse_records
from avsev_tools.local.lambda_runtime import http_api_event
from lambda_support import FakeContext, call, rest_event, scheduled_event

EVENTS = Path(__file__).resolve().parents[1] / "data" / "events"
REPORT = {"ev_id": "A1", "event_date": "2019-03-02", "make": "Cessna"}


def check_error(status: int, body: dict, field: str | None) -> None:
    assert 400 <= status < 500, body
    assert body["error"]["status"] == status
    text = json.dumps(body)
    assert "Traceback" not in text and 'File "' not in text
    if field is not None:
        named = [d for d in body["error"]["details"] if d["field"] == field]
        assert named and named[0]["allowed"], body


def nothing_recorded(capsys) -> None:
    predictions, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    assert predictions == [] and outcomes == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_an_encoded_body_is_415_naming_content_encoding(functions, capsys, encoding):
    data = json.dumps(REPORT).encode()
    raw = gzip.compress(data) if encoding.startswith("gzip") else data
    event = rest_event("POST", "/predict", raw=raw, headers={"Content-Encoding": encoding})
    status, body, _ = call(functions["predict"], event)
    assert status == 415 and body["error"]["code"] == "unsupported_content_encoding", body
    check_error(status, body, "Content-Encoding")
    assert "identity" in body["error"]["details"][0]["allowed"]
    nothing_recorded(capsys)


def test_identity_encoding_is_read(functions):
    event = rest_event("POST", "/predict", REPORT, headers={"Content-Encoding": "identity"})
    assert call(functions["predict"], event)[0] == 200


@pytest.mark.parametrize(
    "function, path, allow",
    [
        ("predict", "/health", "GET"),
        ("predict", "/model", "GET"),
        ("predict", "/predict", "POST"),
        ("explain", "/predict/explain", "POST"),
        ("outcomes", "/outcomes", "POST"),
    ],
)
def test_head_and_other_undefined_methods_are_405_with_allow(functions, function, path, allow):
    for method in ("HEAD", "DELETE"):
        status, body, headers = call(functions[function], rest_event(method, path))
        assert status == 405 and body["error"]["code"] == "method_not_allowed", body
        assert headers["Allow"] == allow
        check_error(status, body, None)
    # an unknown path stays 404
    assert call(functions[function], rest_event("HEAD", "/nowhere"))[0] == 404


@pytest.mark.parametrize("function", ["predict", "explain", "outcomes"])
def test_an_http_event_of_another_kind_is_400(functions, capsys, function):
    event = json.loads((EVENTS / "powertools-albEvent.json").read_text())
    out = functions[function].handler(event, FakeContext())
    body = json.loads(out["body"])
    assert out["statusCode"] == 400 and body["error"]["code"] == "unsupported_event", body
    check_error(400, body, "event")
    nothing_recorded(capsys)


@pytest.mark.parametrize("function", ["predict", "explain", "outcomes"])
def test_an_http_api_event_is_answered_by_the_routes(functions, capsys, function):
    """Powertools' own HTTP API (payload 2.0) test event, for a path no function serves: the
    routes answer it (404 in the one error shape), not the event check."""
    event = json.loads((EVENTS / "powertools-apiGatewayProxyV2Event.json").read_text())
    status, body, _ = call(functions[function], event)
    assert status == 404 and body["error"]["code"] == "not_found", body
    assert "/my/path" in body["error"]["message"] and body["error"]["request_id"] == "id"
    check_error(status, body, None)
    nothing_recorded(capsys)


SAME_ANSWERS = [
    ("predict", "POST", "/predict", REPORT),
    ("predict", "POST", "/predict/batch", {"reports": [REPORT, {**REPORT, "ev_id": "B2"}]}),
    ("predict", "GET", "/health", None),
    ("predict", "GET", "/model", None),
    ("explain", "POST", "/predict/explain", {**REPORT, "top_k": 3}),
    ("outcomes", "POST", "/outcomes", {"ev_id": "A1", "actual_severity": "Fatal"}),
    ("predict", "POST", "/predict", {**REPORT, "dec_latitude": 91}),
    ("predict", "POST", "/predict", [REPORT]),
    ("predict", "DELETE", "/predict", None),
]


@pytest.mark.parametrize("function, method, path, body", SAME_ANSWERS)
def test_both_event_shapes_get_the_same_answers(functions, capsys, function, method, path, body):
    """A REST API (v1) event and an HTTP API (payload 2.0) event for the same request get the
    same status, body, headers and records."""
    answers = []
    for make in (rest_event, http_api_event):
        status, answer, headers = call(
            functions[function], make(method, path, body, request_id="r1")
        )
        records = [
            {
                k: v
                for k, v in r.model_dump(mode="json").items()
                if k not in {"timestamp", "latency_ms"}
            }
            for group in parse_records(capsys.readouterr().out.splitlines())[:2]
            for r in group
        ]
        for moving in ("latency_ms",):
            answer.pop(moving, None)
        headers = {k.lower(): v for k, v in headers.items()}
        answers.append((status, answer, headers, records))
    assert answers[0] == answers[1]
    assert answers[0][0] < 500


def test_an_http_api_event_that_cannot_be_read_is_415(functions, capsys):
    event = http_api_event(
        "POST", "/predict", raw="ev_id=A1", headers={"Content-Type": "text/plain"}
    )
    status, body, headers = call(functions["predict"], event)
    assert status == 415 and body["error"]["code"] == "unsupported_media_type", body
    assert headers["X-Model-Version"]
    nothing_recorded(capsys)


@pytest.mark.parametrize(
    "event",
    [
        {},
        scheduled_event("2026-01-01T00:00:00Z"),
        json.loads((EVENTS / "powertools-eventBridgeEvent.json").read_text()),
        {"httpMethod": "POST"},
    ],
    ids=["empty", "scheduled", "eventbridge", "half-rest"],
)
@pytest.mark.parametrize("function", ["predict", "explain", "outcomes"])
def test_a_non_http_event_is_logged_and_answered(functions, capsys, function, event):
    from avsev.serving.observability import logger

    log = io.StringIO()
    previous = logger.registered_handler.setStream(log)
    try:
        out = functions[function].handler(event, FakeContext())
    finally:
        logger.registered_handler.setStream(previous)
    body = json.loads(out["body"])
    assert out["statusCode"] == 400 and body["error"]["code"] == "unsupported_event", body
    logged = log.getvalue()
    assert '"level":"ERROR"' in logged
    assert "not an API Gateway proxy event" in logged and "Traceback" not in logged


@pytest.mark.parametrize("value", [1700000000, 1700000000.5, 0, True])
@pytest.mark.parametrize(
    "path, wrap, field",
    [
        ("/predict", lambda r: r, "event_date"),
        ("/predict/batch", lambda r: {"reports": [REPORT, r]}, "reports[1].event_date"),
        ("/predict/explain", lambda r: r, "event_date"),
    ],
)
def test_a_numeric_event_date_is_rejected(functions, capsys, value, path, wrap, field):
    function = "explain" if path == "/predict/explain" else "predict"
    event = rest_event("POST", path, wrap({**REPORT, "event_date": value}))
    status, body, _ = call(functions[function], event)
    assert status == 422, body
    check_error(status, body, field)
    detail = next(d for d in body["error"]["details"] if d["field"] == field)
    assert "YYYY-MM-DD" in detail["allowed"] and "string" in detail["problem"]
    nothing_recorded(capsys)


def test_the_batch_reader_rejects_a_numeric_event_date_for_the_same_reason():
    from avsev.serving.schema import AccidentReport
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        AccidentReport.model_validate({**REPORT, "event_date": 1700000000})
    assert caught.value.errors()[0]["loc"] == ("event_date",)
    assert "string" in caught.value.errors()[0]["msg"]
