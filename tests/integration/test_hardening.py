"""Issue 8's findings, each pinned: inputs the code cannot represent get a 422 (never a
500), strict integers, every response counted in /metrics (5xx included), security
headers, and the documented 413 for a chunked body over the limit."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel

from gpunet.core.models import HardwareClaim
from gpunet.server.api import schemas
from tests.integration.conftest import Net, hardware


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


# -- strict integers and booleans -----------------------------------------------------


def _request_models() -> list[type[BaseModel]]:
    """Every request body model, and every model nested in one."""
    found: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [*schemas.Request.__subclasses__(), HardwareClaim]
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        todo.extend(model.__subclasses__())
        for f in model.model_fields.values():
            todo.extend(_models_in(f.annotation))
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _plain_types(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    return {annotation} if not args else {t for a in args for t in _plain_types(a)}


def test_every_integer_and_boolean_in_a_request_is_strict() -> None:
    lax = [
        f"{model.__name__}.{name}"
        for model in _request_models()
        for name, f in model.model_fields.items()
        if _plain_types(f.annotation) & {int, bool}
        and not any(getattr(m, "strict", False) for m in f.metadata)
    ]
    assert not lax, f"not strict: {lax}"


def test_vram_true_is_refused(net: Net) -> None:
    owner = net.register()
    body, _keys = net.enroll_body(net.code(owner), [hardware()])
    body["devices"][0]["hardware"]["vram_mib"] = True
    r = net.client.post("/api/v1/enroll", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["fields"][0]["loc"][-1] == "vram_mib"


@pytest.mark.parametrize("value", [True, "8", 8.0])
def test_max_devices_takes_only_an_integer(net: Net, value: object) -> None:
    owner = net.register()
    r = net.client.post(
        "/api/v1/enrollment-codes", json={"max_devices": value}, headers=owner.headers
    )
    assert r.status_code == 422, r.text
