"""Crashes, for real: a coordinator process killed with SIGKILL while it ingests signed
heartbeats loses at most one flush interval of uptime, and an epoch close killed with
SIGKILL mid-transaction leaves no payout, doubled or lost, once it is run again.

One-second slots and ten-second epochs keep the test short; the code paths are the
production ones (`gpunet server run`, `gpunet rewards close`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gpunet.core import signing
from gpunet.core.rewards import emission_for_epoch
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Device, UptimeSlots
from gpunet.server.services import proofs
from gpunet.server.services.reward_config import load_config
from gpunet.server.services.uptime import CHUNK_SLOTS
from gpunet.server.settings import Settings
from tests.integration.conftest import Net, hardware

pytestmark = pytest.mark.slow
FLUSH_S = 0.5
SLOTS_PER_EPOCH = 10  # ten-second epochs of one-second slots (the env below)
GPUNET = [str(Path(sys.executable).parent / "gpunet")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GPUNET_DATABASE_URL": f"sqlite:///{tmp_path}/crash.db",
        "GPUNET_SECRET_KEY": "crash-test-secret-" + "z" * 32,
        "GPUNET_ARGON2_MEMORY_KIB": "1024",
        "GPUNET_ARGON2_TIME_COST": "1",
        "GPUNET_BACKGROUND_JOBS": "true",
        "GPUNET_UPTIME_FLUSH_S": str(FLUSH_S),
        "GPUNET_REWARDS_SLOT_SECONDS": "1",
        "GPUNET_REWARDS_EPOCH_SECONDS": "10",
        "GPUNET_REWARDS_SETTLE_S": "1",
        "GPUNET_REWARDS_CLOSE_TICK_S": "3600",  # closes are run by the test itself
    }


class Coordinator:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*GPUNET, "server", "run", "--port", str(self.port), "--control-port", "0"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("coordinator did not start")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def coordinator(env: dict[str, str]) -> Iterator[Coordinator]:
    subprocess.run([*GPUNET, "server", "migrate"], env=env, check=True, capture_output=True)
    c = Coordinator(env)
    yield c
    if c.proc is not None:
        c.proc.kill()
        c.proc.wait()


def _enroll_verified(c: Coordinator, db: Database) -> tuple[int, signing.DeviceSigner]:
    email, password = "crash@example.com", "correct horse battery"
    with httpx.Client(base_url=c.url) as h:
        assert h.post("/api/v1/accounts", json={"email": email, "password": password}).is_success
        tok = h.post("/api/v1/auth/token", json={"email": email, "password": password}).json()
        auth = {"Authorization": f"Bearer {tok['access_token']}"}
        h.patch("/api/v1/account", json={"wallet_address": "wallet-crash-01"}, headers=auth)
        code = h.post("/api/v1/enrollment-codes", json={"max_devices": 1}, headers=auth).json()
        body, keys = Net.enroll_body(code["code"], [hardware()])
        r = h.post("/api/v1/enroll", json=body)
        assert r.status_code == 201, r.text
        public_id = r.json()["devices"][0]["device_id"]
    with db.transaction() as s:
        d = s.execute(select(Device).where(Device.public_id == public_id)).scalar_one()
        d.profile = "h100-sxm"
        import datetime as dt

        from gpunet.core.pog import Success

        proofs.apply_verdict(s, d, Success(), now=dt.datetime.now(dt.UTC),
                             policy=proofs.ProofPolicy())
        return d.id, signing.DeviceSigner(public_id, keys[0])


def _beat(c: Coordinator, signer: signing.DeviceSigner) -> tuple[int, float] | None:
    """One signed heartbeat: (the global slot the coordinator put it in, the time it was
    acknowledged), or None when it was refused or not counted."""
    raw = b"{}"
    auth = signer.authorization("POST", "/api/v1/worker/heartbeat", raw, int(time.time()))
    try:
        r = httpx.post(c.url + "/api/v1/worker/heartbeat", content=raw, timeout=5,
                       headers={"Authorization": auth, "Content-Type": "application/json"})
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or not r.json()["counted"]:
        return None
    body = r.json()
    return body["epoch"] * SLOTS_PER_EPOCH + body["slot"], time.time()


def _stored_slots(db: Database) -> set[int]:
    with db.read() as s:
        rows = s.execute(select(UptimeSlots.chunk, UptimeSlots.bits)).all()
    return {c * CHUNK_SLOTS + i for c, bits in rows for i in range(CHUNK_SLOTS) if bits >> i & 1}


def _run_beats(c: Coordinator, signer: signing.DeviceSigner, seconds: float) -> dict[int, float]:
    acked: dict[int, float] = {}  # global slot -> last acknowledged heartbeat time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = _beat(c, signer)
        if got is not None:
            acked[got[0]] = got[1]
        time.sleep(0.1)
    return acked


def test_sigkill_loses_at_most_one_flush_interval_and_closes_pay_once(
    coordinator: Coordinator, env: dict[str, str]
) -> None:
    settings = Settings(database_url=env["GPUNET_DATABASE_URL"], rewards_slot_seconds=1,
                        rewards_epoch_seconds=10, rewards_settle_s=1, uptime_flush_s=FLUSH_S)
    from gpunet.core.pog import default_catalog

    config = load_config(settings, default_catalog())
    genesis = config.schedule.clock.genesis
    db = Database(env["GPUNET_DATABASE_URL"])
    try:
        coordinator.start()
        _device, signer = _enroll_verified(coordinator, db)
        acked = _run_beats(coordinator, signer, 4.0)
        killed_at = time.time()
        coordinator.stop(signal.SIGKILL)
        stored = _stored_slots(db)
        lost = {s for s in acked if s not in stored}
        assert len(acked) >= 3
        # Whatever was acknowledged more than one flush interval (plus the flush's own
        # duration) before the kill is in the database.
        assert all(killed_at - acked[s] <= FLUSH_S + 0.5 for s in lost), (lost, killed_at)
        assert len(lost) <= FLUSH_S + 2
        # Restart, beat on, and stop cleanly: the final flush keeps everything.
        coordinator.start()
        acked2 = _run_beats(coordinator, signer, 2.5)
        coordinator.stop(signal.SIGTERM)
        assert set(acked2) <= _stored_slots(db)

        # Kill an epoch close mid-transaction (payout rows written, not committed).
        epochs = sorted({s // 10 for s in [*acked, *acked2]})
        time.sleep(max(0.0, genesis + (epochs[-1] + 1) * 10 + 1.5 - time.time()))
        dying = (
            "import os, signal\n"
            "from gpunet.server.services import rewards\n"
            "real = rewards._insert_payouts\n"
            "def die(session, epoch, snap):\n"
            "    real(session, epoch, snap)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "rewards._insert_payouts = die\n"
            "from gpunet.cli.main import cli\n"
            f"cli(['rewards', 'close', '--epoch', '{epochs[0]}'])\n"
        )
        killed = subprocess.run([sys.executable, "-c", dying], env=env, capture_output=True)
        assert killed.returncode == -signal.SIGKILL
        shown = subprocess.run([*GPUNET, "rewards", "show", str(epochs[0])], env=env,
                               capture_output=True, text=True)
        assert shown.returncode == 1 and "not closed" in shown.stderr
        for _ in range(2):  # the re-run pays; a second re-run changes nothing
            done = subprocess.run([*GPUNET, "rewards", "close", "--all-due"], env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        for e in epochs:
            out = subprocess.run([*GPUNET, "rewards", "show", str(e), "--payouts"], env=env,
                                 capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            data: dict[str, Any] = json.loads(out.stdout)
            emission = emission_for_epoch(config.schedule, e)
            assert int(data["paid"]) == emission == sum(map(int, data["payouts"].values()))
            assert list(data["payouts"]) == ["wallet-crash-01"]
    finally:
        db.dispose()
