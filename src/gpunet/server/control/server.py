"""The coordinator's control server: a raw asyncio TCP listener, one session per host.

Per replica, in memory, only what a live socket needs: which device is connected to
which session here. Challenges, verdicts, statuses and uptime are in the database (or
flushed there by the uptime recorder), so a host may reconnect to any replica and
carry on; nothing here is needed by another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl as _ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from gpunet.core import clusters as cc
from gpunet.core.control import PROTOCOL_MAX, PROTOCOL_MIN
from gpunet.server.control import relay
from gpunet.server.control.batcher import AuthBatcher
from gpunet.server.control.clusters import ClusterRelay
from gpunet.server.control.session import CommandHandler, ServerSession
from gpunet.server.control.settings import ControlSettings
from gpunet.server.services import devices
from gpunet.server.state import AppState

log = logging.getLogger("gpunet.server.control")


@dataclass
class ControlStats:
    connections: int = 0
    handshakes: int = 0
    heartbeats: int = 0  # frames
    device_beats: int = 0  # devices those frames covered
    counted_beats: int = 0  # of which counting (services.liveness), so recorded for uptime
    challenges_pushed: int = 0
    protocol_errors: int = 0


class ControlServer:
    def __init__(
        self,
        state: AppState,
        settings: ControlSettings | None = None,
        *,
        commands: Mapping[str, CommandHandler] | None = None,
    ) -> None:
        self.state = state
        self.settings = settings or ControlSettings()
        self.server_id = self.settings.server_id or state.settings.public_url
        self.protocols = (PROTOCOL_MIN, PROTOCOL_MAX)
        self.clusters = ClusterRelay(self)  # cluster commands out, node reports in
        self.commands: dict[str, CommandHandler] = {
            cc.REPORT: self.clusters.report,
            **(commands or {}),
        }
        self.stats = ControlStats()
        self.sessions: set[ServerSession] = set()
        self.by_device: dict[int, ServerSession] = {}  # device row id -> its session here
        self.auth = AuthBatcher(state.database, state.clock, self.server_id)
        self._fresh: set[int] = set()
        self._server: asyncio.Server | None = None
        self._push: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        reuse_port: bool = False,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ServerSession(self),
            host,
            self.settings.port if port is None else port,
            reuse_port=reuse_port or None,
            ssl=ssl,
            backlog=4096,
        )
        self._push = asyncio.get_running_loop().create_task(self._push_loop())
        log.info("control channel listening on %s:%d", host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, reason: str = "coordinator shutting down") -> None:
        """Stop listening, say bye to every host (they reconnect elsewhere), and wait."""
        if self._server is not None:
            self._server.close()
        if self._push is not None:
            self._push.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push
        for session in list(self.sessions):
            session.close(reason)
        self.auth.stop()
        self.clusters.stop()
        deadline = time.monotonic() + 5
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- sessions and devices ----------------------------------------------------------
    def attach(self, session: ServerSession) -> None:
        """Make `session` the one that speaks for its devices on this replica."""
        for public_id, pk in session.devices.items():
            old = self.by_device.get(pk)
            if old is not None and old is not session:
                old.devices.pop(public_id, None)
                old.set_verified(old.verified - {pk})
                if not old.devices:
                    old.close("replaced by a newer session of this host")
            self.by_device[pk] = session
            self._fresh.add(pk)
        self.clusters.attached(list(session.devices.values()))

    def detach(self, session: ServerSession) -> None:
        left = []
        for pk in session.devices.values():
            if self.by_device.get(pk) is session:
                del self.by_device[pk]
                left.append(pk)
        self.clusters.detached(left)

    def heartbeat(self, session: ServerSession, names: list[str] | None) -> None:
        """Record one heartbeat frame: cheap, inline, no database."""
        stats = self.stats
        stats.heartbeats += 1
        if names is None:
            stats.device_beats += len(session.devices)
            beating: Collection[int] = session.devices.values()
            pks = session.counted
        else:
            devices, verified = session.devices, session.verified
            beating = [devices[n] for n in names if n in devices]
            stats.device_beats += len(beating)
            pks = [pk for pk in beating if pk in verified]
        recorder = getattr(self.state, "uptime", None)
        if recorder is None:
            return
        now = self.state.clock.now()
        # Every device heard, counted or not: `gpunet worker status` shows the last
        # heartbeat received (the recorder writes it at most every HEARD_EVERY).
        for pk in beating:
            recorder.heard(pk, now)
        if pks:
            for pk in pks:
                recorder.record(pk, now)
            stats.counted_beats += len(pks)

    def session_of(self, public_id: str) -> ServerSession | None:
        for session in self.sessions:
            if public_id in session.devices and not session.closed:
                return session
        return None

    async def command(
        self, device: str, name: str, args: dict[str, Any] | None = None, *, timeout: float = 30.0
    ) -> Any:
        """Send a cluster command to the host of `device` (a public id), if connected here.

        LookupError if the host is not connected to this replica; CommandFailed if the
        agent answers with an error; TimeoutError if it does not answer in time.
        """
        session = self.session_of(device)
        if session is None:
            raise LookupError(f"device {device} is not connected to this replica")
        return await session.command(name, dict(args or {}), timeout=timeout)

    # -- pushing challenges ---------------------------------------------------------------
    async def _push_loop(self) -> None:
        last_sweep = last_refresh = time.monotonic()
        since = self.state.clock.now()
        while True:
            await asyncio.sleep(self.settings.push_interval_s)
            if time.monotonic() - last_sweep > min(self.settings.heartbeat_s, 5.0):
                self._sweep_idle()
                last_sweep = time.monotonic()
            try:
                await self.push_once()
                await self.clusters.push()
                if time.monotonic() - last_refresh > self.settings.status_refresh_s:
                    since = await self.refresh_statuses(since)
                    last_refresh = time.monotonic()
            except Exception:
                log.exception("control server housekeeping failed; retrying next tick")

    async def refresh_statuses(self, since: dt.datetime) -> dt.datetime:
        """Follow changes made elsewhere (expiry, verdicts, operators, other replicas) so
        heartbeats of a device that no longer counts (not verified, a challenge overdue,
        a proof owed) stop counting, and vice versa (services.liveness decides).
        Returns the time to ask from next (with a margin for clock skew between writers).
        """
        now = self.state.clock.now()
        changes = await asyncio.to_thread(relay.status_changes, self.state, since)
        for pk, counts in changes:
            session = self.by_device.get(pk)
            if session is not None:
                session.set_counting(pk, counts)
        stopped = [pk for pk, counts in changes if not counts and pk in self.by_device]
        if stopped:
            for pk in await asyncio.to_thread(relay.retired, self.state, stopped):
                self.drop(pk, devices.RETIRED)
        return now - dt.timedelta(seconds=5)

    def drop(self, pk: int, reason: str) -> None:
        """A device retired while connected: its key authenticates nothing from now on,
        so its live session stops speaking for it (frames naming it are refused,
        commands find it not connected); a session left with no device is closed."""
        session = self.by_device.pop(pk, None)
        if session is not None:
            session.drop(pk, reason)

    async def push_once(self) -> int:
        """Push every open challenge of a device connected here; the number pushed."""
        if not self.by_device:
            return 0
        fresh, self._fresh = self._fresh, set()
        try:
            due = await asyncio.to_thread(relay.waiting, self.state, self.by_device, fresh)
        except Exception:
            self._fresh |= fresh
            raise
        results = await asyncio.gather(
            *(asyncio.to_thread(relay.deliver, self.state, pk) for pk in due)
        )
        pushed = 0
        for pk, challenge in zip(due, results, strict=True):
            session = self.by_device.get(pk)
            if challenge is None or session is None:
                continue
            public_id = next((p for p, k in session.devices.items() if k == pk), None)
            if public_id is None:
                continue
            session.send(
                {
                    "t": "challenge",
                    "device": public_id,
                    "body": challenge.model_dump_json().encode(),
                }
            )
            pushed += 1
        self.stats.challenges_pushed += pushed
        return pushed

    def _sweep_idle(self) -> None:
        limit = self.settings.heartbeat_s * self.settings.idle_heartbeats
        now = time.monotonic()
        for session in list(self.sessions):
            if session.devices and now - session.last_rx > limit:
                session.close("no heartbeat: session idle too long")


async def start_control_server(
    state: AppState,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    settings: ControlSettings | None = None,
    commands: Mapping[str, CommandHandler] | None = None,
    reuse_port: bool = False,
    ssl: _ssl.SSLContext | None = None,
) -> ControlServer:
    """Start the control server on the running event loop; `await server.stop()` ends it."""
    server = ControlServer(state, settings, commands=commands)
    await server.start(host, port, reuse_port=reuse_port, ssl=ssl)
    return server
