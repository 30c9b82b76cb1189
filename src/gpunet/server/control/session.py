"""One host's control session on this replica: handshake, then a read loop.

Heartbeats are handled inline on the event loop (no thread hop, no database write:
the uptime recorder is in memory). Anything touching the database (auth, proofs)
runs in a worker thread so that one slow query never delays another host's frames.
A protocol violation closes this session with a reason; it never reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gpunet.core import control
from gpunet.core.control import Auth, FrameDecoder, Hello, ProtocolError, Welcome
from gpunet.core.errors import GpunetError
from gpunet.server.control import relay

if TYPE_CHECKING:
    from gpunet.server.control.server import ControlServer

log = logging.getLogger("gpunet.server.control")
READ_CHUNK = 65536
CommandHandler = Callable[["ServerSession", dict[str, Any]], Awaitable[Any]]


class CommandFailed(RuntimeError):
    """The peer answered a command with an error."""


class ServerSession:
    # Slots: a coordinator holds tens of thousands of these; every byte counts per host.
    __slots__ = (
        "__weakref__", "_backlog", "_decoder", "_pending", "_tasks", "address",
        "agent_version", "close_reason", "closed", "counted", "devices", "id", "last_rx",
        "reader", "server", "verified", "writer",
    )

    def __init__(
        self, server: ControlServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.address: str | None = peer[0] if isinstance(peer, tuple) else None
        self.id = secrets.token_hex(8)
        self.devices: dict[str, int] = {}  # public id -> row id, only after auth
        # Uptime is recorded only for verified devices (services.uptime); kept current
        # from verdicts relayed here and the server's periodic status refresh.
        self.verified: set[int] = set()
        self.counted: list[int] = []
        self.agent_version = ""
        self.closed = False
        self.close_reason: str | None = None
        self.last_rx = time.monotonic()
        self._decoder = FrameDecoder(server.settings.max_frame)
        self._backlog: deque[dict[str, Any]] = deque()
        self._tasks: set[asyncio.Task[Any]] | None = None  # made on first use
        self._pending: dict[str, asyncio.Future[Any]] | None = None

    # -- output ---------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        self.writer.write(control.encode(message, max_frame=self.server.settings.max_frame))
        if self.writer.transport.get_write_buffer_size() > self.server.settings.max_write_buffer:
            self.close("too slow: the agent does not read what it is sent")

    def close(self, reason: str | None) -> None:
        if self.closed:
            return
        if reason is not None:
            with contextlib.suppress(Exception):
                self.writer.write(control.encode(control.bye(reason)))
            self.close_reason = reason
        self.closed = True
        self.writer.close()

    # -- input ----------------------------------------------------------------------------
    async def _next(self) -> dict[str, Any]:
        while not self._backlog:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("peer closed")
            self._backlog.extend(self._decoder.feed(data))
        return self._backlog.popleft()

    async def run(self) -> None:
        try:
            if await self._handshake():
                await self._serve()
        except ProtocolError as exc:
            self.server.stats.protocol_errors += 1
            log.info("control session %s from %s closed: %s", self.id, self.address, exc.reason)
            self.close(exc.reason)
        except TimeoutError:
            self.close("authentication timed out")
        except (ConnectionError, OSError):
            pass
        except Exception:
            # Whatever a peer sent, one session's failure must not reach the server.
            log.exception("control session %s from %s failed", self.id, self.address)
            self.close("internal error")
        finally:
            self.server.detach(self)
            self.close(None)
            for task in self._tasks or ():
                task.cancel()
            for fut in (self._pending or {}).values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("session closed"))

    async def _handshake(self) -> bool:
        srv = self.server
        nonce = secrets.token_bytes(control.NONCE_BYTES)
        self.send(Hello(nonce, srv.server_id, time.time(), srv.protocols).wire())
        auth = Auth.parse(await asyncio.wait_for(self._next(), srv.settings.auth_timeout_s))
        protocol = control.negotiate(srv.protocols, auth.protocols)
        if protocol is None:
            self.close("no common protocol version: upgrade the agent")
            return False
        now = srv.state.clock.now()
        upgrade = control.decide_upgrade(auth.agent_version, srv.settings.upgrade_policy(), now)
        if upgrade.state == "refused":
            assert upgrade.required_by is not None
            self.close(
                f"agent {auth.agent_version} was due for an upgrade by "
                f"{upgrade.required_by.date()}: install {upgrade.latest}"
            )
            return False
        self.agent_version = auth.agent_version
        result = await srv.auth.authenticate(nonce, auth.devices, self.address)
        srv.stats.handshakes += 1
        self.devices = result.accepted
        self.set_verified(result.verified)
        self.send(
            Welcome(
                protocol, self.id, tuple(result.accepted), tuple(result.refused),
                srv.settings.heartbeat_s, upgrade,
            ).wire()
        )
        if not result.accepted:
            self.close("no device of this host authenticated")
            return False
        srv.attach(self)
        return True

    async def _serve(self) -> None:
        while self._backlog and not self.closed:
            self._dispatch(self._backlog.popleft())
        read, feed, dispatch = self.reader.read, self._decoder.feed, self._dispatch
        while not self.closed:
            data = await read(READ_CHUNK)
            if not data:
                return
            self.last_rx = time.monotonic()
            for message in feed(data):
                dispatch(message)
                if self.closed:
                    return

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == "hb":
            self.server.heartbeat(self, control.heartbeat_devices(msg))
        elif kind == "ping":
            ts = msg.get("ts")
            self.send({"t": "pong", "id": _small(msg.get("id")),
                       "ts": ts if isinstance(ts, int | float) else None})
        elif kind == "commitment":
            self._spawn(self._proof(msg, relay_commit=True))
        elif kind == "openings":
            self._spawn(self._proof(msg, relay_commit=False))
        elif kind == "command":
            self._spawn(self._command(*control.parse_command(msg)))
        elif kind == "command_result":
            fut = (self._pending or {}).pop(str(msg.get("id")), None)
            if fut is not None and not fut.done():
                if msg.get("ok") is True:
                    fut.set_result(msg.get("result"))
                else:
                    fut.set_exception(CommandFailed(str(msg.get("error"))[:500]))
        elif kind == "pong":
            pass
        elif kind == "bye":
            self.close(None)
        else:
            raise ProtocolError(f"unexpected message {kind[:32]!r}")

    def set_verified(self, verified: set[int]) -> None:
        self.verified = verified
        self.counted = [pk for pk in self.devices.values() if pk in verified]

    def set_status(self, pk: int, status: str) -> None:
        if (pk in self.verified) != (status == "verified"):
            self.set_verified(self.verified ^ {pk})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _device_pk(self, public_id: str) -> int:
        pk = self.devices.get(public_id)
        if pk is None:
            raise ProtocolError(f"device {public_id} is not authenticated in this session")
        return pk

    async def _proof(self, msg: dict[str, Any], *, relay_commit: bool) -> None:
        try:
            public_id, body = control.body_of(msg)
            pk = self._device_pk(public_id)
        except ProtocolError as exc:
            self.close(exc.reason)
            return
        state = self.server.state
        try:
            if relay_commit:
                kind, out = await asyncio.to_thread(relay.commit, state, pk, body)
            else:
                kind, out = "verdict", await asyncio.to_thread(relay.open_rows, state, pk, body)
        except GpunetError as exc:
            self.send(control.error(exc.code, exc.message, ref=public_id))
            return
        except Exception:
            log.exception("proof relay failed for %s", public_id)
            self.send(control.error("unavailable", "the coordinator failed; retry", public_id))
            return
        if kind == "verdict":
            self.set_status(pk, str(out["status"]))
        self.send({"t": kind, "device": public_id, **out})

    async def _command(self, command_id: str, name: str, args: dict[str, Any]) -> None:
        handler = self.server.commands.get(name)
        if handler is None:
            self.send(control.command_result(command_id, ok=False, error=f"unknown command {name}"))
            return
        try:
            result = await handler(self, args)
        except Exception as exc:
            self.send(control.command_result(command_id, ok=False, error=str(exc)))
            return
        self.send(control.command_result(command_id, ok=True, result=result))

    async def command(self, name: str, args: dict[str, Any], *, timeout: float) -> Any:
        """Send a command to the agent and wait for its acknowledged result."""
        command_id = secrets.token_hex(8)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._pending is None:
            self._pending = {}
        pending = self._pending
        pending[command_id] = fut
        self.send(control.command(command_id, name, args))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            pending.pop(command_id, None)


def _small(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 64):
        return value
    return None
