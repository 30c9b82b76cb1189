"""The control channel's recovery paths (issue 12): an agent whose session drops, or
whose coordinator restarts, comes back by itself and says so in its log; a device
retired while its agent is connected is let go by the live session at once (it stops
speaking for it, and commands for it find it gone), not only at the next handshake.

Real TCP sessions on loopback against a coordinator on each backend, as in
test_control.py (whose helpers these tests share).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from gpunet.core.errors import Conflict
from gpunet.server.control import relay
from gpunet.server.services.devices import RETIRED
from tests.integration.conftest import Net
from tests.integration.rewards_world import headers
from tests.integration.test_control import (
    CPU_DEV,
    agent,
    background,
    finish,
    run,
    schedule,
    serve,
    state_of,
    until,
    verify_all,
)

AGENT_LOG = "gpunet.agent.control"


def _reconnected(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == AGENT_LOG and r.getMessage().startswith("reconnected to the control channel")
    ]


def test_a_dropped_channel_and_a_restart_are_reconnected_and_logged(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AGENT_LOG)
    st = state_of(net)
    devs = net.enroll(net.register(), count=2, **CPU_DEV)
    verify_all(net)

    async def scenario() -> None:
        server = await serve(st, heartbeat_s=1.0)  # no idle timeouts on a loaded machine
        port = server.port
        client = agent(net, devs, [("127.0.0.1", port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert _reconnected(caplog) == []
        # The connection dies under the session (a NAT timeout, a cable): no bye, no
        # close handshake, the socket is just gone.
        [session] = list(server.sessions)
        assert session.transport is not None
        session.transport.abort()
        await until(lambda: client.sessions >= 2 and client.connected.is_set())
        beats = server.stats.device_beats
        await until(lambda: server.stats.device_beats >= beats + 2)  # both devices beat again
        assert client.last_bye is None
        # The coordinator restarts on the same port: it says bye, then comes back.
        await server.stop()
        await until(lambda: not client.connected.is_set())
        assert client.last_bye == "coordinator shutting down"
        restarted = await serve(st, port, heartbeat_s=1.0)
        await until(lambda: client.sessions >= 3 and client.connected.is_set())
        await finish(client, task, restarted)

    run(scenario())
    lines = _reconnected(caplog)
    assert len(lines) >= 2 and all("2 device(s) accepted, 0 refused" in x for x in lines)
    said = [r.getMessage() for r in caplog.records if r.name == AGENT_LOG]
    assert any(x.startswith("control session with 127.0.0.1:") and "ended" in x for x in said)
    assert "coordinator closed the session: coordinator shutting down" in said


def test_a_device_retired_while_connected_is_dropped_and_its_commands_refused(
    net: Net,
) -> None:
    st = state_of(net)
    owner = net.register()
    kept, retired = net.enroll(owner, count=2, **CPU_DEV)
    verify_all(net)

    def retire(device_id: str) -> None:
        r = net.client.post(f"/api/v1/devices/{device_id}/retire", headers=headers(net, owner))
        assert r.status_code == 200, r.text

    async def scenario() -> None:
        server = await serve(st, heartbeat_s=1.0)  # no idle timeouts on a loaded machine
        client = agent(net, [kept, retired], [("127.0.0.1", server.port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        since = net.clock.now() - dt.timedelta(seconds=1)
        [session] = list(server.sessions)
        assert set(session.devices) == {kept.device_id, retired.device_id}

        await asyncio.to_thread(retire, retired.device_id)
        await server.refresh_statuses(since)
        # The session no longer speaks for the retired device; the other carries on.
        assert set(session.devices) == {kept.device_id} and not session.closed
        assert server.session_of(retired.device_id) is None
        with pytest.raises(LookupError):
            await server.command(retired.device_id, "cluster.start", {}, timeout=2)
        [kept_pk] = server.by_device
        assert session.devices == {kept.device_id: kept_pk} and session.counted == [kept_pk]
        beats = server.stats.counted_beats
        await until(lambda: server.stats.counted_beats >= beats + 2)  # `kept` still counts

        # The host's last device retired too: the session ends with the reason.
        await asyncio.to_thread(retire, kept.device_id)
        await server.refresh_statuses(since)
        assert session.closed and server.by_device == {}
        await until(lambda: client.last_bye is not None and "retired" in client.last_bye)
        # Reconnecting does not bring them back: the handshake refuses both, saying why.
        await until(lambda: client.sessions >= 1 and set(client.refused) == {
            kept.device_id, retired.device_id})
        assert set(client.refused.values()) == {RETIRED}
        assert client.accepted == ()
        await finish(client, task, server)

    run(scenario())


def test_a_refused_commitment_ends_that_proof_instead_of_holding_the_device(
    net: Net, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The coordinator answers a commitment with an error naming the device (its `ref`):
    the agent's exchange ends there and the device is free for its next challenge, rather
    than waiting for a reply that never comes until the session drops."""
    caplog.set_level(logging.INFO, logger=AGENT_LOG)
    st = state_of(net)
    [dev] = net.enroll(net.register(), count=1, **CPU_DEV)
    refused: list[int] = []

    def refuse(state: object, device_pk: int, body: bytes) -> tuple[str, dict[str, object]]:
        refused.append(device_pk)
        raise Conflict("challenge is no longer open")

    monkeypatch.setattr(relay, "commit", refuse)

    async def scenario() -> None:
        # Heartbeats slow enough that no idle timeout ends the session on a loaded
        # machine: the exchange must end by the error, not by a dropped session.
        server = await serve(st, heartbeat_s=1.0)
        client = agent(net, [dev], [("127.0.0.1", server.port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert await asyncio.to_thread(schedule, net, st) == 1
        await until(lambda: len(refused) == 1)
        await until(lambda: not client._proving)  # the device is no longer "proving"
        await finish(client, task, server)

    run(scenario())
    # Ended by the coordinator's answer (a dropped session would end it with no word).
    assert "coordinator refused: challenge is no longer open" in caplog.text
