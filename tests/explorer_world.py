"""A small network for the explorer's tests: two owners with recognisable private
values, devices in every interesting state, proofs, an hour of uptime, one closed epoch
and hourly snapshots. Shared by tests/integration (both databases) and tests/browser."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from sqlalchemy import select, text, update

from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import AuthSession, Challenge, Device, Owner, UptimeSlots
from gpunet.server.security.principal import Principal
from gpunet.server.services import explorer_history, rewards
from gpunet.server.services.device_status import switch_device_status
from gpunet.server.state import AppState
from tests.integration.conftest import Net, OwnerHandle

# Recognisable owner ids (SQLite continues after the largest; PostgreSQL after setval).
OWNER_ID_BASE = 7_318_290_000
ALPHA = ("canary.alpha.owner@example.com", "alpha canary password 1", "Alpha Canary Person")
BRAVO = ("canary.bravo.owner@example.com", "bravo canary password 2", "Bravo Canary Person")
WALLET_A = "wallet-alpha-canary-1"


@dataclass
class World:
    a: OwnerHandle
    b: OwnerHandle
    a_devices: list[str]
    b_devices: list[str]
    proven: str  # A's verified device with proofs on record
    epoch: int  # the closed epoch
    secrets: set[str] = field(default_factory=set)  # nothing of these may be public
    b_private: set[str] = field(default_factory=set)  # B's, for A's pages


def _recognisable_ids(net: Net) -> None:
    with net.database.transaction() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT setval('owners_id_seq', :v)"), {"v": OWNER_ID_BASE})
        else:
            s.execute(
                text("INSERT INTO owners (id, is_admin, created_at) VALUES (:i, 0, :t)"),
                {"i": OWNER_ID_BASE, "t": "2026-01-01 00:00:00.000000"},
            )


def _owner(net: Net, who: tuple[str, str, str], wallet: str | None) -> OwnerHandle:
    email, password, name = who
    owner = net.register(email, password)
    body = {"display_name": name, **({"wallet_address": wallet} if wallet else {})}
    r = net.client.patch("/api/v1/account", json=body, headers=owner.headers)
    assert r.status_code == 200, r.text
    return owner


def _verify(net: Net, st: AppState, ids: list[str], since: dt.datetime) -> None:
    with net.database.transaction() as s:
        # Enrolled a day before (the seed's history needs a device old enough to have it).
        s.execute(update(Device).values(created_at=since - dt.timedelta(days=1)))
        for d in s.execute(select(Device).where(Device.public_id.in_(ids))).scalars():
            claim_profile = "rtx-4090" if "4090" in d.model else "h100-sxm"
            switch_device_status(
                s, d, DeviceStatus.VERIFIED, reason="test", actor=Principal.system(), now=since
            )
            d.profile, d.last_pass_at, d.last_rollcall_pass_at = claim_profile, since, since


def _proofs(net: Net, device: str, now: dt.datetime) -> None:
    with net.database.transaction() as s:
        pk = s.execute(select(Device.id).where(Device.public_id == device)).scalar_one()
        for i, outcome in enumerate(["passed", "failed", "passed"]):
            issued = now - dt.timedelta(hours=3 - i, minutes=17)
            s.add(
                Challenge(
                    id=secrets.token_hex(16), device_id=pk, kind="spot", batch=f"b{i}",
                    profile="h100-sxm", body="{}", issued_at=issued, deadline=issued,
                    completed_at=issued + dt.timedelta(seconds=5), outcome=outcome,
                    reason="too_slow" if outcome == "failed" else None,
                    commit_elapsed_s=2.5 + i, verify_cpu_ms=40.0 + i,
                )
            )


def seed(net: Net, st: AppState) -> World:
    _recognisable_ids(net)
    a = _owner(net, ALPHA, WALLET_A)
    b = _owner(net, BRAVO, None)
    world_secrets = {ALPHA[0], ALPHA[1], ALPHA[2], BRAVO[0], BRAVO[1], BRAVO[2]}
    world_secrets |= {a.token, a.refresh_token, b.token, b.refresh_token}
    world_secrets |= {net.code(a), net.code(b)}  # unused enrollment codes
    a_devs = net.enroll(a, 3, host="canaryhostalpha0001")
    b_devs = net.enroll(b, 2, host="canaryhostbravo0002", model="NVIDIA GeForce RTX 4090",
                        vram_mib=24564)
    for i, d in enumerate(a_devs + b_devs):
        r = net.client.patch(f"/api/v1/devices/{d.device_id}", json={
            "label": f"canarylabel{i}x", "region": "eu-west" if i % 2 else "us-east"},
            headers=(d.owner or a).headers)
        assert r.status_code == 200, r.text
    now = net.clock.now()
    epoch = st.rewards.schedule.clock.epoch_index(now.timestamp()) - 2
    since = dt.datetime.fromtimestamp(st.rewards.schedule.clock.epoch_start(epoch), dt.UTC)
    since -= dt.timedelta(hours=1)
    _verify(net, st, [a_devs[0].device_id, a_devs[1].device_id, b_devs[0].device_id], since)
    with net.database.transaction() as s:
        suspended = s.execute(select(Device).where(Device.public_id == a_devs[2].device_id))
        row = suspended.scalar_one()
        for status in (DeviceStatus.VERIFIED, DeviceStatus.SUSPENDED):
            switch_device_status(s, row, status, reason="t", actor=Principal.system(), now=since)
        for dev in s.execute(select(Device).where(Device.status == "verified")).scalars():
            s.add(UptimeSlots(chunk=epoch, device_id=dev.id, bits=(1 << 60) - 1))
    _proofs(net, a_devs[0].device_id, now)
    rewards.close_epoch(st.database, st.rewards, epoch, now=now)
    current = explorer_history.period_of(now)
    with net.database.transaction() as s:
        for period in range(current - 4, current):
            explorer_history.take_snapshot(s, st.catalog, st.rewards.schedule.clock, period, now)
    with net.database.read() as s:
        for o in s.execute(select(Owner).where(Owner.email.is_not(None))).scalars():
            world_secrets |= {str(o.id), o.password_hash or ""}
        for auth in s.execute(select(AuthSession)).scalars():
            world_secrets |= {auth.id, auth.refresh_hash}
        b_private = set()
        for dev in s.execute(select(Device)).scalars():
            private = {dev.public_key, dev.gpu_uuid, dev.host_fingerprint, dev.label or ""}
            world_secrets |= private
            if dev.owner_id != s.execute(
                select(Owner.id).where(Owner.email == ALPHA[0])
            ).scalar_one():
                b_private |= private | {dev.public_id}
    world_secrets.discard("")
    return World(
        a, b, [d.device_id for d in a_devs], [d.device_id for d in b_devs],
        a_devs[0].device_id, epoch, world_secrets, b_private | {BRAVO[0], BRAVO[2]},
    )
