"""Cluster commands cross replicas through the database: a cluster asked for on one
replica (HTTP only here) is built by the replica that holds the agent's control
session, over real TCP, and that replica reports the session's end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from gpunet.core import clusters as cc
from gpunet.server.app import build_state
from gpunet.server.db.cluster_tables import ClusterMember
from gpunet.server.db.engine import Database
from tests.integration.clusters_world import SETTINGS, ready_devices, state_of
from tests.integration.conftest import Net
from tests.integration.test_control import agent, background, finish, run, serve, until

pytestmark = pytest.mark.db


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Bounded wait for a condition read in a worker thread (it queries the database)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Node:
    """Cluster command handlers as the agent's RayNodes answers them (no Ray)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def handlers(self) -> dict[str, Any]:
        async def start(args: dict[str, Any]) -> Any:
            self.calls.append((cc.START, args))
            s = cc.StartNode.parse(args)  # the token arrived with it
            return cc.NodeStarted("127.0.0.2", "127.0.0.2:6379" if s.is_head else None).wire()

        async def check(args: dict[str, Any]) -> Any:
            self.calls.append((cc.CHECK, args))
            return {"alive": ["n1"], "ran": ["n1"]}

        async def stop(args: dict[str, Any]) -> Any:
            self.calls.append((cc.STOP, args))
            return {"stopped": True}

        return {cc.START: start, cc.CHECK: check, cc.STOP: stop}


def test_a_command_from_one_replica_reaches_an_agent_on_another(
    net: Net, database_url: str
) -> None:
    state_of(net)  # replica A: the HTTP API the customer uses; no control channel here
    customer = net.register()
    [dev] = ready_devices(net, net.register(), 1)
    second = Database(database_url)
    st_b = build_state(net.settings, database=second, clock=net.clock)
    st_b.clusters = SETTINGS
    node = Node()

    async def scenario() -> None:
        server_b = await serve(st_b)
        client = agent(net, [dev], [("127.0.0.1", server_b.port)], commands=node.handlers())
        task = await background(client)
        await until(lambda: bool(server_b.by_device))
        r = await asyncio.to_thread(
            net.client.post, "/api/v1/clusters", json={"count": 1}, headers=customer.headers
        )
        assert r.status_code == 201, r.text
        cid = r.json()["cluster_id"]

        def status() -> str:
            got = net.client.get(f"/api/v1/clusters/{cid}", headers=customer.headers)
            return str(got.json()["status"])

        async def is_ready() -> bool:
            return await asyncio.to_thread(status) == "ready"

        await eventually(is_ready)
        assert [name for name, _ in node.calls] == [cc.START, cc.CHECK]
        token = net.client.get(
            f"/api/v1/clusters/{cid}/credentials", headers=customer.headers
        ).json()["token"]
        assert node.calls[0][1]["token"] == token
        # The agent leaves: replica B records its node as unreachable.
        await client.stop()
        await asyncio.wait_for(task, 5)

        def unreachable() -> bool:
            with net.database.read() as s:
                return s.execute(
                    select(ClusterMember.unreachable_since)
                ).scalar_one() is not None

        await eventually(lambda: asyncio.to_thread(unreachable))
        await finish(client, task, server_b)

    run(scenario())
    second.dispose()
