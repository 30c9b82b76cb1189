"""The network as its users run it: a coordinator and agents as separate processes on
loopback, talking over HTTP and the control channel, through crashes and rotations.

Waits are bounded conditions ("every agent is back within 30 s"), never sleeps that a
result depends on.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Challenge, Device, UptimeSlots
from tests.conftest import _reset_postgres

GPUNET = str(Path(sys.executable).parent / "gpunet")
PASSWORD = "end to end password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


@dataclass
class Coordinator:
    db_url: str
    public_url: str
    port: int
    control_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GPUNET_DATABASE_URL": self.db_url,
            "GPUNET_PUBLIC_URL": self.public_url,
            "GPUNET_SECRET_KEY": "e2e-secret-" + "k" * 40,
            "GPUNET_BACKGROUND_JOBS": "true",
            "GPUNET_SCHEDULER_TICK_S": "0.5",
            "GPUNET_UPTIME_FLUSH_S": "1",
            "GPUNET_CONTROL_HEARTBEAT_S": "1",
            "GPUNET_CONTROL_STATUS_REFRESH_S": "1",
            "GPUNET_SPOT_CHECK_MEAN_S": "86400",
            "GPUNET_ROLLCALL_MEAN_S": "864000",
            "GPUNET_ARGON2_MEMORY_KIB": "1024",
            "GPUNET_ARGON2_TIME_COST": "1",
        }

    def start(self) -> None:
        log = open(self.workdir / f"coordinator-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                GPUNET,
                "server",
                "run",
                "--port",
                str(self.port),
                "--control-port",
                str(self.control_port),
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            "the coordinator answers",
            lambda: httpx.get(self.url + "/healthz", timeout=1).status_code == 200,
            30,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [GPUNET, *args], env=self.env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@dataclass
class Network:
    workdir: Path
    coordinators: list[Coordinator]
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    homes: list[Path] = field(default_factory=list)

    @property
    def first(self) -> Coordinator:
        return self.coordinators[0]

    def token(self) -> str:
        c = httpx.Client(base_url=self.first.url, timeout=10)
        c.post("/api/v1/accounts", json={"email": "e2e@example.com", "password": PASSWORD})
        r = c.post("/api/v1/auth/token", json={"email": "e2e@example.com", "password": PASSWORD})
        return str(r.json()["access_token"])

    def add_agent(self, control: str) -> Path:
        home = self.workdir / f"agent-{len(self.homes)}"
        code = httpx.post(
            self.first.url + "/api/v1/enrollment-codes",
            json={"max_devices": 1},
            headers={"Authorization": f"Bearer {self.token()}"},
        ).json()["code"]
        env = {**self.first.env(), "GPUNET_HOME": str(home)}
        done = subprocess.run(
            [
                GPUNET,
                "worker",
                "enroll",
                "--code",
                code,
                "--coordinator",
                self.first.public_url,
                "--cpu-dev",
                "1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        log = open(home / "agent.log", "ab")  # noqa: SIM115
        self.agents.append(
            subprocess.Popen(
                [GPUNET, "worker", "run", "--control", control],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.homes.append(home)
        return home

    def db(self) -> Any:
        return create_engine(self.first.db_url.replace("postgresql://", "postgresql+psycopg://"))

    def devices(self) -> dict[str, str]:
        with self.db().connect() as conn:
            return dict(conn.execute(select(Device.public_id, Device.status)).all())

    def passed_since(self, moment: dt.datetime) -> int:
        """Devices that passed a proof completed after `moment`."""
        with self.db().connect() as conn:
            rows = conn.execute(
                select(Challenge.device_id, Challenge.completed_at).where(
                    Challenge.outcome == "passed"
                )
            ).all()
        return len({d for d, at in rows if _utc(at) > moment})

    def seen_since(self, moment: dt.datetime) -> int:
        """Devices whose agent has been heard from (a control session joined) since."""
        with self.db().connect() as conn:
            rows = conn.execute(select(Device.last_seen_at)).scalars().all()
        return sum(1 for at in rows if at is not None and _utc(at) > moment)

    def outstanding(self) -> int:
        with self.db().connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(Challenge)
                    .where(Challenge.outcome.in_(("open", "committed")))
                ).scalar_one()
            )

    def uptime_rows(self) -> int:
        with self.db().connect() as conn:
            return int(conn.execute(select(func.count()).select_from(UptimeSlots)).scalar_one())

    def stop(self) -> None:
        for a in self.agents:
            if a.poll() is None:
                a.send_signal(signal.SIGINT)
        for a in self.agents:
            try:
                a.wait(timeout=10)
            except subprocess.TimeoutExpired:
                a.kill()
        for c in self.coordinators:
            c.stop()


@contextmanager
def sqlite_network_of(tmp_path: Path, kind: type[Coordinator] = Coordinator) -> Iterator[Network]:
    """One migrated coordinator of `kind` on SQLite, started; stopped with its agents."""
    port = free_port()
    c = kind(
        f"sqlite:///{tmp_path}/net.db", f"http://127.0.0.1:{port}", port, free_port(), tmp_path
    )
    subprocess.run([GPUNET, "server", "migrate"], env=c.env(), check=True, capture_output=True)
    net = Network(tmp_path, [c])
    c.start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def sqlite_network(tmp_path: Path) -> Iterator[Network]:
    with sqlite_network_of(tmp_path) as net:
        yield net


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def rollcall_all(
    net: Network, coordinator: Coordinator, expected: int, *, since: dt.datetime,
    back: int | None = None,
) -> float:
    """Once every agent is back in a session (joined after `since`), challenge every
    device at once; seconds until each has passed a proof through the channel. `back`:
    how many agents had to reconnect (all `expected` unless said otherwise). (A
    roll-call an agent misses while it reconnects is a failure like any lapsed one, so an
    operator calls the roll once agents are back; the scheduler's are random.)
    """
    rejoin = expected if back is None else back
    wait_for(f"{rejoin} agents back in session", lambda: net.seen_since(since) >= rejoin, 30)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    coordinator.cli("admin", "rollcall", "--fraction", "1")
    return wait_for(
        f"{expected} devices back and proven", lambda: net.passed_since(start) >= expected, 30
    )


def test_three_agents_survive_a_coordinator_crash_and_a_key_rotation(
    sqlite_network: Network,
) -> None:
    net = sqlite_network
    control = f"127.0.0.1:{net.first.control_port}"
    for _ in range(3):
        net.add_agent(control)
    wait_for(
        "all three devices verified through the real protocol",
        lambda: sorted(net.devices().values()) == ["verified"] * 3,
        60,
    )
    wait_for("heartbeats reach the uptime ledger", lambda: net.uptime_rows() >= 3, 30)
    identities = net.devices()
    uptime_before = net.uptime_rows()
    # Crash between proofs (a crash mid-proof is a missed check: see docs/proof-of-gpu.md).
    wait_for("no proof in flight", lambda: net.outstanding() == 0, 30)

    restarted = dt.datetime.now(dt.UTC)
    net.first.kill()
    net.first.start()
    # Every agent is back within 30 seconds: all answer a roll-call over the channel.
    rollcall_all(net, net.first, 3, since=restarted)
    assert net.devices() == identities  # same devices, all still verified
    assert net.uptime_rows() >= uptime_before

    # A key rotated while the agent runs; the next session uses the new key.
    out = subprocess.run(
        [GPUNET, "worker", "rotate-key"],
        env={**net.first.env(), "GPUNET_HOME": str(net.homes[0])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "new key in use" in out.stdout, out.stdout + out.stderr
    wait_for("no proof in flight", lambda: net.outstanding() == 0, 30)
    restarted = dt.datetime.now(dt.UTC)
    net.first.kill()
    net.first.start()
    rollcall_all(net, net.first, 3, since=restarted)
    assert net.devices() == identities
    assert all(a.poll() is None for a in net.agents)


@pytest.fixture
def postgres_replicas(tmp_path: Path, postgres_url: str) -> Iterator[Network]:
    db = Database(postgres_url)
    _reset_postgres(db)
    db.dispose()
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    a_port, b_port = free_port(), free_port()
    public = f"http://127.0.0.1:{a_port}"
    a = Coordinator(url, public, a_port, free_port(), tmp_path)
    b = Coordinator(url, public, b_port, free_port(), tmp_path)
    net = Network(tmp_path, [a, b])
    a.start()
    b.start()
    yield net
    net.stop()


def test_two_replicas_on_postgresql_serve_the_same_agents(postgres_replicas: Network) -> None:
    net = postgres_replicas
    a, b = net.coordinators
    net.add_agent(f"127.0.0.1:{a.control_port},127.0.0.1:{b.control_port}")
    net.add_agent(f"127.0.0.1:{b.control_port},127.0.0.1:{a.control_port}")
    wait_for(
        "both devices verified", lambda: sorted(net.devices().values()) == ["verified"] * 2, 60
    )
    rollcall_all(net, b, 2, since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    wait_for("no proof in flight", lambda: net.outstanding() == 0, 30)
    # One replica dies: its agents move to the other, which serves them as before.
    died = dt.datetime.now(dt.UTC)
    a.kill()
    rollcall_all(net, b, 2, since=died, back=1)  # the agent that was on `a`
    assert sorted(net.devices().values()) == ["verified"] * 2
