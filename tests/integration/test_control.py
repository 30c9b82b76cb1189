"""The control channel end to end: real TCP sessions on loopback against a coordinator
on each backend, with the real agent client and the CPU prover.

Every wait is bounded (a few seconds at most); heartbeat and push intervals are set
to tens of milliseconds so that nothing waits on wall time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from gpunet.agent.control import Backoff, ControlClient
from gpunet.core import control, signing
from gpunet.core.pog import Challenge, HardwareReport, ReportedGpu
from gpunet.server.api.deps import AppState
from gpunet.server.control import ControlServer, ControlSettings
from gpunet.server.control.auth import NOT_AUTHENTICATED
from gpunet.server.db.tables import Device
from gpunet.server.security.principal import Principal
from gpunet.server.services import blocks, proof_schedule
from gpunet.server.services.attestation import Attested, NotAttested, attestation_nonce
from gpunet.server.services.blocks import BlockKind
from tests.integration.conftest import DeviceHandle, Net

CPU_DEV = {
    "vendor": "cpu",
    "model": "cpu-dev",
    "vram_mib": 1024,
    "pci_bus_id": "none",
    "driver_version": "0.1.0",
}
FAST = {"heartbeat_s": 0.05, "push_interval_s": 0.02, "auth_timeout_s": 2.0}


class Recorder:
    """Stands in for the uptime recorder: remembers every (device, time) it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[int, int] = {}
        self.heard_at: dict[int, dt.datetime] = {}

    def record(self, device_id: int, at: dt.datetime) -> None:
        with self.lock:
            self.seen[device_id] = self.seen.get(device_id, 0) + 1

    def heard(self, device_id: int, at: dt.datetime) -> None:
        with self.lock:  # every heartbeat, counted or not (for the last heartbeat time)
            self.heard_at[device_id] = at


def state_of(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    st.uptime = Recorder()  # type: ignore[attr-defined]
    return st


def report(dev: DeviceHandle) -> HardwareReport:
    c = dev.claim
    gpu = ReportedGpu(gpu_uuid=c.gpu_uuid, pci_bus_id=c.pci_bus_id, model=c.model,
                      vram_mib=c.vram_mib)
    return HardwareReport(vendor=c.vendor, device_uuid=c.gpu_uuid, devices=(gpu,))


def agent(net: Net, devs: list[DeviceHandle], endpoints: list[tuple[str, int]],
          signers: list[signing.DeviceSigner] | None = None, **kw: Any) -> ControlClient:
    reports = {d.device_id: report(d) for d in devs}
    return ControlClient(
        endpoints, signers or [d.signer for d in devs], server_id=net.settings.public_url,
        hardware=reports.__getitem__, backoff=Backoff(0.01, 0.1), **kw,
    )


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def serve(st: AppState, port: int = 0, **kw: Any) -> ControlServer:
    server = ControlServer(st, ControlSettings(**(FAST | kw)))
    await server.start("127.0.0.1", port)
    return server


async def background(client: ControlClient) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(client.run())


async def finish(client: ControlClient, task: asyncio.Task[None], *servers: ControlServer) -> None:
    await client.stop()
    await asyncio.wait_for(task, 5)
    for server in servers:
        await server.stop()


def schedule(net: Net, st: AppState) -> int:
    with net.database.transaction() as s:
        s.execute(update(Device).values(next_check_at=net.clock.now()))
    with net.database.transaction() as s:
        return proof_schedule.schedule_due(
            s, now=net.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )


def verify_all(net: Net) -> None:
    with net.database.transaction() as s:
        s.execute(update(Device).values(status="verified"))


def statuses(net: Net) -> dict[str, str]:
    with net.database.read() as s:
        return {p: st for p, st in s.execute(select(Device.public_id, Device.status))}


def test_host_of_three_authenticates_beats_and_proves(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=3, **CPU_DEV)

    async def scenario() -> None:
        server = await serve(st)
        client = agent(net, devs, [("127.0.0.1", server.port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert sorted(client.accepted) == sorted(d.device_id for d in devs)
        assert client.refused == {} and client.upgrade is not None
        assert client.upgrade.state == "none"
        await until(lambda: server.stats.device_beats >= 9)
        assert st.uptime.seen == {}  # type: ignore[attr-defined]  # pending: nothing counts
        rtt = await client.ping()
        assert 0 < rtt < 5
        assert await asyncio.to_thread(schedule, net, st) == 3
        await until(lambda: len(client.outcomes) == 3)
        assert all(o.passed and o.status == "verified" for o in client.outcomes.values())
        # Verified now: the same session's heartbeats count from here on.
        await until(lambda: len(st.uptime.seen) == 3)  # type: ignore[attr-defined]
        await finish(client, task, server)

    run(scenario())
    assert set(statuses(net).values()) == {"verified"}


def test_forged_signature_refuses_that_device_only(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=3, **CPU_DEV)
    signers = [d.signer for d in devs]
    signers[1] = signing.DeviceSigner(devs[1].device_id, Ed25519PrivateKey.generate())
    verify_all(net)

    async def scenario() -> None:
        server = await serve(st)
        client = agent(net, devs, [("127.0.0.1", server.port)], signers=signers)
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert set(client.accepted) == {devs[0].device_id, devs[2].device_id}
        assert client.refused == {devs[1].device_id: NOT_AUTHENTICATED}
        await until(lambda: len(st.uptime.seen) == 2)  # type: ignore[attr-defined]
        await finish(client, task, server)

    run(scenario())


def test_suspended_and_blocked_devices_are_refused_with_a_reason(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=3, **CPU_DEV)
    with net.database.transaction() as s:
        s.execute(update(Device).where(Device.public_id == devs[0].device_id)
                  .values(status="suspended"))
        blocks.add(s, kind=BlockKind.PRINCIPAL, value=f"device:{devs[1].device_id}",
                   reason="test", actor=Principal.admin(), now=net.clock.now())

    async def scenario() -> None:
        server = await serve(st)
        client = agent(net, devs, [("127.0.0.1", server.port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert client.accepted == (devs[2].device_id,)
        assert "suspended" in client.refused[devs[0].device_id]
        assert "blocked" in client.refused[devs[1].device_id]
        await finish(client, task, server)

    run(scenario())


async def raw_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = control.FrameDecoder()
    backlog: list[dict[str, Any]] = []

    async def next_message() -> dict[str, Any]:
        while not backlog:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                raise ConnectionResetError
            backlog.extend(decoder.feed(data))
        return backlog.pop(0)

    return reader, writer, next_message


def test_replayed_auth_frame_fails_on_a_new_session(net: Net) -> None:
    st = state_of(net)
    [dev] = net.enroll(net.register(), count=1, **CPU_DEV)

    async def scenario() -> None:
        server = await serve(st)
        _, writer, nxt = await raw_session(server.port)
        hello = control.Hello.parse(await nxt())
        sig = dev.key.sign(control.auth_message(
            server_id=net.settings.public_url, nonce=hello.nonce, device_id=dev.device_id))
        frame = control.encode(control.Auth((1, 1), "0.1.0", ((dev.device_id, sig),)).wire())
        writer.write(frame)
        welcome = control.Welcome.parse(await nxt())
        assert welcome.accepted == (dev.device_id,)
        writer.close()
        # The captured frame, on a new session (a new nonce): refused.
        _, writer2, nxt2 = await raw_session(server.port)
        await nxt2()
        writer2.write(frame)
        welcome2 = control.Welcome.parse(await nxt2())
        assert welcome2.accepted == ()
        assert welcome2.refused == ((dev.device_id, NOT_AUTHENTICATED),)
        assert (await nxt2())["t"] == "bye"
        writer2.close()
        await server.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ((1 << 24).to_bytes(4, "big") + b"x" * 16, "exceeds the limit"),
        ((5).to_bytes(4, "big") + b"\xc1\xc1\xc1\xc1\xc1", "not a valid message"),
        (control.encode({"t": "auth", "proto": "one", "agent": 1, "devices": 3}), "auth"),
        (control.encode({"t": "auth", "proto": [1, 1], "agent": "0.1",
                         "devices": [["dev", b"short"]]}), "64 bytes"),
        (control.encode({"t": "hb", "seq": 1}), "expected auth"),
        (control.encode([1, 2, 3]), "map with a type"),
    ],
)
def test_hostile_frames_close_the_session_and_the_server_survives(
    net: Net, payload: bytes, reason: str
) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=1, **CPU_DEV)

    async def scenario() -> None:
        server = await serve(st)
        reader, writer, nxt = await raw_session(server.port)
        await nxt()
        writer.write(payload)
        bye = await nxt()
        assert bye["t"] == "bye" and reason in bye["reason"]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        # A truncated frame followed by a hang-up is simply a closed session.
        _, w2, nxt2 = await raw_session(server.port)
        await nxt2()
        w2.write((100).to_bytes(4, "big") + b"abc")
        w2.close()
        # The server still serves an honest host.
        client = agent(net, devs, [("127.0.0.1", server.port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert server.stats.protocol_errors >= 1
        await finish(client, task, server)

    run(scenario())


def test_session_after_auth_rejects_a_hostile_frame(net: Net) -> None:
    st = state_of(net)
    [dev] = net.enroll(net.register(), count=1, **CPU_DEV)

    async def scenario() -> None:
        server = await serve(st)
        _, writer, nxt = await raw_session(server.port)
        hello = control.Hello.parse(await nxt())
        sig = dev.key.sign(control.auth_message(
            server_id=net.settings.public_url, nonce=hello.nonce, device_id=dev.device_id))
        writer.write(control.encode(control.Auth((1, 1), "0.1.0", ((dev.device_id, sig),))
                                    .wire()))
        assert (await nxt())["t"] == "welcome"
        writer.write(control.encode({"t": "commitment", "device": "dev_someone_else",
                                     "body": b"{}"}))
        bye = await nxt()
        assert bye["t"] == "bye" and "not authenticated in this session" in bye["reason"]
        await server.stop()

    run(scenario())


def test_reconnects_after_a_coordinator_restart(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=2, **CPU_DEV)
    verify_all(net)

    async def scenario() -> None:
        server = await serve(st)
        port = server.port
        client = agent(net, devs, [("127.0.0.1", port)])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        await server.stop()
        assert client.last_bye is not None or not client.connected.is_set()
        restarted = await serve(st, port)
        await until(lambda: client.sessions == 2 and client.connected.is_set())
        seen = st.uptime.seen  # type: ignore[attr-defined]
        before = dict(seen)
        assert len(before) == 2
        await until(lambda: all(seen[k] > v for k, v in before.items()))
        await finish(client, task, restarted)

    run(scenario())


def test_two_replicas_serve_one_host_alternately(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=3, **CPU_DEV)

    async def scenario() -> None:
        a = await serve(st)
        b = await serve(st)
        ports = [a.port, b.port]
        client = agent(net, devs, [("127.0.0.1", p) for p in ports])
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert client.endpoint == ("127.0.0.1", ports[0])
        await a.stop()
        await until(lambda: client.endpoint == ("127.0.0.1", ports[1])
                    and client.connected.is_set())
        # B pushes a challenge A never saw; the whole exchange runs on B.
        assert await asyncio.to_thread(schedule, net, st) == 3
        await until(lambda: len(client.outcomes) == 3)
        assert b.stats.challenges_pushed == 3 and a.stats.challenges_pushed == 0
        a2 = await serve(st, ports[0])
        await b.stop()
        await until(lambda: client.endpoint == ("127.0.0.1", ports[0])
                    and client.connected.is_set())
        beats = a2.stats.device_beats
        await until(lambda: a2.stats.device_beats >= beats + 3)
        await finish(client, task, a2)

    run(scenario())
    assert set(statuses(net).values()) == {"verified"}


def test_commands_both_ways_are_acknowledged(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=1, **CPU_DEV)

    async def started(args: dict[str, Any]) -> Any:
        return {"started": args["cluster"]}

    async def failing(args: dict[str, Any]) -> Any:
        raise RuntimeError("ray is not installed")

    async def echo(session: Any, args: dict[str, Any]) -> Any:
        return {"echo": args, "devices": sorted(session.devices)}

    async def scenario() -> None:
        server = ControlServer(st, ControlSettings(**FAST), commands={"echo": echo})
        await server.start("127.0.0.1", 0)
        commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "cluster.start": started, "cluster.stop": failing}
        client = agent(net, devs, [("127.0.0.1", server.port)], commands=commands)
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        out = await server.command(devs[0].device_id, "cluster.start", {"cluster": "c1"})
        assert out == {"started": "c1"}
        with pytest.raises(Exception, match="ray is not installed"):
            await server.command(devs[0].device_id, "cluster.stop", {}, timeout=5)
        with pytest.raises(Exception, match="unknown command"):
            await server.command(devs[0].device_id, "nope", {}, timeout=5)
        assert await client.command("echo", {"x": 1}) == {
            "echo": {"x": 1}, "devices": [devs[0].device_id]}
        with pytest.raises(RuntimeError, match="unknown command"):
            await client.command("missing")
        await finish(client, task, server)

    run(scenario())


def test_old_agent_hears_upgrade_required_and_is_refused_only_after_the_date(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=1, **CPU_DEV)
    later = net.clock.now() + dt.timedelta(days=14)

    async def scenario() -> None:
        server = await serve(st, agent_latest="0.3.0", agent_minimum="0.2.0",
                             agent_required_by=later)
        notices: list[control.Upgrade] = []
        client = agent(net, devs, [("127.0.0.1", server.port)], agent_version="0.1.0",
                       on_upgrade=notices.append)
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert notices and notices[0].state == "required" and notices[0].required_by == later
        await finish(client, task)
        net.clock.advance(15 * 86400)
        task = await background(client)
        await until(lambda: client.last_bye is not None and "upgrade" in client.last_bye)
        assert not client.connected.is_set()
        await finish(client, task, server)

    run(scenario())


def test_status_changed_elsewhere_stops_uptime_counting(net: Net) -> None:
    st = state_of(net)
    devs = net.enroll(net.register(), count=2, **CPU_DEV)
    verify_all(net)

    async def scenario() -> None:
        server = await serve(st, status_refresh_s=0.05)
        client = agent(net, devs, [("127.0.0.1", server.port)])
        task = await background(client)
        await until(lambda: len(st.uptime.seen) == 2)  # type: ignore[attr-defined]
        net.clock.advance(1)
        with net.database.transaction() as s:
            s.execute(update(Device).where(Device.public_id == devs[0].device_id)
                      .values(status="suspect", status_changed_at=net.clock.now()))
        await until(lambda: server.stats.counted_beats < server.stats.device_beats - 3)
        seen = dict(st.uptime.seen)  # type: ignore[attr-defined]
        beats = server.stats.device_beats
        await until(lambda: server.stats.device_beats >= beats + 6)
        now_seen = st.uptime.seen  # type: ignore[attr-defined]
        assert sum(now_seen[k] > v for k, v in seen.items()) == 1
        await finish(client, task, server)

    run(scenario())


class FakeCC:
    """Stands in for NVIDIA's verifier: accepts reports that spell out the nonce."""

    def verify(self, report: bytes, nonce: bytes, *, gpu_uuid: str) -> Any:
        if report == b"cc-report:" + nonce:
            return Attested(ueid=f"ueid-{gpu_uuid}")
        return NotAttested("signature does not cover this nonce")


def test_attestation_travels_with_the_commitment_over_the_control_channel(net: Net) -> None:
    st = state_of(net)
    st.attestation = FakeCC()
    [dev] = net.enroll(net.register(), count=1, **CPU_DEV)
    asked: list[str] = []

    def attest(device_id: str, challenge: Challenge) -> bytes:
        asked.append(device_id)
        return b"cc-report:" + attestation_nonce(challenge.seed)

    async def scenario() -> None:
        server = await serve(st)
        client = agent(net, [dev], [("127.0.0.1", server.port)], attestation=attest)
        task = await background(client)
        await asyncio.wait_for(client.connected.wait(), 20)
        assert await asyncio.to_thread(schedule, net, st) == 1
        await until(lambda: dev.device_id in client.outcomes)
        assert client.outcomes[dev.device_id].passed
        await finish(client, task, server)

    run(scenario())
    assert asked == [dev.device_id]
    with net.database.read() as s:
        device = s.execute(select(Device)).scalar_one()
    # The report crossed inside the envelope and was verified against this challenge.
    assert device.attestation_ueid == f"ueid-{dev.claim.gpu_uuid}"
