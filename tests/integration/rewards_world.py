"""Helpers for the rewards tests: verify devices, send heartbeats, close epochs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from gpunet.core.pog import Failure, FailureReason, Success
from gpunet.core.rewards import EpochClock
from gpunet.server.api.deps import AppState
from gpunet.server.db.tables import Device, Owner
from gpunet.server.services import proofs, rewards
from tests.integration.conftest import DeviceHandle, Net, OwnerHandle

PROFILE = "h100-sxm"


def state(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    return st


def clock_of(net: Net) -> EpochClock:
    return state(net).rewards.schedule.clock


def at(net: Net, epoch: int, slot: int, second: int = 0) -> dt.datetime:
    c = clock_of(net)
    return dt.datetime.fromtimestamp(
        c.epoch_start(epoch) + slot * c.slot_seconds + second, dt.UTC
    )


def move_to(net: Net, when: dt.datetime) -> None:
    delta = (when - net.clock.now()).total_seconds()
    assert delta >= 0, "the frozen clock only goes forward"
    net.clock.advance(delta)


def verdict(
    net: Net, handle: DeviceHandle, passed: bool, when: dt.datetime, *, rollcall: bool = False
) -> None:
    """A proof verdict at `when`, through the one function that applies verdicts."""
    with net.database.transaction() as s:
        d = s.execute(select(Device).where(Device.public_id == handle.device_id)).scalar_one()
        d.profile = d.profile or PROFILE
        v: Any = Success() if passed else Failure(FailureReason.WRONG_RESULT, "test")
        proofs.apply_verdict(s, d, v, now=when, policy=proofs.ProofPolicy(), rollcall=rollcall)


def heartbeat(net: Net, handle: DeviceHandle) -> Any:
    r = net.signed(handle, "POST", "/api/v1/worker/heartbeat", {})
    assert r.status_code == 200, r.text
    return r.json()


def set_wallet(net: Net, owner: OwnerHandle, wallet: str) -> None:
    r = net.client.patch("/api/v1/account", json={"wallet_address": wallet}, headers=owner.headers)
    assert r.status_code == 200, r.text


def record(net: Net, handle: DeviceHandle, when: dt.datetime) -> None:
    """A heartbeat straight into the recorder (what the control channel does)."""
    state(net).uptime.record(device_id(net, handle), when)


def device_id(net: Net, handle: DeviceHandle) -> int:
    with net.database.read() as s:
        return int(
            s.execute(select(Device.id).where(Device.public_id == handle.device_id)).scalar_one()
        )


def owner_id(net: Net, owner: OwnerHandle) -> int:
    with net.database.read() as s:
        return int(s.execute(select(Owner.id).where(Owner.email == owner.email)).scalar_one())


def flush(net: Net) -> int:
    return state(net).uptime.flush(net.database)


def close(net: Net, epoch: int) -> rewards.Closed:
    st = state(net)
    return rewards.close_epoch(net.database, st.rewards, epoch, now=net.clock.now())


def payouts(net: Net, epoch: int) -> dict[str, int]:
    with net.database.read() as s:
        return dict(rewards.all_payouts(s, epoch))


def headers(net: Net, owner: OwnerHandle) -> dict[str, str]:
    """A fresh access token (the frozen clock runs past the 15-minute ones)."""
    r = net.client.post(
        "/api/v1/auth/token", json={"email": owner.email, "password": owner.password}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
