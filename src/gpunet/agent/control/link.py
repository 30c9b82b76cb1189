"""One open connection to the coordinator, as the duties see it: send a message,
await the reply to a request. Asyncio streams over the pure framing of core.control."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from typing import Any

from gpunet.core import control
from gpunet.core.control import FrameDecoder

READ_CHUNK = 65536


class Link:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int
    ) -> None:
        self.reader, self.writer = reader, writer
        self.max_frame = max_frame
        self.closed = False
        self._decoder = FrameDecoder(max_frame)
        self._backlog: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)
        # Requests awaiting a reply: ("dev", device id) for proofs, ("cmd", id), ("ping", id).
        self.waiting: dict[tuple[str, Any], asyncio.Future[dict[str, Any]]] = {}

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise ConnectionResetError("the control session is closed")
        self.writer.write(control.encode(message, max_frame=self.max_frame))

    async def drain(self) -> None:
        await self.writer.drain()

    async def next(self) -> dict[str, Any]:
        while not self._backlog:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("the coordinator closed the connection")
            self._backlog.extend(self._decoder.feed(data))
        return self._backlog.popleft()

    def expect(self, key: tuple[str, Any]) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        old = self.waiting.pop(key, None)
        if old is not None and not old.done():
            old.cancel()
        self.waiting[key] = fut
        return fut

    def resolve(self, key: tuple[str, Any], message: dict[str, Any]) -> bool:
        fut = self.waiting.pop(key, None)
        if fut is None or fut.done():
            return False
        fut.set_result(message)
        return True

    async def ping(self, timeout: float = 10.0) -> float:
        """Round-trip time to the coordinator, in seconds."""
        pid = next(self._ids)
        fut = self.expect(("ping", pid))
        started = time.perf_counter()
        self.send({"t": "ping", "id": pid, "ts": time.time()})
        await asyncio.wait_for(fut, timeout)
        return time.perf_counter() - started

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("the control session closed"))
        self.waiting.clear()
        with contextlib.suppress(Exception):
            self.writer.close()
