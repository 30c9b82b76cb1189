"""Handshakes judged in batches: sessions that arrive together share one database
transaction and one worker-thread hop (see auth.authenticate_many)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gpunet.core.clock import Clock
from gpunet.server.control.auth import AuthRequest, AuthResult, authenticate_many
from gpunet.server.db.engine import Database

MAX_BATCH = 256
# Wait this long for more handshakes before judging a short batch: one transaction per
# handshake costs ~1.3 ms of CPU on SQLite, one per 64 about 165 us each (BENCHMARKS.md).
COLLECT_S = 0.005
WORKERS = 2  # batches in flight: one verifying while the next is read


class AuthBatcher:
    def __init__(self, database: Database, clock: Clock, server_id: str) -> None:
        self._database = database
        self._clock = clock
        self._server_id = server_id
        self._queue: list[tuple[AuthRequest, asyncio.Future[AuthResult]]] = []
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self.batches = 0

    async def authenticate(
        self, nonce: bytes, entries: Sequence[tuple[str, bytes]], address: str | None
    ) -> AuthResult:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._work()) for _ in range(WORKERS)]
        fut: asyncio.Future[AuthResult] = asyncio.get_running_loop().create_future()
        self._queue.append((AuthRequest(nonce, entries, address), fut))
        self._wake.set()
        return await fut

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < MAX_BATCH:
                await asyncio.sleep(COLLECT_S)
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            requests = [r for r, _ in batch]
            self.batches += 1
            try:
                results = await asyncio.to_thread(
                    authenticate_many,
                    self._database,
                    server_id=self._server_id,
                    requests=requests,
                    now=self._clock.now(),
                )
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []
