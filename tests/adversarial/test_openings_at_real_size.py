"""Openings at the real profiles' sizes cross both transports, over a 10 Mbit/s uplink.

The suite's other proofs run the tiny cpu-dev profile, whose openings fit any limit.
Here a device enrolled as an H100 SXM or an RTX 4090 answers a challenge of its real
size (n = 8192 or 4096, T + 1 roots, hundreds of opened rows: megabytes) with
synthetic rows of exactly the right shapes. No GPU is needed to move the bytes, and
the rows are not the chain's, so the verdict is a content failure (commitment_mismatch
or wrong_initial): proof that the bytes crossed, were parsed and reached the verifier,
and were not stopped on the way as too large, malformed or late.

The same exchange then runs through a rate-limited TCP proxy on 127.0.0.1 (10 Mbit/s,
50 ms each way; these machines' kernel has no netem), against a coordinator on a clock
that runs: the check is the coordinator's own OPENING_LATE verdict not firing, and its
own measure of the upload agreeing with the proxy's rate.

Hostile bodies on both transports are refused with a clear reason and change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from gpunet.agent.client import WorkerClient
from gpunet.agent.control import Backoff, ControlClient
from gpunet.agent.provers.base import Prover
from gpunet.agent.proving import answer_next
from gpunet.core import control
from gpunet.core.clock import FrozenClock, unix
from gpunet.core.pog import (
    Challenge,
    Commitment,
    HardwareReport,
    ModelProfile,
    OpenedRow,
    OpeningRequest,
    OpeningResponse,
    ReportedGpu,
    default_catalog,
)
from gpunet.core.pog.hardware import MAX_HOST_GPUS, KernelGpu
from gpunet.core.pog.messages import CHUNK_BYTES, CommitmentEnvelope
from gpunet.core.pog.wire import CONTENT_TYPE, encode_openings, max_body
from gpunet.server.app import create_app
from gpunet.server.control import ControlServer, ControlSettings
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.middleware import MAX_BODY_BYTES
from gpunet.server.services import proof_schedule
from gpunet.server.state import AppState
from tests.integration.conftest import DeviceHandle, Net, make_settings

PROFILES = ("h100-sxm", "rtx-4090")
# The profile with the largest opening: the one every body and assembly limit is sized by.
LARGEST = max(
    (m for m in default_catalog().models if not m.dev_only), key=lambda m: max_body(m.params)
).key
CROSSING = tuple(dict.fromkeys((*PROFILES, LARGEST)))
# Rows that are not the chain's fail on their content, never on their transport.
CONTENT_REASONS = {"commitment_mismatch", "wrong_initial"}
UPLINK_BYTES_S = 10e6 / 8  # 10 Mbit/s: what the opening budgets are sized for
ONE_WAY_S = 0.05


def profile(key: str) -> ModelProfile:
    found = default_catalog().get(key)
    assert found is not None
    return found


# -- a prover that moves bytes of the right shapes -------------------------------------------


class SyntheticRows(Prover):
    """Commits T + 1 random roots and opens exactly the requested rows: n bytes each, a
    1 KiB chunk of row digests and a full Merkle path. Shapes right, content wrong."""

    name = "synthetic"

    def __init__(self) -> None:
        super().__init__()
        self.opened_bytes = 0

    def _run(self, challenge: Challenge) -> list[Any]:
        raise NotImplementedError  # commit and open are replaced whole

    def _row(self, step: int, index: int) -> bytes:
        raise NotImplementedError

    def commit(self, challenge: Challenge) -> Commitment:
        self._challenge = challenge
        rng = random.Random(challenge.seed)
        roots = tuple(rng.randbytes(32) for _ in range(challenge.params.steps + 1))
        return Commitment(challenge_id=challenge.id, roots=roots, elapsed_s=0.5, backend=self.name)

    def open(self, request: OpeningRequest) -> OpeningResponse:
        assert self._challenge is not None and request.challenge_id == self._challenge.id
        response = synthetic_openings(self._challenge, request)
        self.opened_bytes = len(encode_openings(response))
        return response


def synthetic_openings(
    challenge: Challenge, request: OpeningRequest, *, width: int | None = None
) -> OpeningResponse:
    p = challenge.params
    rng = random.Random(request.challenge_id)
    rows = tuple(
        OpenedRow(
            step=ref.step,
            index=ref.index,
            data=rng.randbytes(width or p.n),
            chunk=rng.randbytes(CHUNK_BYTES),
            siblings=tuple(rng.randbytes(32) for _ in range(p.proof_depth)),
        )
        for ref in request.rows
    )
    return OpeningResponse(challenge_id=request.challenge_id, rows=rows)


# -- the coordinator and its devices -------------------------------------------------------


class RunningClock(FrozenClock):
    """Real time from a fixed start: the coordinator measures uploads as they happen."""

    def __init__(self) -> None:
        super().__init__(dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC))
        self._t0 = time.monotonic()

    def now(self) -> dt.datetime:
        return super().now() + dt.timedelta(seconds=time.monotonic() - self._t0)


@contextmanager
def coordinator(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    settings = make_settings(database_url)
    with TestClient(create_app(settings, database=database, clock=clock)) as client:
        yield Net(client, clock, database, settings)


def fast_control() -> ControlSettings:
    """Pushes every 20 ms, so nothing waits on the control server's intervals."""
    return ControlSettings(heartbeat_s=0.5, push_interval_s=0.02, auth_timeout_s=5.0)


def state(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    return st


def enroll_as(net: Net, key: str) -> DeviceHandle:
    """A device whose claim matches the profile: the catalog's own model name and VRAM."""
    p = profile(key)
    [dev] = net.enroll(
        net.register(), vendor=p.vendor, model=f"NVIDIA {p.match[0]}", vram_mib=p.vram_mib
    )
    return dev


def report(dev: DeviceHandle) -> HardwareReport:
    c = dev.claim
    gpu = ReportedGpu(
        gpu_uuid=c.gpu_uuid, pci_bus_id=c.pci_bus_id, model=c.model, vram_mib=c.vram_mib
    )
    # An NVIDIA host also lists what its driver enumerates: the same GPU.
    kernel = KernelGpu(pci_bus_id=c.pci_bus_id, model=c.model, gpu_uuid=c.gpu_uuid)
    return HardwareReport(
        vendor=c.vendor, device_uuid=c.gpu_uuid, devices=(gpu,), kernel_gpus=(kernel,)
    )


def challenge_now(net: Net) -> None:
    st = state(net)
    with net.database.transaction() as s:
        s.execute(update(Device).values(next_check_at=net.clock.now()))
    with net.database.transaction() as s:
        issued = proof_schedule.schedule_due(
            s, now=net.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )
    assert issued == 1


def challenge_row(net: Net) -> ChallengeRow:
    with net.database.read() as s:
        row = s.execute(select(ChallengeRow)).scalar_one()
        s.expunge(row)
        return row


def worker(net: Net, dev: DeviceHandle, http: httpx.Client | None = None) -> WorkerClient:
    clock = net.clock
    return WorkerClient(http or net.client, dev.signer, clock=lambda: clock.now().timestamp())


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- a 10 Mbit/s uplink on loopback -------------------------------------------------------


class ThrottledLink:
    """A TCP proxy on 127.0.0.1 that carries each direction at `rate` bytes/s and
    delivers every byte `delay` seconds after it has been put on the wire.

    Per direction a reader stamps each piece with the time the link would finish
    sending it (after everything queued before it) and a writer delivers it then.
    The queue between them is short, so a sender faster than the link is held back
    by TCP, as by a real uplink. Every socket has a timeout: nothing outlives a test.
    """

    PIECE = 16 * 1024

    def __init__(self, target: tuple[str, int], rate: float, delay: float) -> None:
        self.target, self.rate, self.delay = target, rate, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.carried = {"up": 0, "down": 0}
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                near, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            far = socket.create_connection(self.target, timeout=60)
            near.settimeout(60)
            self._sockets += [near, far]
            for src, dst, name in ((near, far, "up"), (far, near, "down")):
                pipe: queue.Queue[tuple[float, bytes] | None] = queue.Queue(maxsize=8)
                threading.Thread(target=self._read, args=(src, pipe, name), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, pipe), daemon=True).start()

    def _read(self, src: socket.socket, pipe: queue.Queue[Any], name: str) -> None:
        sent_by = time.monotonic()
        try:
            while data := src.recv(self.PIECE):
                sent_by = max(sent_by, time.monotonic()) + len(data) / self.rate
                self.carried[name] += len(data)
                pipe.put((sent_by + self.delay, data), timeout=60)
        except (OSError, queue.Full):
            pass
        pipe.put(None)

    @staticmethod
    def _write(dst: socket.socket, pipe: queue.Queue[Any]) -> None:
        try:
            while (item := pipe.get(timeout=60)) is not None:
                at, data = item
                time.sleep(max(0.0, at - time.monotonic()))
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except (OSError, queue.Empty):
            pass

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


@contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[int]:
    """The app on a real HTTP server on 127.0.0.1, for the proxy to stand in front of."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- honest exchanges at the real sizes ---------------------------------------------------


def http_exchange(net: Net, dev: DeviceHandle, http: httpx.Client | None = None) -> int:
    """One challenge answered over HTTP; returns the bytes of openings sent."""
    challenge_now(net)
    prover = SyntheticRows()
    outcome = answer_next(worker(net, dev, http), prover, report(dev))
    assert outcome is not None
    assert outcome.reason in CONTENT_REASONS, outcome
    return prover.opened_bytes


async def control_exchange(net: Net, dev: DeviceHandle, port: int) -> int:
    """One challenge pushed and answered over the control channel, its openings in
    parts; returns the bytes of openings sent."""
    prover = SyntheticRows()
    client = ControlClient(
        [("127.0.0.1", port)],
        [dev.signer],
        server_id=net.settings.public_url,
        provers=lambda _device: prover,
        hardware=lambda _device: report(dev),
        backoff=Backoff(0.01, 0.1),
    )
    task = asyncio.get_running_loop().create_task(client.run())
    try:
        await asyncio.wait_for(client.connected.wait(), 30)
        await asyncio.to_thread(challenge_now, net)
        await until(lambda: dev.device_id in client.outcomes)
    finally:
        await client.stop()
        await asyncio.wait_for(task, 10)
    outcome = client.outcomes[dev.device_id]
    assert outcome.reason in CONTENT_REASONS, outcome
    return prover.opened_bytes


def assert_openings_crossed(net: Net, key: str, sent: int) -> ChallengeRow:
    """The coordinator took every byte and judged the rows themselves."""
    p = profile(key)
    row = challenge_row(net)
    assert row.outcome == "failed" and row.reason in CONTENT_REASONS, (row.reason, row.detail)
    assert row.profile == key
    # Megabytes, of the requested rows, within the largest the profile can need.
    assert 2_000_000 < sent <= max_body(p.params)
    return row


def forget_challenges(net: Net) -> None:
    with net.database.transaction() as s:
        s.execute(delete(ChallengeRow))


@pytest.mark.parametrize("key", CROSSING)
def test_real_size_openings_cross_http(
    database: Database, database_url: str, clock: FrozenClock, key: str
) -> None:
    with coordinator(database, database_url, clock) as net:
        dev = enroll_as(net, key)
        sent = http_exchange(net, dev)
        assert_openings_crossed(net, key, sent)


@pytest.mark.parametrize("key", CROSSING)
def test_real_size_openings_cross_the_control_channel(
    database: Database, database_url: str, clock: FrozenClock, key: str
) -> None:
    with coordinator(database, database_url, clock) as net:
        dev = enroll_as(net, key)

        async def scenario() -> int:
            server = ControlServer(state(net), fast_control())
            await server.start("127.0.0.1", 0)
            try:
                return await control_exchange(net, dev, server.port)
            finally:
                await server.stop()

        sent = run(scenario())
        # More than one frame's worth: the parts were put back together.
        assert sent > control.MAX_FRAME
        assert_openings_crossed(net, key, sent)


# -- the same over a 10 Mbit/s uplink with 50 ms each way ---------------------------------


def assert_in_time(net: Net, key: str, sent: int) -> None:
    """The coordinator's own clock: openings in before the budget (no OPENING_LATE),
    and no sooner than the link's rate allows (the proxy really was the bottleneck)."""
    row = assert_openings_crossed(net, key, sent)
    assert row.committed_at is not None and row.completed_at is not None
    took = (row.completed_at - row.committed_at).total_seconds()
    assert sent / UPLINK_BYTES_S <= took <= profile(key).budget.open_budget_s, took


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", PROFILES)
def test_real_size_openings_arrive_in_time_over_a_10_mbit_uplink(
    database: Database, database_url: str, key: str
) -> None:
    with coordinator(database, database_url, RunningClock()) as net:
        dev = enroll_as(net, key)
        app: FastAPI = net.client.app  # type: ignore[assignment]
        with uvicorn_server(app) as port:
            link = ThrottledLink(("127.0.0.1", port), UPLINK_BYTES_S, ONE_WAY_S)
            try:
                proxied = f"http://127.0.0.1:{link.port}"
                with httpx.Client(base_url=proxied, timeout=60) as http:
                    sent = http_exchange(net, dev, http)
            finally:
                link.close()
        assert_in_time(net, key, sent)
        assert link.carried["up"] >= sent
        forget_challenges(net)

        async def scenario() -> tuple[int, int]:
            server = ControlServer(state(net), fast_control())
            await server.start("127.0.0.1", 0)
            slow = ThrottledLink(("127.0.0.1", server.port), UPLINK_BYTES_S, ONE_WAY_S)
            try:
                return await control_exchange(net, dev, slow.port), slow.carried["up"]
            finally:
                slow.close()
                await server.stop()

        sent, carried = run(scenario())
        assert_in_time(net, key, sent)
        assert carried >= sent


# -- hostile bodies over HTTP --------------------------------------------------------------


def commit_over_http(net: Net, dev: DeviceHandle) -> tuple[WorkerClient, Challenge, OpeningRequest]:
    challenge_now(net)
    client = worker(net, dev)
    challenge = client.fetch_challenge()
    assert challenge is not None
    answer = client.commit(SyntheticRows().commit(challenge), report(dev))
    assert isinstance(answer, OpeningRequest)
    return client, challenge, answer


def _count_patched(body: bytes, cid: str) -> bytes:
    at = 4 + 1 + len(cid) + 4  # magic, id length, id, width: then the row count
    count = int.from_bytes(body[at : at + 4], "little")
    return body[:at] + (count + 1).to_bytes(4, "little") + body[at + 4 :]


MANGLES: dict[str, tuple[Callable[[Challenge, OpeningRequest], bytes], str]] = {
    "truncated": (
        lambda ch, rq: encode_openings(synthetic_openings(ch, rq))[:-100],
        "truncated",
    ),
    "extra bytes": (
        lambda ch, rq: encode_openings(synthetic_openings(ch, rq)) + b"\0",
        "bytes after the last row",
    ),
    "wrong width": (
        lambda ch, rq: encode_openings(synthetic_openings(ch, rq, width=ch.params.n // 2)),
        "bytes wide",
    ),
    "more rows than asked": (
        lambda ch, rq: _count_patched(encode_openings(synthetic_openings(ch, rq)), ch.id),
        "were requested",
    ),
    "json, not binary": (
        lambda ch, rq: synthetic_openings(ch, rq).model_dump_json().encode(),
        "bad magic",
    ),
}


def post_openings(net: Net, dev: DeviceHandle, challenge_id: str, body: bytes) -> httpx.Response:
    path = f"/api/v1/worker/challenge/{challenge_id}/openings"
    auth = dev.signer.authorization("POST", path, body, unix(net.clock.now()))
    headers = {"Authorization": auth, "Content-Type": CONTENT_TYPE}
    return net.client.post(path, content=body, headers=headers)


def test_hostile_openings_over_http_are_refused_and_change_nothing(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        # A profile whose openings as JSON (a third larger) still fit the route's limit,
        # so every mangle reaches the decoder; past the limit is the 413 below.
        dev = enroll_as(net, "rtx-4090")
        client, challenge, request = commit_over_http(net, dev)
        for name, (mangle, reason) in MANGLES.items():
            r = post_openings(net, dev, challenge.id, mangle(challenge, request))
            assert r.status_code == 422, (name, r.text)  # invalid_input, the one mapping
            error = r.json()["error"]
            assert error["code"] == "invalid_input" and reason in error["message"], name
            row = challenge_row(net)
            assert row.outcome == "committed" and row.reason is None, name
        # Past the limit derived from the catalog: refused on its declared length.
        limit = state(net).openings_limit
        r = post_openings(net, dev, challenge.id, b"\0" * (limit + 1))
        assert r.status_code == 413 and str(limit) in r.json()["error"]["message"]
        assert challenge_row(net).outcome == "committed"
        # The challenge still takes its honest (shape-right) openings, and judges them.
        verdict = client.open(synthetic_openings(challenge, request))
        assert verdict.reason in CONTENT_REASONS


def test_only_the_openings_route_takes_more_than_the_global_limit(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        dev = enroll_as(net, "rtx-4090")
        _, challenge, _ = commit_over_http(net, dev)
        big = b"\0" * (300 * 1024)  # over the 256 KiB every other route takes
        r = post_openings(net, dev, challenge.id, big)
        assert r.status_code == 422 and "bad magic" in r.json()["error"]["message"]
        path = f"/api/v1/worker/challenge/{challenge.id}/commitment"
        auth = dev.signer.authorization("POST", path, big, unix(net.clock.now()))
        r = net.client.post(path, content=big, headers={"Authorization": auth})
        assert r.status_code == 413


# -- hostile frames over the control channel -----------------------------------------------


class RawAgent:
    """A hand-driven control session for one device: frames in, frames out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = control.FrameDecoder()
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def join(cls, net: Net, dev: DeviceHandle, port: int) -> RawAgent:
        agent = cls(*await asyncio.open_connection("127.0.0.1", port))
        hello = control.Hello.parse(await agent.next())
        sig = dev.key.sign(
            control.auth_message(
                server_id=net.settings.public_url, nonce=hello.nonce, device_id=dev.device_id
            )
        )
        agent.send(control.Auth((1, 1), "0.1.0", ((dev.device_id, sig),)).wire())
        assert (await agent.next())["t"] == "welcome"
        return agent

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(control.encode(message))

    async def next(self, *kinds: str) -> dict[str, Any]:
        """The next frame of one of `kinds` (any kind if none), skipping pings."""
        while True:
            while not self.backlog:
                data = await asyncio.wait_for(self.reader.read(1 << 16), 30)
                if not data:
                    raise ConnectionResetError("closed")
                self.backlog.extend(self.decoder.feed(data))
            msg = self.backlog.pop(0)
            if not kinds or msg["t"] in kinds or msg["t"] == "bye":
                return msg

    async def commit(self, dev: DeviceHandle) -> tuple[Challenge, OpeningRequest]:
        pushed = await self.next("challenge")
        challenge = Challenge.model_validate_json(control.body_of(pushed)[1])
        envelope = CommitmentEnvelope(
            commitment=SyntheticRows().commit(challenge), hardware=report(dev)
        )
        self.send({"t": "commitment", "device": dev.device_id, "body": envelope.model_dump_json()})
        answer = await self.next("open", "verdict", "error")
        assert answer["t"] == "open", answer
        return challenge, OpeningRequest.model_validate_json(control.body_of(answer)[1])

    def send_openings(self, dev: DeviceHandle, challenge_id: str, body: bytes) -> None:
        for frame in control.openings_frames(dev.device_id, challenge_id, body):
            self.send(frame)


@contextlib.asynccontextmanager
async def committed_session(
    net: Net, dev: DeviceHandle
) -> AsyncIterator[tuple[RawAgent, Challenge, OpeningRequest]]:
    """A control server, and a raw session whose device has committed to a challenge."""
    server = ControlServer(state(net), fast_control())
    await server.start("127.0.0.1", 0)
    try:
        agent = await RawAgent.join(net, dev, server.port)
        await asyncio.to_thread(challenge_now, net)
        challenge, request = await agent.commit(dev)
        yield agent, challenge, request
        agent.writer.close()
    finally:
        await server.stop()


def test_hostile_openings_over_the_control_channel_get_an_error_and_change_nothing(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        dev = enroll_as(net, "rtx-4090")  # its openings as JSON fit the assembly limit

        async def scenario() -> None:
            async with committed_session(net, dev) as (agent, challenge, request):
                await hostile_then_honest(net, dev, agent, challenge, request)

        run(scenario())


async def hostile_then_honest(
    net: Net, dev: DeviceHandle, agent: RawAgent, challenge: Challenge, request: OpeningRequest
) -> None:
    for name, (mangle, reason) in MANGLES.items():
        agent.send_openings(dev, challenge.id, mangle(challenge, request))
        error = await agent.next("error", "verdict")
        assert error["t"] == "error" and error["ref"] == dev.device_id, name
        assert error["code"] == "invalid_input" and reason in error["message"], name
        row = await asyncio.to_thread(challenge_row, net)
        assert row.outcome == "committed" and row.reason is None, name
    # Same session, honest shapes: judged on their content.
    agent.send_openings(dev, challenge.id, encode_openings(synthetic_openings(challenge, request)))
    verdict = await agent.next("verdict", "error")
    assert verdict["t"] == "verdict" and verdict["reason"] in CONTENT_REASONS, verdict


PART = control.OPENINGS_PART


def _frame(dev: DeviceHandle, cid: str, part: int, body: bytes, last: bool) -> dict[str, Any]:
    return {
        "t": "openings",
        "device": dev.device_id,
        "challenge": cid,
        "part": part,
        "last": last,
        "body": body,
    }


def _out_of_order(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    return [_frame(dev, cid, 1, b"x" * 100, True)]


def _gap(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    return [_frame(dev, cid, 0, b"x" * 100, False), _frame(dev, cid, 2, b"x", True)]


def _switched(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    other = "pog_" + "a" * 24
    return [_frame(dev, cid, 0, b"x" * 100, False), _frame(dev, other, 1, b"x", True)]


def _past_the_limit(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    parts = limit // PART + 1
    return [_frame(dev, cid, i, b"\0" * PART, False) for i in range(parts + 1)]


def _oversized_part(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    return [_frame(dev, cid, 0, b"\0" * (PART + 1), True)]


def _someone_else(dev: DeviceHandle, cid: str, limit: int) -> list[dict[str, Any]]:
    frame = _frame(dev, cid, 0, b"x", True)
    return [{**frame, "device": "dev_someone_else"}]


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (_out_of_order, "out of order"),
        (_gap, "out of order"),
        (_switched, "out of order"),
        (_past_the_limit, "more than"),
        (_oversized_part, "bytes at most"),
        (_someone_else, "not authenticated in this session"),
    ],
)
def test_openings_frames_that_break_the_rules_close_the_session(
    database: Database,
    database_url: str,
    clock: FrozenClock,
    frames: Callable[[DeviceHandle, str, int], list[dict[str, Any]]],
    reason: str,
) -> None:
    with coordinator(database, database_url, clock) as net:
        dev = enroll_as(net, "rtx-4090")

        async def scenario() -> None:
            async with committed_session(net, dev) as (agent, challenge, _):
                for frame in frames(dev, challenge.id, state(net).openings_limit):
                    agent.send(frame)
                    with contextlib.suppress(ConnectionError):
                        await agent.writer.drain()
                bye = await agent.next("bye")
                assert bye["t"] == "bye" and reason in bye["reason"], bye
                row = await asyncio.to_thread(challenge_row, net)
                assert row.outcome == "committed" and row.reason is None

        run(scenario())


# -- the small messages stay small ---------------------------------------------------------


def test_the_largest_commitment_fits_a_request_and_a_frame() -> None:
    """The commitment stays JSON: at the catalog's most steps, with a host of the most
    GPUs and the largest attestation report, it fits the 256 KiB HTTP body limit and a
    control-channel frame."""

    most = max(default_catalog().models, key=lambda m: m.params.steps)
    gpus = tuple(
        ReportedGpu(
            gpu_uuid=f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}",
            pci_bus_id=f"00000000:{i:02x}:00.0",
            model="NVIDIA " + "X" * 56,
            vram_mib=most.vram_mib,
        )
        for i in range(MAX_HOST_GPUS)
    )
    kernel = tuple(
        KernelGpu(pci_bus_id=g.pci_bus_id, model=g.model, gpu_uuid=g.gpu_uuid) for g in gpus
    )
    envelope = CommitmentEnvelope(
        commitment=Commitment(
            challenge_id="pog_" + "a" * 24,
            roots=tuple(bytes([i % 256]) * 32 for i in range(most.params.steps + 1)),
            elapsed_s=1.0,
            backend="cuda",
        ),
        hardware=HardwareReport(
            vendor="nvidia", device_uuid=gpus[0].gpu_uuid, devices=gpus, kernel_gpus=kernel
        ),
        attestation=b"\xff" * (64 * 1024),
    )
    body = envelope.model_dump_json().encode()
    frame = control.encode({"t": "commitment", "device": "dev_x", "body": body})
    assert len(body) <= MAX_BODY_BYTES and len(frame) <= control.MAX_FRAME
