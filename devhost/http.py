"""HTTP triggers on 127.0.0.1: routing under the route prefix, function keys, real azure.functions objects.

Errors the host itself produces are JSON `{"error": ...}`: 401 without a valid key, 404 for no route,
405 for a method the route does not take, 413 over the body limit, 500 when a function raises (the
traceback goes to the log, never to the client).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.bindings import HttpFunction
from devhost.keys import FunctionKeys

log = logging.getLogger("devhost")
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's own request size limit
_KEY_HEADER = "x-functions-key"
_PRINCIPAL = "x-ms-client-principal"
LISTEN_BACKLOG = 128  # http.server's default of 5 resets connections under modest concurrency
READ_TIMEOUT_S = 30.0  # an idle or slow client gives up its thread after this long


def error(status: int, message: str, **extra: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": message, **extra}), status_code=status,
                             mimetype="application/json")


class HttpGateway:
    """Routes a request to an HTTP function, enforcing its auth level; usable with or without a socket."""

    def __init__(self, functions: list[HttpFunction], keys: FunctionKeys | None, *, route_prefix: str = "api",
                 base_url: str = "http://127.0.0.1") -> None:
        # Most specific template first, as ASP.NET routing orders them.
        self.functions = sorted(functions, key=lambda f: (f.route.precedence, f.route.template))
        self.keys = keys
        self.prefix = [p for p in route_prefix.strip("/").split("/") if p]
        self.base_url = base_url

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"",
               params: Mapping[str, str] | None = None) -> func.HttpResponse:
        # App Service authentication sets these after validating a token and drops any a client sent; devhost
        # has no authentication in front of it, so it drops them all: a client cannot choose who it is.
        headers = {k: v for k, v in headers.items() if not k.lower().startswith(_PRINCIPAL)}
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        query.update(params or {})
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if [p.lower() for p in parts[:len(self.prefix)]] != [p.lower() for p in self.prefix]:
            return error(404, f"no route matches {method} {url.path}")
        parts = parts[len(self.prefix):]
        method = method.upper()
        allowed: set[str] = set()
        for fn in self.functions:
            route_params = fn.route.match(parts)
            if route_params is None:
                continue
            if fn.methods is not None and method not in fn.methods:
                allowed |= fn.methods
                continue
            if not self._authorised(fn, headers, query):
                return error(401, "a valid function key is required: send it in the x-functions-key header "
                                  "or the code query parameter", function=fn.name)
            request = func.HttpRequest(method, self.base_url + target, headers=dict(headers), params=query,
                                       route_params=route_params, body=body)
            return _invoke(fn, request)
        if allowed:
            response = error(405, f"{method} is not allowed on {url.path}", allowed=sorted(allowed))
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
        return error(404, f"no route matches {method} {url.path}")

    def _authorised(self, fn: HttpFunction, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if fn.auth_level == "anonymous":
            return True
        if self.keys is None:
            return False
        lowered = {k.lower(): v for k, v in headers.items()}
        presented = lowered.get(_KEY_HEADER) or query.get("code")
        return self.keys.allows(presented, admin=fn.auth_level == "admin")


def _invoke(fn: HttpFunction, request: func.HttpRequest) -> func.HttpResponse:
    started = time.perf_counter()
    try:
        result = fn(request)
        response = _as_response(result)
        outcome = f"status={response.status_code}"
    except Exception:  # a failing function is a 500 for this request, not a dead server
        log.exception("function %s raised", fn.name)
        response = error(500, "the function failed; see the devhost log", function=fn.name)
        outcome = "status=500 raised"
    log.info("invoked %s trigger=http %s %s %s duration_ms=%.1f", fn.name, request.method,
             urlsplit(request.url).path, outcome, (time.perf_counter() - started) * 1000)
    return response


def _as_response(result: object) -> func.HttpResponse:
    if isinstance(result, func.HttpResponse):
        return result
    if isinstance(result, (str, bytes)):
        return func.HttpResponse(result)
    raise TypeError(f"an HTTP function must return func.HttpResponse, str or bytes, got {type(result).__name__}")


class HttpServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a background thread, feeding an HttpGateway."""

    def __init__(self, gateway: HttpGateway, port: int) -> None:
        self.gateway = gateway
        self._server = _Server(("127.0.0.1", port), _handler_for(gateway))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        gateway.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="devhost-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG


def _handler_for(gateway: HttpGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "devhost"
        timeout = READ_TIMEOUT_S  # socket timeout for every read: idle keep-alive connections are closed

        def _serve(self) -> None:
            body, problem = self._read_body()
            response = problem or gateway.handle(self.command, self.path, dict(self.headers.items()), body)
            self._write(response)

        def _read_body(self) -> tuple[bytes, func.HttpResponse | None]:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True
                return b"", error(411, "send a Content-Length; chunked request bodies are not supported")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                return b"", error(400, "Content-Length is not a number")
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                return b"", error(413, f"request body over {MAX_BODY_BYTES} bytes")
            return (self.rfile.read(length) if length > 0 else b""), None

        def _write(self, response: func.HttpResponse) -> None:
            payload = response.get_body() if self.command != "HEAD" else b""
            self.send_response(response.status_code)
            headers = {k.lower(): (k, v) for k, v in response.headers.items()}
            if "content-type" not in headers:
                self.send_header("Content-Type", f"{response.mimetype}; charset={response.charset}")
            for name, value in headers.values():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            log.debug("http %s", format % args)

    return Handler
