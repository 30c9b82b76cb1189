"""Operators' tools: audit chain checks, blocks, per-address limits, metrics, settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select, update

from gpunet.cli.main import cli
from gpunet.core.clock import FrozenClock
from gpunet.server.app import create_app
from gpunet.server.db import migrate
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import AuditRecord, Block, Device, RateCounter
from gpunet.server.services.ratelimit import address_key
from gpunet.server.settings import Settings
from tests.integration.conftest import Net, hardware, make_settings


def run_cli(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"GPUNET_DATABASE_URL": database_url})


def client_from(net: Net, address: str, **overrides: Any) -> TestClient:
    settings = make_settings(str(net.settings.database_url), **overrides)
    app = create_app(settings, database=net.database, clock=net.clock)
    return TestClient(app, client=(address, 40000))


def test_audit_verify_detects_an_edited_record(net: Net, database_url: str) -> None:
    owner = net.register()
    net.enroll(owner, count=2)
    assert run_cli(database_url, "admin", "audit", "verify").exit_code == 0
    with net.database.transaction() as s:
        victim = s.execute(
            select(AuditRecord).order_by(AuditRecord.id).offset(2).limit(1)
        ).scalar_one()
        s.execute(
            update(AuditRecord).where(AuditRecord.id == victim.id).values(after='{"model":"H200"}')
        )
    result = run_cli(database_url, "admin", "audit", "verify")
    assert result.exit_code == 1
    assert f"at record {victim.id}" in result.output


def test_audit_verify_detects_a_deleted_tail(net: Net, database_url: str) -> None:
    net.enroll(net.register())
    with net.database.transaction() as s:
        last = s.execute(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(1)).scalar_one()
        s.delete(last)
    result = run_cli(database_url, "admin", "audit", "verify")
    assert result.exit_code == 1
    assert "missing" in result.output


def test_address_block_is_precise_reversible_and_audited(net: Net, database_url: str) -> None:
    owner = net.register()
    with client_from(net, "203.0.113.7") as bad, client_from(net, "203.0.113.8") as good:
        assert bad.get("/api/v1/explorer/stats").status_code == 200
        r = run_cli(database_url, "admin", "block", "address", "203.0.113.7", "--reason", "flood")
        assert r.exit_code == 0, r.output
        assert bad.get("/api/v1/explorer/stats").status_code == 403
        assert bad.get("/api/v1/account", headers=owner.headers).status_code == 403
        assert good.get("/api/v1/account", headers=owner.headers).status_code == 200
        with net.database.read() as s:
            block_id = s.execute(select(Block.id)).scalar_one()
        assert run_cli(database_url, "admin", "unblock", str(block_id)).exit_code == 0
        assert bad.get("/api/v1/explorer/stats").status_code == 200
    with net.database.read() as s:
        actions = (
            s.execute(select(AuditRecord.action).where(AuditRecord.entity_kind == "block"))
            .scalars()
            .all()
        )
    assert actions == ["block.add", "block.lift"]


def test_network_block_covers_the_range_only(net: Net, database_url: str) -> None:
    assert (
        run_cli(
            database_url, "admin", "block", "network", "198.51.100.0/24", "--reason", "botnet"
        ).exit_code
        == 0
    )
    with client_from(net, "198.51.100.200") as inside, client_from(net, "198.51.101.1") as outside:
        assert inside.get("/api/v1/explorer/stats").status_code == 403
        assert outside.get("/api/v1/explorer/stats").status_code == 200


def test_wholesale_blocks_are_refused(net: Net, database_url: str) -> None:
    for value in ("0.0.0.0/0", "10.0.0.0/8", "::/0"):
        r = run_cli(database_url, "admin", "block", "network", value, "--reason", "panic")
        assert r.exit_code == 2
        assert "wholesale" in r.output
    with net.database.read() as s:
        assert s.execute(select(Block)).first() is None


def test_principal_block_stops_that_principal_only(net: Net, database_url: str) -> None:
    a, b = net.register(), net.register()
    [da] = net.enroll(a)
    [db] = net.enroll(b)
    r = run_cli(
        database_url,
        "admin",
        "block",
        "principal",
        f"device:{da.device_id}",
        "--reason",
        "spoofing",
    )
    assert r.exit_code == 0, r.output
    assert net.signed(da, "GET", "/api/v1/worker/device").status_code == 403
    assert net.signed(db, "GET", "/api/v1/worker/device").status_code == 200
    assert net.client.get("/api/v1/devices", headers=a.headers).status_code == 200


def test_enrollment_attempts_from_one_address_are_limited(net: Net) -> None:
    owner = net.register()
    limited = {"address_enrollments_per_window": 5}
    with (
        client_from(net, "192.0.2.50", **limited) as flood,
        client_from(net, "192.0.2.51", **limited) as honest,
    ):
        # A genuine code with a proof that does not match: refused, but counted.
        bad, _ = Net.enroll_body(net.code(owner, 1), [hardware()])
        bad["devices"][0]["hardware"]["model"] = "H200"
        statuses = [flood.post("/api/v1/enroll", json=bad).status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        body, _ = Net.enroll_body(net.code(owner, 1), [hardware()])
        # The flooding address stays limited even with a valid code; others are unaffected.
        assert flood.post("/api/v1/enroll", json=body).status_code == 429
        assert honest.post("/api/v1/enroll", json=body).status_code == 201


def test_fabricated_codes_are_refused_before_any_database_work(net: Net) -> None:
    with client_from(net, "192.0.2.60") as flood:
        fabricated, _ = Net.enroll_body("gpn-enr-" + "b" * 32, [hardware()])
        for _ in range(50):
            r = flood.post("/api/v1/enroll", json=fabricated)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthenticated"
        metrics = flood.get("/metrics").text
    with net.database.read() as s:
        assert s.execute(select(RateCounter)).first() is None
    assert (
        'gpunet_auth_failures_total{endpoint="/api/v1/enroll",principal="enrollment"} 50.0'
        in metrics
    )


def test_metrics_count_requests_writes_and_auth_failures(net: Net) -> None:
    owner = net.register()
    [dev] = net.enroll(owner)
    net.signed(dev, "PATCH", "/api/v1/worker/device", {"os_name": "Linux"})
    net.client.get("/api/v1/account", headers={"Authorization": "Bearer nonsense"})
    text = net.client.get("/metrics").text
    assert 'gpunet_writes_total{endpoint="/api/v1/worker/device",principal="device"} 1.0' in text
    assert 'gpunet_auth_failures_total{endpoint="/api/v1/account",principal="owner"} 1.0' in text
    assert 'gpunet_requests_total{endpoint="/api/v1/enroll",method="POST",' in text


def test_production_refuses_placeholder_secret() -> None:
    with pytest.raises(ValidationError, match="GPUNET_SECRET_KEY"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="GPUNET_SECRET_KEY"):
        Settings(environment="production", secret_key="short")
    ok = Settings(environment="production", secret_key="k" * 40)
    assert not ok.development


def test_migrations_go_down_and_up(database: Database) -> None:
    migrate.downgrade(database.engine, "base")
    assert migrate.current_revision(database.engine) is None
    migrate.upgrade(database.engine)
    assert migrate.current_revision(database.engine) == migrate.head_revision()


def test_migrations_match_the_tables(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gpunet.server.db.tables import Base

    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@pytest.fixture
def replicas(
    database: Database, database_url: str, clock: FrozenClock
) -> Iterator[tuple[Net, Net]]:
    settings = make_settings(database_url)
    one = Database(database_url)
    two = Database(database_url)
    with (
        TestClient(create_app(settings, database=one, clock=clock)) as c1,
        TestClient(create_app(settings, database=two, clock=clock)) as c2,
    ):
        yield Net(c1, clock, one, settings), Net(c2, clock, two, settings)
    one.dispose()
    two.dispose()


def test_two_replicas_behave_as_one(replicas: tuple[Net, Net]) -> None:
    r1, r2 = replicas
    owner = r1.register()
    # A token from one replica works on the other, and a logout on one ends it on both.
    assert r2.client.get("/api/v1/account", headers=owner.headers).status_code == 200
    [dev] = r1.enroll(owner)
    import json

    from gpunet.core.clock import unix

    raw = json.dumps({"os_name": "Linux"}).encode()
    auth = dev.signer.authorization("PATCH", "/api/v1/worker/device", raw, unix(r1.clock.now()))
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    assert r1.client.patch("/api/v1/worker/device", content=raw, headers=headers).status_code == 200
    # The replayed request reaches the other replica: still refused.
    assert r2.client.patch("/api/v1/worker/device", content=raw, headers=headers).status_code == 401
    assert r1.client.post("/api/v1/auth/logout", headers=owner.headers).status_code == 204
    assert r2.client.get("/api/v1/account", headers=owner.headers).status_code == 401
    with r2.database.read() as s:
        assert s.execute(select(Device.os_name)).scalar_one() == "Linux"


def test_prune_forgets_only_expired_nonces_and_counters(net: Net) -> None:
    from gpunet.server.background.prune import prune_once
    from gpunet.server.db.tables import DeviceNonce

    [dev] = net.enroll(net.register())
    assert net.signed(dev, "GET", "/api/v1/worker/device").status_code == 200
    assert prune_once(net.database, net.clock) == (0, 0)
    net.clock.advance(2 * net.settings.device_signature_window_s + 1)
    assert net.signed(dev, "GET", "/api/v1/worker/device").status_code == 200
    nonces, _ = prune_once(net.database, net.clock)
    assert nonces == 1
    with net.database.read() as s:
        assert len(s.execute(select(DeviceNonce)).scalars().all()) == 1
    net.clock.advance(3700)
    _, counters = prune_once(net.database, net.clock)
    assert counters >= 1
    with net.database.read() as s:
        assert s.execute(select(RateCounter)).first() is None


def test_redis_counters_are_shared_by_replicas(net: Net) -> None:
    import os
    import uuid

    url = os.environ.get("GPUNET_TEST_REDIS_URL")
    if not url:
        pytest.fail("GPUNET_TEST_REDIS_URL is not set: run the suite with `make test`")
    owner = net.register()
    # A fresh key space per run (the counter keys include the address, and an IPv6
    # address counts by its /64), so parallel and repeated runs against one Redis
    # never meet.
    address = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"
    limited = {"redis_url": url, "address_enrollments_per_window": 4, "rate_window_s": 3600}
    with client_from(net, address, **limited) as one, client_from(net, address, **limited) as two:
        bad, _ = Net.enroll_body(net.code(owner, 1), [hardware()])
        bad["devices"][0]["hardware"]["model"] = "H200"
        statuses = [
            c.post("/api/v1/enroll", json=bad).status_code for c in (one, two, one, two, one)
        ]
    assert statuses == [401, 401, 401, 401, 429]
    with net.database.read() as s:
        keys = s.execute(select(RateCounter.key)).scalars().all()
    counted = str(address_key(address))
    assert not [k for k in keys if counted in k]  # counted in Redis, not the database


def test_blocking_an_owner_blocks_their_devices_too(net: Net, database_url: str) -> None:
    from gpunet.server.db.tables import Owner

    a, b = net.register(), net.register()
    [da] = net.enroll(a)
    [db] = net.enroll(b)
    with net.database.read() as s:
        owner_a = s.execute(select(Owner.id).where(Owner.email == a.email)).scalar_one()
    r = run_cli(
        database_url, "admin", "block", "principal", f"owner:{owner_a}", "--reason", "farming fakes"
    )
    assert r.exit_code == 0, r.output
    assert net.signed(da, "GET", "/api/v1/worker/device").status_code == 403
    assert net.client.get("/api/v1/devices", headers=a.headers).status_code == 403
    assert net.signed(db, "GET", "/api/v1/worker/device").status_code == 200
