"""Heartbeat ingestion: no database row per heartbeat, idempotent OR-merging flushes that
replicas may run at once, nothing lost by a failed flush, and the signed heartbeat."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, func, select

from gpunet.core.rewards import EpochClock
from gpunet.server.background.uptime import uptime_flusher
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Device, UptimeSlots
from gpunet.server.services.uptime import CHUNK_SLOTS, UptimeRecorder, device_bitmap
from tests.integration.conftest import Net
from tests.integration.rewards_world import device_id, heartbeat, state, verdict

CLOCK = EpochClock(genesis=1_767_225_600)  # the packaged schedule's genesis
T0 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)  # an hour boundary: chunk-aligned


def _rows(db: Database) -> dict[tuple[int, int], int]:
    with db.read() as s:
        return {(c, d): b for c, d, b in s.execute(
            select(UptimeSlots.chunk, UptimeSlots.device_id, UptimeSlots.bits))}


class Statements:
    """Counts statements that touch uptime_slots, and how many parameter rows they carry."""

    def __init__(self, db: Database) -> None:
        self.calls = 0
        self.rows = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)
        self._db = db

    def _seen(self, _c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if "uptime_slots" in statement:
            self.calls += 1
            self.rows += len(params) if many else 1

    def close(self) -> None:
        event.remove(self._db.engine, "before_cursor_execute", self._seen)


def test_heartbeats_touch_no_database_until_a_batched_flush(database: Database) -> None:
    rec = UptimeRecorder(CLOCK)
    seen = Statements(database)
    try:
        # 200 devices, a heartbeat every 20 s for an hour: 36,000 heartbeats.
        for i in range(180):
            for dev in range(1, 201):
                rec.record(dev, T0 + dt.timedelta(seconds=20 * i))
        assert seen.calls == 0
        assert rec.pending() == 200
        assert rec.flush(database) == 200
        # One statement: an executemany of 200 rows (SQLite), or 200-element arrays (PG).
        assert seen.calls == 1
        assert seen.rows == (200 if database.dialect == "sqlite" else 1)
    finally:
        seen.close()
    rows = _rows(database)
    assert len(rows) == 200
    assert set(rows.values()) == {(1 << CHUNK_SLOTS) - 1}
    assert rec.flush(database) == 0  # nothing left
    # Beats in slots already written are not buffered again.
    rec.record(1, T0 + dt.timedelta(seconds=30))
    assert rec.pending() == 0


def test_flushes_are_idempotent_and_replicas_merge(database: Database, database_url: str) -> None:
    one, two = Database(database_url), Database(database_url)
    try:
        r1, r2 = UptimeRecorder(CLOCK), UptimeRecorder(CLOCK)
        for slot in range(0, 60, 2):
            r1.record(7, T0 + dt.timedelta(minutes=slot, seconds=5))
        for slot in range(0, 60, 3):
            r2.record(7, T0 + dt.timedelta(minutes=slot, seconds=50))
        r2.record(8, T0)
        r1.flush(one)
        r2.flush(two)
        want = {s for s in range(60) if s % 2 == 0 or s % 3 == 0}
        bits = _rows(database)
        chunk = CLOCK.global_slot(T0.timestamp()) // CHUNK_SLOTS
        assert bits[(chunk, 7)] == sum(1 << s for s in want)
        assert bits[(chunk, 8)] == 1
        # A replica that crashed after writing but before forgetting re-flushes the same
        # bits: nothing changes.
        again = UptimeRecorder(CLOCK)
        for slot in range(0, 60, 2):
            again.record(7, T0 + dt.timedelta(minutes=slot))
        again.flush(one)
        assert _rows(database) == bits
        with database.read() as s:
            first = CLOCK.global_slot(T0.timestamp())
            assert device_bitmap(s, 7, first, first + 60) == bits[(chunk, 7)]
    finally:
        one.dispose()
        two.dispose()


def test_a_failed_flush_keeps_the_bits(database: Database, tmp_path: Any) -> None:
    rec = UptimeRecorder(CLOCK)
    rec.record(3, T0)
    broken = Database(f"sqlite:///{tmp_path}/no-schema.db")  # no uptime_slots table
    with pytest.raises(Exception, match="uptime_slots"):
        rec.flush(broken)
    broken.dispose()
    rec.record(3, T0 + dt.timedelta(minutes=1))
    assert rec.pending() == 1
    assert rec.flush(database) == 1
    assert list(_rows(database).values()) == [0b11]


def test_the_flusher_flushes_each_pass_and_on_stop(database: Database) -> None:
    rec = UptimeRecorder(CLOCK)
    job = uptime_flusher(rec, database, interval_s=3600)
    rec.record(1, T0)
    job.run_once()
    assert len(_rows(database)) == 1
    rec.record(2, T0)  # left for the final flush on stop
    job.stop()
    assert len(_rows(database)) == 2


def test_signed_heartbeat_counts_only_verified_devices(net: Net) -> None:
    owner = net.register()
    pending, verified = net.enroll(owner, 2)
    verdict(net, verified, True, net.clock.now())
    body = heartbeat(net, pending)
    assert body["counted"] is False and body["status"] == "pending"
    body = heartbeat(net, verified)
    assert body["counted"] is True and body["slot_seconds"] == 60
    rec = state(net).uptime
    assert rec.pending() == 1
    rec.flush(net.database)
    assert [d for (_c, d) in _rows(net.database)] == [device_id(net, verified)]


def test_heartbeat_sets_last_seen_at_most_once_a_minute(net: Net) -> None:
    owner = net.register()
    (d,) = net.enroll(owner, 1)

    def last_seen() -> dt.datetime | None:
        with net.database.read() as s:
            return s.execute(
                select(Device.last_seen_at).where(Device.public_id == d.device_id)
            ).scalar_one()

    heartbeat(net, d)
    first = last_seen()
    assert first == net.clock.now()
    net.clock.advance(30)
    heartbeat(net, d)
    assert last_seen() == first
    net.clock.advance(31)
    heartbeat(net, d)
    assert last_seen() == net.clock.now()


def test_heartbeat_is_signed_and_strict(net: Net) -> None:
    owner = net.register()
    (d,) = net.enroll(owner, 1)
    assert net.client.post("/api/v1/worker/heartbeat", json={}).status_code == 401
    r = net.signed(d, "POST", "/api/v1/worker/heartbeat", {"uptime": 999})
    assert r.status_code == 422
    r = net.signed(d, "POST", "/api/v1/worker/heartbeat")  # an empty body is fine
    assert r.status_code == 200, r.text
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(UptimeSlots)).scalar_one() == 0
