"""Body limits: one global cap, a larger one for the routes given their own, and both
enforced as bytes arrive, so a body past its limit is never buffered whole."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from gpunet.server.metrics import Metrics
from gpunet.server.middleware import MAX_BODY_BYTES, LimitsAndMetrics

OPENINGS = re.compile(r"^/api/v1/worker/challenge/[^/]+/openings$")
BIG = 4 * 1024 * 1024
PIECE = 64 * 1024


async def _drain_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, as a route would, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def call(path: str, total: int, *, declared: bool) -> tuple[int, int, bytes]:
    """(status, bytes the client handed over, response body) for a body of `total`
    bytes sent in pieces, with or without a Content-Length header."""
    middleware = LimitsAndMetrics(_drain_app, Metrics(), path_limits={OPENINGS: BIG})
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        piece = min(PIECE, total - pulled)
        pulled += piece
        return {"type": "http.request", "body": b"\0" * piece, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-length", str(total).encode())] if declared else []
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(middleware(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], pulled, body


def test_the_openings_route_takes_its_own_limit_and_no_more() -> None:
    path = "/api/v1/worker/challenge/pog_x/openings"
    assert call(path, BIG, declared=False)[:2] == (200, BIG)
    status, pulled, body = call(path, BIG + 1, declared=True)
    assert (status, pulled) == (413, 0)  # refused on its declared length, unread
    assert str(BIG) in json.loads(body)["error"]["message"]
    # Undeclared (chunked): counted as it arrives, refused at the first piece past it.
    status, pulled, _ = call(path, 3 * BIG, declared=False)
    assert status == 413 and pulled <= BIG + PIECE


def test_every_other_route_keeps_the_global_limit() -> None:
    for path in ("/api/v1/worker/heartbeat", "/api/v1/worker/challenge/pog_x/commitment"):
        assert call(path, MAX_BODY_BYTES, declared=True)[0] == 200
        assert call(path, MAX_BODY_BYTES + 1, declared=True)[:2] == (413, 0)
        status, pulled, body = call(path, BIG, declared=False)
        assert status == 413 and pulled <= MAX_BODY_BYTES + PIECE
        assert str(MAX_BODY_BYTES) in json.loads(body)["error"]["message"]
