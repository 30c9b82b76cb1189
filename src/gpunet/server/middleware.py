"""A plain ASGI middleware for body limits and metrics.

Written against ASGI directly rather than Starlette's BaseHTTPMiddleware, which costs
a task and a memory stream per request: on the flood path that overhead alone was
larger than the work of rejecting the request.

Every body is limited to MAX_BODY_BYTES, except on routes given their own limit
(`path_limits`: the proof openings, megabytes at the real profiles' sizes). The limit
is enforced as bytes arrive, declared length or not, so a body past it is refused
before it is buffered whole, with the one 413 shape either way.

Every response is counted, including the 500 of a request whose handler raised: the
middleware answers it itself (the documented error shape) before letting the exception
go on up to be logged, so an operator sees 5xx in /metrics (docs/operations.md).

Every response carries the security headers an API needs: `nosniff`, HSTS outside
development, and `Cache-Control: no-store` unless the route chose its own (the public
explorer's responses are cacheable) and always when the request carried credentials.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpunet.server.metrics import Metrics

MAX_BODY_BYTES = 256 * 1024


class LimitsAndMetrics:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        path_limits: Mapping[re.Pattern[str], int] | None = None,
        hsts: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.path_limits = tuple((path_limits or {}).items())
        self.security_headers = [NOSNIFF, *([HSTS] if hsts else [])]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.path_limits:
            if pattern.match(path):
                return limit
        return MAX_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"]) if self.path_limits else MAX_BODY_BYTES
        credentials = False
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _too_large(send, limit, self.security_headers)
                self._record(scope, 413, time.perf_counter())
                return
            # An owner's bearer token and a device's signature both travel here.
            credentials = credentials or name in (b"authorization", b"cookie")
        started = time.perf_counter()
        status = 500
        responded = False
        refused = False
        seen = 0

        async def limited_receive() -> Message:
            # Chunked bodies carry no length header: count what actually arrives. Past
            # the limit answer 413 here and tell the app the client is gone, rather than
            # raise: FastAPI turns any error while it reads a body into its own 400.
            nonlocal seen, refused, responded, status
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = True
                if not responded:
                    responded = True
                    status = 413
                    await _too_large(send, limit, self.security_headers)
                return {"type": "http.disconnect"}
            return message

        async def secured_send(message: Message) -> None:
            nonlocal status, responded
            if refused:
                return  # the 413 is out; whatever the app says about the cut body is not
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = self._headers(message.get("headers", []), credentials)
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except Exception:
            if refused:
                # The app failed reading the body we cut short: the 413 is the answer.
                self._record(scope, 413, started)
                return
            # Counted and answered here, in the documented shape, then raised on for the
            # server to log: without this a failing handler left no trace in /metrics.
            if not responded:
                responded = True
                status = 500
                await _internal_error(send, self.security_headers)
            self._record(scope, 500 if status < 500 else status, started)
            raise
        self._record(scope, status, started)

    def _headers(self, headers: Iterable[tuple[bytes, bytes]], credentials: bool) -> list[Any]:
        out = [(k, v) for k, v in headers if not (credentials and k.lower() == b"cache-control")]
        if credentials or not any(k.lower() == b"cache-control" for k, _v in out):
            # Caching is opted into per route (the explorer); a response to a request
            # with credentials (or one carrying tokens, like a sign-in) is never stored.
            out.append(NO_STORE)
        out.extend(self.security_headers)
        return out

    def _record(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        state = scope.get("state", {})
        # An inner middleware that answered before routing names itself (admission: "shed").
        endpoint = getattr(route, "path", None) or state.get("endpoint", "unmatched")
        kind = state.get("principal_kind", "anonymous")
        method = scope["method"]
        self.metrics.requests.labels(endpoint, method, str(status), kind).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        if method not in ("GET", "HEAD") and status < 300:
            self.metrics.writes.labels(endpoint, kind).inc()


NOSNIFF = (b"x-content-type-options", b"nosniff")
# Two years, subdomains included: the coordinator is served over HTTPS outside development.
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
NO_STORE = (b"cache-control", b"no-store")


async def _too_large(send: Send, limit: int, extra: list[tuple[bytes, bytes]]) -> None:
    await _json(send, 413, "too_large", f"request bodies are limited to {limit} bytes", extra)


async def _internal_error(send: Send, extra: list[tuple[bytes, bytes]]) -> None:
    await _json(send, 500, "internal", "the server failed; this has been logged", extra)


async def _json(
    send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        NO_STORE,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
