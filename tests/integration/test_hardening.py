"""Issue 8's findings, each pinned: inputs the code cannot represent get a 422 (never a
500), strict integers, every response counted in /metrics (5xx included), security
headers, and the documented 413 for a chunked body over the limit."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gpunet.cli import server as cli_server
from gpunet.core.clock import FrozenClock
from gpunet.core.models import HardwareClaim
from gpunet.server.admission import SHED_ENDPOINT
from gpunet.server.api import schemas
from gpunet.server.api.explorer import CACHE
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.metrics import Metrics
from gpunet.server.middleware import MAX_BODY_BYTES
from gpunet.server.services import explorer as explorer_service
from tests.integration.conftest import Net, hardware, make_settings


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


# -- every response counted, 5xx included ---------------------------------------------


def _app(database: Database, database_url: str, clock: FrozenClock, **settings: Any) -> FastAPI:
    return create_app(make_settings(database_url, **settings), database=database, clock=clock)


def test_a_failing_handler_is_a_500_in_the_error_shape_and_in_metrics(
    database: Database, database_url: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_session: object) -> object:
        raise RuntimeError("a bug in a service")

    monkeypatch.setattr(explorer_service, "totals", broken)
    app = _app(database, database_url, clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/v1/explorer/stats")
        assert r.status_code == 500
        assert r.json() == {
            "error": {"code": "internal", "message": "the server failed; this has been logged"}
        }
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        metrics = client.get("/metrics").text
    line = (
        'gpunet_requests_total{endpoint="/api/v1/explorer/stats",method="GET",'
        'principal="anonymous",status="500"} 1.0'
    )
    assert line in metrics, metrics
    # With the server's own exception handling (raise_server_exceptions), it still raises.
    with TestClient(app) as client, pytest.raises(RuntimeError, match="a bug in a service"):
        client.get("/api/v1/explorer/stats")


def test_a_refused_body_is_counted(net: Net) -> None:
    r = net.client.post("/api/v1/accounts", content=b"{}", headers={"content-length": "999999999"})
    assert r.status_code == 413
    metrics = net.client.get("/metrics").text
    assert 'endpoint="unmatched",method="POST",principal="anonymous",status="413"' in metrics


# -- /metrics for operators -------------------------------------------------------------


def test_metrics_token_restricts_the_scrape(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    app = _app(database, database_url, clock, metrics_token="m" * 32)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthenticated"
        ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert ok.status_code == 200
        assert "gpunet_requests_total" in ok.text


def test_metrics_are_closed_outside_development_unless_opened(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with TestClient(_app(database, database_url, clock, **PRODUCTION)) as client:
        r = client.get("/metrics")
        assert r.status_code == 403
        assert "GPUNET_METRICS_TOKEN" in r.json()["error"]["message"]
    opened = _app(database, database_url, clock, metrics_public=True, **PRODUCTION)
    with TestClient(opened) as client:
        assert client.get("/metrics").status_code == 200


# -- headers --------------------------------------------------------------------------

PRODUCTION: dict[str, Any] = {"environment": "production", "argon2_memory_kib": 19456}


def test_security_headers_on_every_response(net: Net) -> None:
    owner = net.register()
    for r in (
        net.client.get("/healthz"),
        net.client.get("/api/v1/explorer/stats"),
        net.client.get("/api/v1/explorer/nothing-here"),
        net.client.get("/api/v1/account", headers=owner.headers),
        net.client.post("/api/v1/accounts", json={}),
    ):
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert "strict-transport-security" not in r.headers  # development: plain HTTP
        assert "server" not in r.headers


def test_hsts_outside_development(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with TestClient(_app(database, database_url, clock, **PRODUCTION)) as client:
        for r in (client.get("/healthz"), client.get("/api/v1/explorer/stats")):
            assert r.headers["strict-transport-security"].startswith("max-age=")
            assert r.headers["x-content-type-options"] == "nosniff"


def test_cache_control(net: Net) -> None:
    owner = net.register()
    # The public explorer stays cacheable for anonymous readers...
    assert net.client.get("/api/v1/explorer/stats").headers["cache-control"] == CACHE
    # ...but nothing asked for with credentials is stored, nor what carries tokens.
    signed_in = net.client.get("/api/v1/explorer/stats", headers=owner.headers)
    assert signed_in.headers["cache-control"] == "no-store"
    assert (
        net.client.get("/api/v1/account", headers=owner.headers).headers["cache-control"]
        == "no-store"
    )
    tokens = net.client.post(
        "/api/v1/auth/token", json={"email": owner.email, "password": owner.password}
    )
    assert tokens.status_code == 200
    assert tokens.headers["cache-control"] == "no-store"
    (device,) = net.enroll(owner, 1)
    worker = net.signed(device, "GET", "/api/v1/worker/device")
    assert worker.status_code == 200, worker.text
    assert worker.headers["cache-control"] == "no-store"


def test_server_run_sends_no_server_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(cli_server, "_require_schema", lambda _settings: None)
    result = CliRunner().invoke(cli_server.run, ["--control-port", "0"])
    assert result.exit_code == 0, result.output
    assert seen["server_header"] is False


# -- a chunked body over the limit --------------------------------------------------------


def _chunks(total: int, piece: int = 16 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(piece, total - sent)
        sent += piece


@pytest.mark.parametrize("path", ["/api/v1/accounts", "/api/v1/enroll"])
def test_a_chunked_body_over_the_limit_gets_the_413_shape(net: Net, path: str) -> None:
    r = net.client.post(
        path, content=_chunks(MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text
    assert r.json() == {
        "error": {
            "code": "too_large",
            "message": f"request bodies are limited to {MAX_BODY_BYTES} bytes",
        }
    }
    assert r.headers["x-content-type-options"] == "nosniff"
    # One under the limit is read (and refused for what it is, not for its size).
    ok = net.client.post(
        path, content=_chunks(MAX_BODY_BYTES), headers={"content-type": "application/json"}
    )
    assert ok.status_code == 422, ok.text


def test_the_shipped_alert_rules_watch_the_metric_the_middleware_writes() -> None:
    rules_file = Path(__file__).resolve().parents[2] / "deploy/prometheus/gpunet-alerts.yml"
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert {"GpunetInternalError", "GpunetServerErrorRate", "GpunetShedding"} <= set(rules)
    for name in ("GpunetInternalError", "GpunetServerErrorRate"):
        expr = rules[name]["expr"]
        assert "gpunet_requests_total" in expr and "status" in expr, expr
    # Shedding is reported on its own, under the endpoint admission control writes.
    assert f'endpoint!="{SHED_ENDPOINT}"' in rules["GpunetServerErrorRate"]["expr"]
    assert f'endpoint="{SHED_ENDPOINT}"' in rules["GpunetShedding"]["expr"]
    # The labels the rules group and filter by are the counter's.
    assert Metrics().requests._labelnames == ("endpoint", "method", "status", "principal")
