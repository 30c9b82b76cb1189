"""Cluster commands over the control channel: this replica delivers the outbox's
commands to the hosts connected here, writes their answers back, and tells the
clusters when a host's session ends or returns.

Nothing here is needed by another replica: the commands, their delivery state and the
clusters are in the database. A command for a host connected elsewhere is delivered by
that replica's relay; one claimed here whose host drops before answering is delivered
again (here or elsewhere) after `command_timeout_s`, or at once when the host rejoins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any

from gpunet.core import clusters as cc
from gpunet.server.db.cluster_tables import Cluster
from gpunet.server.services.clusters import agents, driver, outbox
from gpunet.server.state import AppState

if TYPE_CHECKING:
    from gpunet.server.control.server import ControlServer
    from gpunet.server.control.session import ServerSession

log = logging.getLogger("gpunet.server.control")


def _drive(state: AppState) -> Callable[[Any], driver.Drive]:
    return lambda session: driver.Drive(session, state.clock.now(), state.clusters, state.catalog)


def claim(state: AppState, devices: Collection[int]) -> list[outbox.Delivery]:
    """Claim the commands for devices connected here; a start gets its token now, in
    memory only (the outbox never holds it)."""
    with state.database.transaction() as session:
        timeout = state.clusters.command_timeout_s
        claimed = outbox.claim(session, devices, state.clock.now(), timeout)
        for item in claimed:
            if item.name == cc.START:
                cluster = session.get(Cluster, item.cluster_id)
                if cluster is not None:
                    token = state.cluster_tokens.open(cluster.public_id, cluster.token_sealed)
                    item.args["token"] = token
    return claimed


def settle(state: AppState, command_id: str, ok: bool, result: Any) -> None:
    with state.database.transaction() as session:
        agents.answered(session, _drive(state)(session), command_id, ok=ok, result=result)


def gone(state: AppState, devices: list[int], at: dt.datetime) -> None:
    with state.database.transaction() as session:
        agents.sessions_gone(session, devices, at)


def back(state: AppState, devices: list[int]) -> None:
    with state.database.transaction() as session:
        agents.sessions_back(session, devices, state.clock.now())


def exited(state: AppState, device_id: int, args: dict[str, Any]) -> None:
    with state.database.transaction() as session:
        agents.node_exited(_drive(state)(session), device_id, args)


class ClusterRelay:
    """One per control server. Session events are applied in the order they happened
    (one queue), so a quick leave-and-return is never read as a leave."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.delivered = 0
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events: asyncio.Queue[Callable[[], Any]] | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def state(self) -> AppState:
        return self.server.state

    # -- session events --------------------------------------------------------------
    def attached(self, pks: Collection[int]) -> None:
        devices = list(pks)
        self._event(lambda: back(self.state, devices))

    def detached(self, pks: Collection[int]) -> None:
        devices, at = list(pks), self.state.clock.now()
        if devices:
            self._event(lambda: gone(self.state, devices, at))

    def _event(self, call: Callable[[], Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._events is None:
            self._events = asyncio.Queue()
            self._worker = loop.create_task(self._apply_events())
        self._events.put_nowait(call)

    async def _apply_events(self) -> None:
        assert self._events is not None
        while True:
            call = await self._events.get()
            try:
                await asyncio.to_thread(call)
            except Exception:
                log.exception("recording a session change for clusters failed")

    # -- commands ------------------------------------------------------------------------
    async def push(self) -> int:
        """Deliver what the outbox holds for hosts connected here; the number sent."""
        by_device = self.server.by_device
        if not by_device:
            return 0
        claimed = await asyncio.to_thread(claim, self.state, list(by_device))
        for item in claimed:
            if item.id in self._in_flight:
                continue
            self._spawn(self._deliver(item))
        self.delivered += len(claimed)
        return len(claimed)

    async def _deliver(self, item: outbox.Delivery) -> None:
        from gpunet.server.control.session import CommandFailed

        session = self.server.by_device.get(item.device_id)
        if session is None:
            return  # gone since the claim: delivered again when the host is back
        self._in_flight.add(item.id)
        try:
            result = await session.command(
                item.name, item.args, timeout=self.state.clusters.command_timeout_s
            )
            ok = True
        except CommandFailed as exc:
            result, ok = str(exc), False
        except (TimeoutError, ConnectionError):
            return  # unanswered: delivered again after the timeout
        finally:
            self._in_flight.discard(item.id)
        try:
            await asyncio.to_thread(settle, self.state, item.id, ok, result)
        except Exception:
            log.exception("recording the answer to cluster command %s failed", item.id)

    async def report(self, session: ServerSession, args: dict[str, Any]) -> Any:
        """An agent's REPORT: one of its nodes exited on its own."""
        ref = cc.NodeRef.parse(args)
        pk = session.devices.get(ref.device)
        if pk is None:
            raise ValueError(f"device {ref.device} is not in this session")
        await asyncio.to_thread(exited, self.state, pk, args)
        return {"recorded": True}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
