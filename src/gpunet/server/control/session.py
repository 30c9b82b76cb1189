"""One host's control session on this replica: an asyncio Protocol on a raw transport.

A protocol object rather than a stream pair and a task per connection: a coordinator
holds tens of thousands of idle sessions, and each stream reader, writer, task and
suspended coroutine frame is memory per host (see BENCHMARKS.md). Bytes arrive in
`data_received`; the pure decoder of core.control turns them into messages.
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
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from gpunet.core import control
from gpunet.core.control import Auth, FrameDecoder, Hello, ProtocolError, Welcome
from gpunet.core.errors import GpunetError
from gpunet.server.control import relay
from gpunet.server.state import AppState

if TYPE_CHECKING:
    from gpunet.server.control.server import ControlServer

log = logging.getLogger("gpunet.server.control")
CommandHandler = Callable[["ServerSession", dict[str, Any]], Awaitable[Any]]
# One step of a proof on the services: (state, device row id) -> (reply type, fields).
Relay = Callable[[AppState, int], tuple[str, dict[str, Any]]]


class CommandFailed(RuntimeError):
    """The peer answered a command with an error."""


class ServerSession(asyncio.Protocol):
    # Slots: a coordinator holds tens of thousands of these; every byte counts per host.
    __slots__ = (
        "_authing",
        "_decoder",
        "_nonce",
        "_openings",
        "_pending",
        "_tasks",
        "_timer",
        "address",
        "agent_version",
        "close_reason",
        "closed",
        "counted",
        "devices",
        "id",
        "last_rx",
        "server",
        "transport",
        "verified",
    )

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.address: str | None = None
        self.id = secrets.token_hex(8)
        self.devices: dict[str, int] = {}  # public id -> row id, only after auth
        # Devices whose heartbeats count (services.liveness: verified, no challenge
        # overdue, no proof owed); kept current from the handshake, verdicts relayed
        # here and the server's periodic refresh.
        self.verified: set[int] = set()
        self.counted: list[int] = []
        self.agent_version = ""
        self.closed = False
        self.close_reason: str | None = None
        self.last_rx = time.monotonic()
        self._decoder = FrameDecoder(server.settings.max_frame)
        self._nonce = b""
        self._authing = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None  # made on first use
        self._pending: dict[str, asyncio.Future[Any]] | None = None
        self._openings: control.OpeningsAssembler | None = None  # made on first use

    # -- transport events -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (under uvicorn) are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) else None
        srv = self.server
        srv.sessions.add(self)
        srv.stats.connections += 1
        # SECURITY: a fresh random nonce per session; device signatures must cover it,
        # so an auth frame captured from any other session is worthless here.
        self._nonce = secrets.token_bytes(control.NONCE_BYTES)
        self.send(Hello(self._nonce, srv.server_id, time.time(), srv.protocols).wire())
        self._timer = asyncio.get_running_loop().call_later(
            srv.settings.auth_timeout_s, self._auth_timeout
        )

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_rx = time.monotonic()
        try:
            for message in self._decoder.feed(data):
                self._dispatch(message)
                if self.closed:
                    return
        except ProtocolError as exc:
            self._violation(exc.reason)
        except Exception:
            # Whatever a peer sent, one session's failure must not reach the server.
            log.exception("control session %s from %s failed", self.id, self.address)
            self.close("internal error")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.server.detach(self)
        self.server.sessions.discard(self)
        for task in self._tasks or ():
            task.cancel()
        for fut in (self._pending or {}).values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("session closed"))

    # -- output ---------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        transport = self.transport
        if self.closed or transport is None:
            return
        transport.write(control.encode(message, max_frame=self.server.settings.max_frame))
        if transport.get_write_buffer_size() > self.server.settings.max_write_buffer:
            self.close("too slow: the agent does not read what it is sent")

    def close(self, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is None:
            return
        if reason is not None:
            self.close_reason = reason
            with contextlib.suppress(Exception):
                self.transport.write(control.encode(control.bye(reason)))
        self.transport.close()  # flushes what is buffered, then connection_lost

    def _violation(self, reason: str) -> None:
        self.server.stats.protocol_errors += 1
        log.info("control session %s from %s closed: %s", self.id, self.address, reason)
        self.close(reason)

    def _auth_timeout(self) -> None:
        if not self.devices:
            self.close("authentication timed out")

    # -- handshake ------------------------------------------------------------------------
    def _begin_auth(self, msg: dict[str, Any]) -> None:
        if self._authing:
            raise ProtocolError("wait for the welcome before sending anything else")
        auth = Auth.parse(msg)
        self._authing = True
        self._spawn(self._authenticate(auth))

    async def _authenticate(self, auth: Auth) -> None:
        srv = self.server
        protocol = control.negotiate(srv.protocols, auth.protocols)
        if protocol is None:
            self.close("no common protocol version: upgrade the agent")
            return
        now = srv.state.clock.now()
        upgrade = control.decide_upgrade(auth.agent_version, srv.settings.upgrade_policy(), now)
        if upgrade.state == "refused":
            assert upgrade.required_by is not None
            self.close(
                f"agent {auth.agent_version} was due for an upgrade by "
                f"{upgrade.required_by.date()}: install {upgrade.latest}"
            )
            return
        self.agent_version = auth.agent_version
        try:
            result = await srv.auth.authenticate(self._nonce, auth.devices, self.address)
        except Exception:
            log.exception("authenticating a session failed")
            self.close("the coordinator is unavailable; retry later")
            return
        if self.closed:
            return
        srv.stats.handshakes += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.devices = result.accepted
        self.set_verified(result.verified)
        self.send(
            Welcome(
                protocol,
                self.id,
                tuple(result.accepted),
                tuple(result.refused),
                srv.settings.heartbeat_s,
                upgrade,
            ).wire()
        )
        if not result.accepted:
            self.close("no device of this host authenticated")
            return
        srv.attach(self)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if not self.devices:  # not authenticated yet: only auth (then bye) is allowed
            if kind == "bye":
                self.close(None)
            elif kind == "auth":
                self._begin_auth(msg)
            else:
                raise ProtocolError(
                    "expected auth"
                    if not self._authing
                    else "wait for the welcome before sending anything else"
                )
            return
        if kind == "hb":
            self.server.heartbeat(self, control.heartbeat_devices(msg))
        elif kind == "ping":
            ts = msg.get("ts")
            self.send(
                {
                    "t": "pong",
                    "id": _small(msg.get("id")),
                    "ts": ts if isinstance(ts, int | float) else None,
                }
            )
        elif kind == "commitment":
            public_id, body = control.body_of(msg)
            pk = self._device_pk(public_id)
            self._spawn(self._proof(public_id, pk, partial(relay.commit, body=body)))
        elif kind == "openings":
            self._openings_part(control.OpeningsPart.parse(msg))
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

    def set_counting(self, pk: int, counts: bool) -> None:
        if (pk in self.verified) != counts:
            self.set_verified(self.verified ^ {pk})

    def set_status(self, pk: int, status: str) -> None:
        """After a verdict relayed here: a pass pays any proof owed, so a verified
        device counts again; any other status does not."""
        self.set_counting(pk, status == "verified")

    def drop(self, pk: int, reason: str) -> None:
        """Stop speaking for device `pk` (ControlServer.drop): the agent is told why, and
        a session with no device left ends."""
        public_id = next((p for p, k in self.devices.items() if k == pk), None)
        if public_id is None:
            return
        del self.devices[public_id]
        self.set_verified(self.verified - {pk})
        log.info("control session %s: device %s dropped: %s", self.id, public_id, reason)
        if not self.devices:
            self.close(reason)
        else:
            self.send(control.error("device_refused", reason, ref=public_id))

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

    def _openings_part(self, part: control.OpeningsPart) -> None:
        """Keep one part of a device's openings; relay them once the last is in. The
        limit is the largest opening the catalog can ask for, checked before a part is
        kept, so a session never holds more than one such opening per device."""
        pk = self._device_pk(part.device)
        if self._openings is None:
            self._openings = control.OpeningsAssembler(self.server.state.openings_limit)
        body = self._openings.add(part)
        if body is not None:
            call = partial(_relay_openings, challenge_id=part.challenge, body=body)
            self._spawn(self._proof(part.device, pk, call))

    async def _proof(self, public_id: str, pk: int, call: Relay) -> None:
        """Run one step of a device's proof on the services, in a worker thread, and send
        its answer: rows to open, a verdict, or an error frame naming the device."""
        try:
            kind, out = await asyncio.to_thread(call, self.server.state, pk)
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


def _relay_openings(
    state: AppState, device_pk: int, *, challenge_id: str, body: bytes
) -> tuple[str, dict[str, Any]]:
    return "verdict", relay.open_rows(state, device_pk, challenge_id, body)


def _small(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 64):
        return value
    return None
