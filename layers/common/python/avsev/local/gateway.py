"""A local API Gateway: HTTP on loopback → REST proxy events → the real handlers, with the
API key enforced, the OpenAPI document and a Swagger UI page."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from avsev.serving.errors import ApiError, error_json
from avsev.serving.events import proxy_event
from avsev.serving.routes import ROUTES

if TYPE_CHECKING:
    from avsev.local.stack import LocalStack

SWAGGER_PAGE = """<!doctype html><html><head><title>avsev API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript></body></html>"""

ROUTE_TABLE = {(path, method): function for path, method, function in ROUTES}


def openapi_document(stack: LocalStack) -> dict[str, Any]:
    from avsev.serving.openapi import merge

    modules = {key: h.module for (key, _), h in stack.handlers.items()}
    doc = merge(
        [m.app.get_openapi_json_schema(title="part", version="0") for m in modules.values()],
        title="Aviation accident severity API (local)",
        version=stack.cards[0]["version"],
    )
    doc["servers"] = [{"url": stack.base_url}]
    doc["components"]["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    }
    doc["security"] = [{"apiKey": []}]
    return doc


class Gateway(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients of API Gateway expect
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stalls)
    stack: LocalStack
    openapi: bytes | None = None
    openapi_lock = threading.Lock()

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
        self.wfile.write(body)

    def _error(self, error: ApiError) -> None:
        self._send(error.status, error_json(error, None).encode())

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        method = self.command
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/openapi.json" and method == "GET":
            self._send(200, self._openapi())
            return
        if path in ("/docs", "/swagger") and method == "GET":
            self._send(200, SWAGGER_PAGE.encode(), content_type="text/html")
            return
        if self.headers.get("X-Api-Key") != self.stack.api_key:
            self._error(ApiError(403, "forbidden", "missing or invalid X-Api-Key header"))
            return
        if path == "/_local/flush" and method == "POST":
            self._send(200, json.dumps({"flushed": self.stack.flush()}).encode())
            return
        function = ROUTE_TABLE.get((path, method))
        if function is None:
            known_path = any(p == path for p, _ in ROUTE_TABLE)
            self._error(
                ApiError(
                    405 if known_path else 404,
                    "method_not_allowed" if known_path else "not_found",
                    f"no route {method} {path}",
                )
            )
            return
        try:
            raw: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body  # sent base64-encoded, as API Gateway does with binary bodies
        event = proxy_event(
            method,
            path,
            raw=raw if body else None,
            headers=dict(self.headers.items()),
            query=dict(parse_qsl(url.query)) or None,
        )
        try:
            response = self.stack.invoke(function, event)
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

    def _openapi(self) -> bytes:
        cls = type(self)
        with cls.openapi_lock:
            if cls.openapi is None:
                cls.openapi = json.dumps(openapi_document(self.stack)).encode()
            return cls.openapi

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


def serve(stack: LocalStack, host: str, port: int) -> ThreadingHTTPServer:
    handler = type(
        "StackGateway",
        (Gateway,),
        {"stack": stack, "openapi": None, "openapi_lock": threading.Lock()},
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="avsev-gateway", daemon=True).start()
    return server
