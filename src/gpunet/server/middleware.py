"""A plain ASGI middleware for body limits and metrics.

Written against ASGI directly rather than Starlette's BaseHTTPMiddleware, which costs
a task and a memory stream per request: on the flood path that overhead alone was
larger than the work of rejecting the request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpunet.server.metrics import Metrics

MAX_BODY_BYTES = 256 * 1024


class LimitsAndMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY_BYTES):
                await _too_large(send)
                return
        started = time.perf_counter()
        status = 500
        seen = 0

        async def limited_receive() -> Message:
            # Chunked bodies carry no length header: count what actually arrives.
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
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
            await _too_large(send)
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


async def _too_large(send: Send) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": f"request bodies are limited to {MAX_BODY_BYTES} bytes",
            }
        }
    ).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
