"""The same client session against both API options of the local stack, each started from
its own synthesized template: the REST API (`-c api=rest`, the default: API key checked by the
gateway) and the HTTP API (`-c api=http`: payload format 2.0 events, the key checked by the
stack's Lambda authorizer against its secret). Predictions, a batch, an explanation, an
outcome, a bad request answered 422 naming its field, and no way in without the key."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from stack_support import REPORT, serving


@pytest.fixture(scope="module", params=["rest", "http"])
def stack(request, real_bundle_dir):
    yield from serving(real_bundle_dir, context={"api": request.param})


def call(stack, method: str, path: str, body=None, key: str | None = "stack's"):
    url = urlsplit(stack.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Api-Key"] = stack.api_key if key == "stack's" else key
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data, dict(response.getheaders())


def test_the_stack_serves_the_api_option_it_was_synthesized_with(stack):
    api = stack.context["api"]
    assert {r.api for r in stack.routes.values()} == {api}
    assert {(r.path, r.method) for r in stack.routes.values()} >= {
        ("/predict", "POST"),
        ("/predict/batch", "POST"),
        ("/predict/explain", "POST"),
        ("/outcomes", "POST"),
    }
    aliased = {r.path: r.qualifier for r in stack.routes.values()}
    assert aliased["/predict"] == aliased["/predict/explain"] == "live"
    if api == "http":
        assert all(r.authorizer is not None for r in stack.routes.values())
        assert len(stack.api_key) == 40  # the secret CloudFormation generated, as in AWS


def test_predict_batch_explain_and_outcomes(stack):
    status, body, headers = call(stack, "POST", "/predict", REPORT)
    assert status == 200, body
    assert body["prediction_label"] and headers["X-Model-Version"] == "1.0.0"
    reports = [{**REPORT, "ev_id": f"B{i}"} for i in range(5)]
    status, body, _ = call(stack, "POST", "/predict/batch", {"reports": reports})
    assert status == 200 and [p["ev_id"] for p in body["predictions"]] == [
        r["ev_id"] for r in reports
    ]
    status, body, _ = call(stack, "POST", "/predict/explain", REPORT)
    assert status == 200 and body["top_contributing_factors"]
    outcome = {"ev_id": "ERA19FA001", "actual_severity": "Fatal"}
    status, body, _ = call(stack, "POST", "/outcomes", outcome)
    assert status == 200 and body["accepted"] == 1


def test_a_bad_request_is_422_naming_the_field(stack):
    status, body, _ = call(stack, "POST", "/predict", {**REPORT, "dec_latitude": 91})
    assert status == 422, body
    named = [d for d in body["error"]["details"] if d["field"] == "dec_latitude"]
    assert named and named[0]["allowed"], body


def test_no_one_gets_in_without_the_key(stack):
    rest = stack.context["api"] == "rest"
    for key in (None, "not-the-key"):
        status, body, _ = call(stack, "POST", "/predict", REPORT, key=key)
        if rest:  # the REST API's key check (a usage plan's key, API Gateway's 403)
            assert status == 403 and body["error"]["code"] == "forbidden", body
        elif key is None:  # the authorizer's identity source is missing: never called
            assert (status, body) == (401, {"message": "Unauthorized"})
        else:  # the authorizer compared it with the secret and said no
            assert (status, body) == (403, {"message": "Forbidden"})
    status, body, _ = call(stack, "GET", "/nowhere")
    assert status == (403 if rest else 404), body
