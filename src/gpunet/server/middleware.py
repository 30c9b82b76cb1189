"""A plain ASGI middleware for body limits and metrics.

Written against ASGI directly rather than Starlette's BaseHTTPMiddleware, which costs
a task and a memory stream per request: on the flood path that overhead alone was
larger than the work of rejecting the request.

Every body is limited to MAX_BODY_BYTES, except on routes given their own limit
(`path_limits`: the proof openings, megabytes at the real profiles' sizes). The limit
is enforced as bytes arrive, declared length or not, so a body past it is refused
before it is buffered whole.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
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
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.path_limits = tuple((path_limits or {}).items())

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
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _too_large(send, limit)
                return
        started = time.perf_counter()
        status = 500
        seen = 0

        async def limited_receive() -> Message:
            # Chunked bodies carry no length header: count what actually arrives.
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
            return message

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, record_status)
        except BodyTooLarge:
            await _too_large(send, limit)
            status = 413
        route = scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        kind = scope.get("state", {}).get("principal_kind", "anonymous")
        method = scope["method"]
        self.metrics.requests.labels(endpoint, method, str(status), kind).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        if method not in ("GET", "HEAD") and status < 300:
            self.metrics.writes.labels(endpoint, kind).inc()


class BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": f"request bodies are limited to {limit} bytes",
            }
        }
    ).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
