"""The local gateway in front of an HTTP API (the template's `AWS::ApiGatewayV2::Route`s), with
stand-in functions: payload format 2.0 events, API Gateway's own answers for an unknown route
and a refused or missing credential, and the Lambda authorizer's cache.

As AWS documents them: a route no request matches is 404 `{"message":"Not Found"}`
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html);
a REQUEST authorizer whose identity sources are not all present and non-empty is not called
and the request is 401 (https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/apis-apiid-authorizers.html);
a simple response `isAuthorized: false` is 403; answers are cached per identity source value
for the authorizer's TTL
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html)."""

from __future__ import annotations

import http.client
import json
import threading
from types import SimpleNamespace

import pytest
from avsev_tools.local.assembly import Authorizer, Route

KEY = "the-key"


class Backend:
    """An HTTP API's routes behind one authorizer; the functions' events are kept."""

    def __init__(self, ttl: int = 300) -> None:
        authorizer = Authorizer(
            logical_id="KeyAuthorizer",
            function="AuthorizerFunction",
            function_key="authorizer",
            identity_source=("$request.header.X-Api-Key",),
            ttl_seconds=ttl,
            simple_responses=True,
            payload_format="2.0",
        )

        def route(path: str, method: str) -> Route:
            return Route(
                logical_id=f"{method}{path}",
                path=path,
                method=method,
                authorization="CUSTOM",
                api_key_required=False,
                integration="AWS_PROXY",
                function="Predict",
                function_key="predict",
                qualifier="live",
                api="http",
                payload_format="2.0",
                authorizer=authorizer,
            )

        self.routes = {(p, m): route(p, m) for p, m in [("/predict", "POST"), ("/health", "GET")]}
        self.api_key = KEY
        self.events: dict[str, list[dict]] = {"authorizer": [], "predict": []}
        self.qualifiers: list[str | None] = []
        self.lock = threading.Lock()
        self.base_url = ""
        self.cards: list[dict] = []
        self.traffic = SimpleNamespace()

    def invoke(self, function, event, qualifier=None):
        with self.lock:
            self.events[function].append(event)
            self.qualifiers.append(qualifier)
        if function == "authorizer":
            ok = event["headers"].get("x-api-key") == KEY
            return {"isAuthorized": ok, "context": {"client": "first"}}
        return {
            "statusCode": 200,
            "body": json.dumps({"seen": event["rawPath"]}),
            "headers": {"Content-Type": "application/json"},
        }

    def flush(self) -> int:
        return 0


@pytest.fixture()
def gateway():
    from avsev_tools.local.gateway import serve

    servers = []

    def start(backend: Backend) -> int:
        server = serve(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
        servers.append(server)
        return server.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def call(port: int, method: str, path: str, key: str | None = None, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Api-Key"] = key
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data


def test_a_request_with_the_key_reaches_the_function_as_a_payload_2_event(gateway):
    backend = Backend()
    port = gateway(backend)
    status, body = call(port, "POST", "/predict?x=1", KEY, {"ev_id": "e1"})
    assert (status, body) == (200, {"seen": "/predict"})
    (event,) = backend.events["predict"]
    assert event["version"] == "2.0" and event["routeKey"] == "POST /predict"
    assert event["headers"]["x-api-key"] == KEY  # header names lower-cased
    assert event["rawQueryString"] == "x=1" and event["queryStringParameters"] == {"x": "1"}
    assert json.loads(event["body"]) == {"ev_id": "e1"}
    assert event["requestContext"]["authorizer"] == {"lambda": {"client": "first"}}
    assert backend.qualifiers[-1] == "live"
    (request,) = backend.events["authorizer"]
    assert request["type"] == "REQUEST" and request["identitySource"] == [KEY]
    assert "body" not in request


def test_no_key_is_401_without_calling_the_authorizer(gateway):
    backend = Backend()
    port = gateway(backend)
    for key in (None, ""):
        assert call(port, "POST", "/predict", key, {"ev_id": "e1"}) == (
            401,
            {"message": "Unauthorized"},
        )
    assert backend.events == {"authorizer": [], "predict": []}


def test_a_wrong_key_is_403_and_never_reaches_the_function(gateway):
    backend = Backend()
    port = gateway(backend)
    assert call(port, "GET", "/health", "wrong") == (403, {"message": "Forbidden"})
    assert len(backend.events["authorizer"]) == 1 and backend.events["predict"] == []


def test_an_unknown_route_is_404_not_found_without_any_call(gateway):
    backend = Backend()
    port = gateway(backend)
    for method, path in (("GET", "/nope"), ("DELETE", "/predict"), ("GET", "/predict")):
        assert call(port, method, path, KEY) == (404, {"message": "Not Found"})
    assert backend.events == {"authorizer": [], "predict": []}


def test_answers_are_cached_per_key_for_the_ttl(gateway):
    cached, uncached = Backend(ttl=300), Backend(ttl=0)
    for backend in (cached, uncached):
        port = gateway(backend)
        for _ in range(3):
            assert call(port, "GET", "/health", KEY)[0] == 200
            assert call(port, "GET", "/health", "wrong")[0] == 403
    assert len(cached.events["authorizer"]) == 2  # one per key
    assert len(uncached.events["authorizer"]) == 6
    assert len(cached.events["predict"]) == len(uncached.events["predict"]) == 3
