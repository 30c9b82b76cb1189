"""An in-process coordinator on each backend, and helpers that act as its users."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from gpunet.core import signing
from gpunet.core.clock import FrozenClock, unix
from gpunet.core.models import HardwareClaim
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.settings import Settings

_counter = iter(range(10**9))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": "test-secret-" + "x" * 40,
        "environment": "development",
        # Cheap argon2 for speed; production refuses these parameters.
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
        # Every test client calls from one address; the limit tests lower these again.
        "address_logins_per_window": 10_000,
        "address_enrollments_per_window": 10_000,
        "address_writes_per_window": 10_000,
        # Corpus tests send hundreds of wrong passwords for one owner from its own
        # (known) address; a lock-out would add its audit record mid-test. The
        # login-throttle tests set the thresholds they test.
        "login_lockout_after": 10_000,
        # Jobs run when a test calls them, never behind its back.
        "background_jobs": False,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class OwnerHandle:
    email: str
    password: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class DeviceHandle:
    device_id: str
    key: Ed25519PrivateKey
    claim: HardwareClaim
    owner: OwnerHandle | None = None

    @property
    def signer(self) -> signing.DeviceSigner:
        return signing.DeviceSigner(self.device_id, self.key)


def hardware(n: int | None = None, host: str = "host-fingerprint-0001", **kw: Any) -> HardwareClaim:
    n = next(_counter) if n is None else n
    values: dict[str, Any] = {
        "vendor": "nvidia",
        "model": "H100 SXM",
        "vram_mib": 81559,
        "gpu_uuid": f"GPU-{n:08x}-aaaa-bbbb-cccc-{n:012x}",
        "pci_bus_id": f"00000000:{n % 256:02x}:00.0",
        "driver_version": "550.54.15",
        "host_fingerprint": host,
    }
    values.update(kw)
    return HardwareClaim(**values)


@dataclass
class Net:
    """Drives the coordinator the way owners, agents and the public do."""

    client: TestClient
    clock: FrozenClock
    database: Database
    settings: Settings
    owners: list[OwnerHandle] = field(default_factory=list)

    def register(
        self, email: str | None = None, password: str = "correct horse battery"
    ) -> OwnerHandle:
        email = email or f"owner{next(_counter)}@example.com"
        r = self.client.post("/api/v1/accounts", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
        t = self.client.post("/api/v1/auth/token", json={"email": email, "password": password})
        assert t.status_code == 200, t.text
        owner = OwnerHandle(email, password, t.json()["access_token"], t.json()["refresh_token"])
        self.owners.append(owner)
        return owner

    def code(self, owner: OwnerHandle, max_devices: int = 8) -> str:
        r = self.client.post(
            "/api/v1/enrollment-codes", json={"max_devices": max_devices}, headers=owner.headers
        )
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    @staticmethod
    def enroll_body(
        code: str, claims: list[HardwareClaim]
    ) -> tuple[dict[str, Any], list[Ed25519PrivateKey]]:
        import hashlib

        keys = [Ed25519PrivateKey.generate() for _ in claims]
        digest = hashlib.sha256(code.encode()).digest()
        devices = []
        for key, claim in zip(keys, claims, strict=True):
            pub = signing.public_key_text(key.public_key())
            claim_json = claim.model_dump_json().encode()
            proof = key.sign(
                signing.enrollment_message(
                    code_digest=digest, public_key=pub, claim_json=claim_json
                )
            )
            devices.append(
                {
                    "public_key": pub,
                    "hardware": json.loads(claim_json),
                    "proof": signing.b64u(proof),
                }
            )
        return {"code": code, "devices": devices}, keys

    def enroll(
        self, owner: OwnerHandle, count: int = 1, *, agent_started: bool = True, **claim_kw: Any
    ) -> list[DeviceHandle]:
        """Enroll `count` devices; with `agent_started`, their agent has also been heard
        from since (as `gpunet worker run` is, right after enrolling), which is what makes
        a new device due for its first challenge."""
        claims = [hardware(**claim_kw) for _ in range(count)]
        body, keys = self.enroll_body(self.code(owner, max(count, 1)), claims)
        r = self.client.post("/api/v1/enroll", json=body)
        assert r.status_code == 201, r.text
        ids = [d["device_id"] for d in r.json()["devices"]]
        if agent_started:
            from sqlalchemy import update

            from gpunet.server.db.tables import Device

            with self.database.transaction() as s:
                s.execute(
                    update(Device)
                    .where(Device.public_id.in_(ids))
                    .values(last_seen_at=self.clock.now())
                )
        return [DeviceHandle(i, k, c, owner) for i, k, c in zip(ids, keys, claims, strict=True)]

    def signed(
        self,
        device: DeviceHandle,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: Ed25519PrivateKey | None = None,
        as_id: str | None = None,
        timestamp: int | None = None,
    ) -> Any:
        raw = b"" if body is None else json.dumps(body).encode()
        signer = signing.DeviceSigner(as_id or device.device_id, key or device.key)
        auth = signer.authorization(
            method, path, raw, timestamp if timestamp is not None else unix(self.clock.now())
        )
        return self.client.request(
            method,
            path,
            content=raw,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )


@pytest.fixture
def net(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    settings = make_settings(database_url)
    app = create_app(settings, database=database, clock=clock)
    with TestClient(app) as client:
        yield Net(client, clock, database, settings)


class OffsetClock:
    """The real clock moved by `offset` seconds: a coordinator whose clock is off."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)


@dataclass
class Live:
    url: str
    clock: OffsetClock


@pytest.fixture
def live_coordinator(database: Database, database_url: str) -> Iterator[Live]:
    """A coordinator serving HTTP on a free port, on the real clock (tokens really
    expire), for commands that talk to it as they would to any coordinator."""
    clock = OffsetClock()
    app = create_app(make_settings(database_url), database=database, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert time.monotonic() < deadline, "the coordinator did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Live(f"http://127.0.0.1:{port}", clock)
    server.should_exit = True
    thread.join(10)
