"""A local API Gateway: HTTP on loopback → REST proxy events → the real handlers. The routes
are the synthesized template's methods (their paths, the function and qualifier each
integrates, whether each requires the API key); the API key is enforced where a method
requires it (and on any other path). Besides: the OpenAPI document, a Swagger UI page and a
dashboard (read-only, like the docs: served without the key, on loopback).

A request body is passed on as sent, with its Content-Encoding header: API Gateway REST
decompresses request bodies only on an API with compression enabled (`minimumCompressionSize`),
which ours does not set
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gzip-compression-decompression.html);
the functions answer a body they cannot read 415. A path or a method the API does not define
(HEAD included) is answered as API Gateway answers it, never invoked: 403
MISSING_AUTHENTICATION_TOKEN, "Missing Authentication Token"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html),
with the methods the path has in `Allow` as a hint of our own.

Not emulated: SigV4 (`AuthorizationType: AWS_IAM`) is not checked, only the API key.

The HTTP API option (`-c api=http`: the template's routes are `AWS::ApiGatewayV2::Route`s) is
answered as an HTTP API answers (`Http`): payload format 2.0 events (`http_api_event`); a path
or method no route has: 404 `{"message":"Not Found"}`
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html);
a route's Lambda REQUEST authorizer run as API Gateway runs it
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html):
an identity source missing or empty is 401 `{"message":"Unauthorized"}` without calling the
authorizer ("Only when this is true does the authorizer invoke the authorizer Lambda function.
Otherwise, it returns a 401 Unauthorized response without calling the Lambda function":
https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/apis-apiid-authorizers.html);
an answer `isAuthorized: false` is 403 `{"message":"Forbidden"}`; an authorizer that fails is
500 `{"message":"Internal Server Error"}`; each answer is cached by the identity source values
for the authorizer's TTL, and its `context` reaches the function as
`requestContext.authorizer.lambda`. A function that fails is 500 `{"message":"Internal Server
Error"}`."""

from __future__ import annotations

import base64
import functools
import importlib.resources
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from avsev.serving.errors import ApiError, ErrorDetail, error_json
from avsev.serving.events import http_api_event, proxy_event
from avsev.serving.limits import MAX_BODY_BYTES, body_too_large

from avsev_tools.local import dashboard

if TYPE_CHECKING:
    from avsev_tools.local.assembly import Authorizer, Route


class Backend(dashboard.Source, Protocol):
    """What the gateway needs of the stack behind it (given to `serve`; the local stack is one)."""

    api_key: str

    @property
    def routes(self) -> dict[tuple[str, str], Route]:
        """(path, method) → the template's method (avsev_tools.local.assembly.Route)."""
        ...

    def function_modules(self) -> dict[str, ModuleType]:
        """Each function's loaded handler module, by function (their OpenAPI parts)."""
        ...

    def invoke(
        self, function: str, event: dict[str, Any], qualifier: str | None = ...
    ) -> dict[str, Any]: ...

    def flush(self) -> int: ...


SWAGGER_ASSETS = "aws_lambda_powertools.event_handler.openapi.swagger_ui"
"""Swagger UI's script and styles, as Powertools ships them (no CDN: the page works offline)."""
STATIC = {
    "/docs/swagger-ui-bundle.min.js": ("swagger-ui-bundle.min.js", "text/javascript"),
    "/docs/swagger-ui.min.css": ("swagger-ui.min.css", "text/css"),
}
SWAGGER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>avsev API</title>
<link rel="stylesheet" href="/docs/swagger-ui.min.css"></head>
<body><div id="ui"></div><script src="/docs/swagger-ui-bundle.min.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript></body></html>"""


@functools.cache
def static_asset(name: str) -> bytes:
    return importlib.resources.files(SWAGGER_ASSETS).joinpath(name).read_bytes()


DISCARD_LIMIT = 8 * MAX_BODY_BYTES
"""A too-large body up to this size is read and dropped before the 413; a larger one is not."""


def openapi_document(stack: Backend) -> dict[str, Any]:
    from avsev.serving.openapi import merge

    modules = stack.function_modules()
    doc = merge(
        [m.app.get_openapi_json_schema(title="part", version="0") for m in modules.values()],
        title="Aviation accident severity API (local)",
        version=stack.cards[0].version,
    )
    doc["servers"] = [{"url": stack.base_url}]
    doc["components"]["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    }
    doc["security"] = [{"apiKey": []}]
    return doc


class Gateway(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients of API Gateway expect
    timeout = 30.0
    """Seconds a connection may stay silent mid-request (a body that never comes) before it
    is answered 400 and closed; API Gateway's own limit on an integration is 29 s."""
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stalls)
    stack: Backend
    openapi: bytes | None = None
    openapi_lock = threading.Lock()
    authorized: dict[tuple[str, tuple[str, ...]], tuple[float, bool, dict[str, Any]]]
    """The HTTP API authorizers' cached answers: (authorizer, identity values) → (expiry on
    time.monotonic, authorized, context)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs would drown the console

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            if k.lower() not in ("content-length", "content-type"):
                self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, error: ApiError) -> None:
        self._send(error.status, error_json(error, None).encode())

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers itself (a bad request line, headers, version) takes the
        one error shape too; a request it cannot parse is the client's fault, so a 4xx."""
        status = code if 400 <= code < 500 else 400
        self.close_connection = True
        self.request_version = self.protocol_version  # a status line even when it was unparsed
        error = ApiError(status, "bad_request", f"the HTTP request is malformed: {message or code}")
        body = error_json(error, None).encode()
        try:
            self.send_response(status, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and status >= 200:
                self.wfile.write(body)
        except OSError:
            pass  # the client went away

    def _read_body(self) -> bytes:
        """The body by Content-Length or chunked, within `MAX_BODY_BYTES`; `ApiError` otherwise.
        Leaves the connection to be closed when the body was not read whole."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        try:
            values = {int(v.strip()) for v in lengths}
        except ValueError:
            values = set()
        if len(values) != 1 or min(values) < 0:
            self.close_connection = True
            raise ApiError(
                400,
                "bad_request",
                "the Content-Length header is not one non-negative integer",
                [ErrorDetail(field="Content-Length", problem="invalid", allowed="a byte count")],
            )
        length = values.pop()
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._discard(length)
            raise body_too_large(length)
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        """`length` bytes of body, or a 400 when the client sends fewer (it closed its side,
        or sent nothing more for `timeout` seconds): a truncated body never reaches a
        function. API Gateway's front end likewise answers such a request itself."""
        if not length:
            return b""
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) < length:
            self.close_connection = True
            raise ApiError(
                400,
                "bad_request",
                f"the request body is shorter than its Content-Length ({len(body):,} of {length:,} bytes)",
                [
                    ErrorDetail(
                        field="Content-Length",
                        problem=f"{length:,} bytes announced, {len(body):,} received",
                        allowed="the body's exact length in bytes",
                    )
                ],
            )
        return body

    def _discard(self, length: int) -> None:
        """Read and drop a body that is too large but not absurdly so, so that the client,
        still sending, reads the 413 rather than a reset connection."""
        if length > DISCARD_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "bad_request", "malformed chunked body") from None
            if size < 0:
                self.close_connection = True
                raise ApiError(400, "bad_request", "malformed chunked body")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                self.close_connection = True
                raise body_too_large(len(body) + size)
            body += self._read_exactly(size)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _handle(self) -> None:
        try:
            self._route()
        except ApiError as e:
            self._error(e)
        except Exception as e:  # our fault, not the client's: say so, keep serving
            self.close_connection = True
            self._error(ApiError(500, "internal_error", f"local gateway: {type(e).__name__}"))

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        method = self.command
        body = self._read_body()
        if method in ("GET", "HEAD"):
            if path == "/openapi.json":
                self._send(200, self._openapi())
                return
            if path in ("/docs", "/swagger"):
                self._send(200, SWAGGER_PAGE.encode(), content_type="text/html; charset=utf-8")
                return
            if path == "/dashboard":
                self._send(
                    200, dashboard.page(), {"Cache-Control": "no-cache"}, "text/html; charset=utf-8"
                )
                return
            if path == "/_local/dashboard.json":
                data = dashboard.to_json(dashboard.snapshot(self.stack))
                self._send(200, data, {"Cache-Control": "no-store"})
                return
            if path in STATIC:
                name, content_type = STATIC[path]
                self._send(200, static_asset(name), {"Cache-Control": "max-age=3600"}, content_type)
                return
        routes = self.stack.routes
        route = routes.get((path, method))
        if any(r.api == "http" for r in routes.values()):
            self._http_api(method, path, url.query, body, route)
            return
        needs_key = route is None or route.api_key_required
        if needs_key and self.headers.get("X-Api-Key") != self.stack.api_key:
            self._error(ApiError(403, "forbidden", "missing or invalid X-Api-Key header"))
            return
        if path == "/_local/flush" and method == "POST":
            self._send(200, json.dumps({"flushed": self.stack.flush()}).encode())
            return
        if route is None or route.function_key is None:
            # HEAD too: no method of the API defines it, so no function sees it
            allow = sorted(m for p, m in routes if p == path)
            error = ApiError(
                403,
                "MISSING_AUTHENTICATION_TOKEN",
                "Missing Authentication Token"
                + (f" (no {method} on {path}; it has {', '.join(allow)})" if allow else ""),
            )
            self._send(
                403,
                error_json(error, None).encode(),
                {"Allow": ", ".join(allow)} if allow else {},
            )
            return
        try:
            raw: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body  # sent base64-encoded, as API Gateway does with binary bodies
        event = proxy_event(
            method, path, raw=raw if body else None, query=dict(parse_qsl(url.query)) or None
        )
        # The headers as sent (API Gateway adds no Content-Type of its own)
        names = {k.lower(): k for k in self.headers}
        event["headers"] = {k: self.headers.get(k, "") for k in names.values()}
        event["multiValueHeaders"] = {k: self.headers.get_all(k, []) for k in names.values()}
        try:
            response = self.stack.invoke(route.function_key, event, route.qualifier)
        except Exception as e:  # a crashed function: API Gateway answers 502
            self._error(ApiError(502, "bad_gateway", f"the function failed: {type(e).__name__}"))
            return
        headers = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v}
        headers.update(response.get("headers") or {})
        out = response.get("body") or ""
        data = base64.b64decode(out) if response.get("isBase64Encoded") else out.encode()
        self._send(
            int(response["statusCode"]),
            data,
            headers,
            headers.get("Content-Type", "application/json"),
        )

    # ---- the HTTP API option ---------------------------------------------------------------
    def _message(self, status: int, message: str) -> None:
        """API Gateway's own answers on an HTTP API: `{"message": ...}`."""
        self._send(status, json.dumps({"message": message}).encode())

    def _http_api(
        self, method: str, path: str, query: str, body: bytes, route: Route | None
    ) -> None:
        """A request to an HTTP API (see the module docstring)."""
        if path == "/_local/flush" and method == "POST":  # the local stack's own, behind the key
            if self.headers.get("X-Api-Key") != self.stack.api_key:
                self._message(403, "Forbidden")
                return
            self._send(200, json.dumps({"flushed": self.stack.flush()}).encode())
            return
        if route is None or route.function_key is None:
            self._message(404, "Not Found")
            return
        try:
            raw: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body
        names = {k.lower(): k for k in self.headers}
        headers = {low: ",".join(self.headers.get_all(k, [])) for low, k in names.items()}
        event = http_api_event(
            method,
            path,
            raw=raw if body else None,
            query=dict(parse_qsl(query)) or None,
            route_key=f"{route.method} {route.path}",
        )
        event["headers"] = headers  # as sent, lower-cased, repeated values joined by commas
        event["rawQueryString"] = query
        context: dict[str, Any] | None = None
        if route.authorizer is not None:
            decision = self._authorize(route, route.authorizer, event)
            if decision is None:
                return
            context = decision
        if context is not None:
            event["requestContext"]["authorizer"] = {"lambda": context}
        try:
            response = self.stack.invoke(route.function_key, event, route.qualifier)
        except Exception:
            self._message(500, "Internal Server Error")
            return
        if "statusCode" not in response:  # payload 2.0: a bare JSON answer is a 200 of it
            self._send(200, json.dumps(response).encode())
            return
        out_headers = dict(response.get("headers") or {})
        out = response.get("body") or ""
        data = base64.b64decode(out) if response.get("isBase64Encoded") else out.encode()
        self._send(
            int(response["statusCode"]),
            data,
            out_headers,
            str(
                out_headers.get("Content-Type")
                or out_headers.get("content-type")
                or "application/json"
            ),
        )

    def _authorize(
        self, route: Route, authorizer: Authorizer, event: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The authorizer's context when it lets the request through; None once the request
        is answered 401, 403 or 500."""
        values = tuple(identity_value(source, event) for source in authorizer.identity_source)
        if not all(values):
            self._message(401, "Unauthorized")
            return None
        key = (authorizer.logical_id, values)
        cached = self.authorized.get(key)
        if cached is not None and cached[0] > time.monotonic():
            allowed, context = cached[1], cached[2]
        else:
            request = {k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}
            request.update(
                type="REQUEST",
                routeArn=f"arn:aws:execute-api:local:local:local/$default/{route.method}{route.path}",
                identitySource=list(values),
            )
            try:
                answer = self.stack.invoke(authorizer.function_key, request, None)
            except Exception:
                self._message(500, "Internal Server Error")
                return None
            if not authorizer.simple_responses or not isinstance(answer.get("isAuthorized"), bool):
                self._message(500, "Internal Server Error")
                return None
            allowed, context = answer["isAuthorized"], dict(answer.get("context") or {})
            if authorizer.ttl_seconds > 0:
                self.authorized[key] = (
                    time.monotonic() + authorizer.ttl_seconds,
                    allowed,
                    context,
                )
        if not allowed:
            self._message(403, "Forbidden")
            return None
        return context

    def _openapi(self) -> bytes:
        cls = type(self)
        with cls.openapi_lock:
            if cls.openapi is None:
                cls.openapi = json.dumps(openapi_document(self.stack)).encode()
            return cls.openapi

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the router (http.server would answer 501 for any without a
        # do_ method): API Gateway answers an unknown method with a 4xx too.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


def identity_value(source: str, event: dict[str, Any]) -> str:
    """One identity source's value in a payload 2.0 event (`$request.header.X`,
    `$request.querystring.x`); empty when absent."""
    kind, _, name = source.removeprefix("$request.").partition(".")
    if kind == "header":
        return str((event.get("headers") or {}).get(name.lower(), ""))
    if kind == "querystring":
        return str((event.get("queryStringParameters") or {}).get(name, ""))
    raise ValueError(f"identity source {source}: not emulated")


class GatewayServer(ThreadingHTTPServer):
    """One thread a connection, and a listen backlog deep enough for a burst of clients:
    socketserver's default of 5 resets connections beyond it under load (the kernel caps
    the value at net.core.somaxconn)."""

    request_queue_size = 1024
    daemon_threads = True


def serve(stack: Backend, host: str, port: int) -> ThreadingHTTPServer:
    handler = type(
        "StackGateway",
        (Gateway,),
        {"stack": stack, "openapi": None, "openapi_lock": threading.Lock(), "authorized": {}},
    )
    server = GatewayServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="avsev-gateway", daemon=True).start()
    return server
