"""`gpunet worker status` tells the truth (issue 12, finding 3): "last heartbeat" is the
last heartbeat the coordinator received, and asking for status is not a sign of life."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gpunet.server.services.uptime import HEARD_EVERY
from gpunet.server.state import AppState
from tests.integration.conftest import DeviceHandle, Net


def _state(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    return st


def _parse(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _status(net: Net, dev: DeviceHandle) -> dict[str, Any]:
    r = net.signed(dev, "GET", "/api/v1/worker/device")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _owner_last_seen(net: Net, dev: DeviceHandle) -> Any:
    o = dev.owner  # signs in afresh: the test's clock outruns access tokens
    t = net.client.post("/api/v1/auth/token", json={"email": o.email, "password": o.password})
    headers = {"Authorization": f"Bearer {t.json()['access_token']}"}
    r = net.client.get("/api/v1/devices", headers=headers)
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    return next(d["last_seen_at"] for d in rows if d["device_id"] == dev.device_id)


def _explorer_last_seen(net: Net, dev: DeviceHandle) -> Any:
    return net.client.get(f"/api/v1/explorer/devices/{dev.device_id}").json()["last_seen_at"]


def test_a_stopped_agents_status_shows_its_last_heartbeat_not_the_request(net: Net) -> None:
    [dev] = net.enroll(net.register(), agent_started=False)
    assert _status(net, dev)["last_heartbeat_at"] is None  # never heard: "never"

    beat_at = net.clock.now()
    assert net.signed(dev, "POST", "/api/v1/worker/heartbeat").status_code == 200
    _state(net).uptime.flush(net.database)
    assert _parse(_status(net, dev)["last_heartbeat_at"]) == beat_at

    # The agent stops. An hour later its owner asks: the answer is the old heartbeat.
    net.clock.advance(3600)
    owner_before, explorer_before = _owner_last_seen(net, dev), _explorer_last_seen(net, dev)
    for _ in range(3):
        status = _status(net, dev)
        _state(net).uptime.flush(net.database)
    assert _parse(status["last_heartbeat_at"]) == beat_at
    assert _parse(status["last_seen_at"]) == beat_at
    # ... and asking moved "last seen" nowhere: not in the owner's list, not in public.
    assert _owner_last_seen(net, dev) == owner_before
    assert _explorer_last_seen(net, dev) == explorer_before
    assert _parse(owner_before) == beat_at


def test_heartbeats_move_the_last_heartbeat_at_most_every_heard_every(net: Net) -> None:
    [dev] = net.enroll(net.register(), agent_started=False)
    recorder = _state(net).uptime
    first = net.clock.now()
    net.signed(dev, "POST", "/api/v1/worker/heartbeat")
    recorder.flush(net.database)
    # A beat within HEARD_EVERY of the written one costs no row update.
    net.clock.advance(HEARD_EVERY.total_seconds() / 2)
    net.signed(dev, "POST", "/api/v1/worker/heartbeat")
    recorder.flush(net.database)
    assert _parse(_status(net, dev)["last_heartbeat_at"]) == first
    # Past it, the newest beat is written.
    net.clock.advance(HEARD_EVERY.total_seconds())
    later = net.clock.now()
    net.signed(dev, "POST", "/api/v1/worker/heartbeat")
    recorder.flush(net.database)
    assert _parse(_status(net, dev)["last_heartbeat_at"]) == later
    assert _parse(_owner_last_seen(net, dev)) is not None
