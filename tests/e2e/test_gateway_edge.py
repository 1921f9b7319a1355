"""The local gateway under hostile clients, in front of a stand-in function: a burst of
simultaneous connections, a body shorter than its Content-Length, HEAD on the API's routes,
a compressed body. Each answered as API Gateway would; no truncated body reaches a function."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from avsev_tools.local.assembly import Route

KEY = "k"


class Backend:
    """Routes like the API's, a function that takes `delay` seconds; invocations kept."""

    def __init__(self, delay: float = 0.0) -> None:
        def route(path: str, method: str) -> Route:
            return Route(
                logical_id=f"{method}{path}",
                path=path,
                method=method,
                function_key="predict",
                qualifier="live",
                api_key_required=True,
                authorization="NONE",
                integration="AWS_PROXY",
                function="Predict",
            )

        self.routes = {
            (p, m): route(p, m)
            for p, m in [("/predict", "POST"), ("/predict/batch", "POST"), ("/health", "GET")]
        }
        self.api_key = KEY
        self.delay = delay
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.base_url = ""
        self.cards: list[dict] = []
        self.traffic = SimpleNamespace()

    def invoke(self, function, event, qualifier=None):
        time.sleep(self.delay)
        with self.lock:
            self.events.append(event)
        return {"statusCode": 200, "body": "{}", "headers": {"Content-Type": "application/json"}}

    def flush(self) -> int:
        return 0


@pytest.fixture()
def gateway():
    from avsev_tools.local.gateway import serve

    servers = []

    def start(backend: Backend, timeout: float | None = None):
        server = serve(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
        if timeout is not None:
            server.RequestHandlerClass.timeout = timeout
        servers.append(server)
        return server.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_a_burst_of_simultaneous_connections_is_all_answered(gateway):
    backend = Backend(delay=0.01)  # one at a time behind the gateway, as the local stack invokes
    port = gateway(backend)
    body = json.dumps({"reports": [{"ev_id": f"A{i}"} for i in range(200)]})
    statuses: Counter[object] = Counter()
    start = threading.Barrier(300)

    def client() -> None:
        start.wait()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/predict/batch", body, {"X-Api-Key": KEY})
            statuses[conn.getresponse().status] += 1
            conn.close()
        except OSError as e:
            statuses[type(e).__name__] += 1

    threads = [threading.Thread(target=client) for _ in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {200: 300}
    assert len(backend.events) == 300


def raw_request(port: int, data: bytes, *, half_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("half_close", [True, False], ids=["client closes", "client stalls"])
def test_a_body_shorter_than_its_content_length_is_400_and_not_invoked(gateway, half_close):
    backend = Backend()
    port = gateway(backend, timeout=1.0)
    body = json.dumps({"ev_id": "A1", "make": "Cessna"}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) + 50}\r\n\r\n"
    ).encode()
    out = raw_request(port, head + body, half_close=half_close)
    status_line, _, rest = out.partition(b"\r\n")
    assert status_line.split()[1] == b"400", out
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["details"][0]["field"] == "Content-Length"
    assert backend.events == []


def call(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body, {"X-Api-Key": KEY, **(headers or {})})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


@pytest.mark.parametrize(
    "method, path, allow",
    [("HEAD", "/health", "GET"), ("HEAD", "/predict", "POST"), ("GET", "/predict", "POST")],
)
def test_a_method_the_api_does_not_define_is_answered_as_api_gateway_does(
    gateway, method, path, allow
):
    """403 MISSING_AUTHENTICATION_TOKEN, as API Gateway answers a method or path it lacks
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html);
    never invoked."""
    backend = Backend()
    port = gateway(backend)
    status, headers, data = call(port, method, path)
    assert (status, headers.get("Allow")) == (403, allow)
    if method != "HEAD":
        error = json.loads(data)["error"]
        assert (error["status"], error["code"]) == (403, "MISSING_AUTHENTICATION_TOKEN")
    else:
        assert data == b""
    assert backend.events == []


def test_a_compressed_body_is_passed_on_as_sent(gateway):
    """Our API sets no minimumCompressionSize: API Gateway does not decompress (the function
    answers 415)."""
    backend = Backend()
    port = gateway(backend)
    sent = gzip.compress(json.dumps({"ev_id": "A1"}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert call(port, "POST", "/predict", sent, headers)[0] == 200
    (event,) = backend.events
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == sent
    assert event["headers"]["Content-Encoding"] == "gzip"
