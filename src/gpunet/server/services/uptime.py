"""Heartbeats into uptime slots, without a database row per heartbeat.

Each replica keeps an in-memory buffer: one integer per (chunk, device) whose bits are
the slots in which the device was seen. A background job (`background.uptime`) flushes
the buffer every few seconds in batched upserts that OR the bits into `uptime_slots`.
OR is idempotent and commutative, so replicas flushing the same device, or a flush
retried after an error, never double-count and never erase each other's bits. A crash
loses only what was buffered since the last flush (one flush interval).

The same buffer keeps, per device, the newest heartbeat heard (counted or not), and the
flush writes it to `devices.last_heartbeat_at` (and moves `last_seen_at` with it) at most
once per HEARD_EVERY: "last heartbeat" in `gpunet worker status` is then the last one the
coordinator received, to within HEARD_EVERY plus a flush interval, for the price of one
row update per device and half minute.

A chunk is 60 consecutive global slots (`EpochClock.global_slot // 60`), aligned with
the schedule's genesis: with the default one-minute slots, one row per device and hour.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, case, or_, select, text, update
from sqlalchemy.orm import Session

from gpunet.core.rewards import EpochClock
from gpunet.server.db.tables import Device, UptimeSlots

if TYPE_CHECKING:
    from gpunet.server.db.engine import Database

CHUNK_SLOTS = 60  # bits per row; 60 < 63 keeps every value a positive BIGINT
HEARD_EVERY = dt.timedelta(seconds=30)  # the most often a device's last heartbeat is written
FLUSH_BATCH = 5000  # rows per executemany call

# Prepared once. SQLite (3.35+): one executemany per batch. PostgreSQL: one statement
# per batch over three bound arrays (an executemany there costs a round trip per row).
_MERGE = text(
    "INSERT INTO uptime_slots (chunk, device_id, bits) VALUES (:chunk, :device_id, :bits) "
    "ON CONFLICT (chunk, device_id) DO UPDATE SET bits = uptime_slots.bits | excluded.bits"
)
_MERGE_ARRAYS = text(
    "INSERT INTO uptime_slots (chunk, device_id, bits) "
    "SELECT * FROM unnest(CAST(:chunks AS BIGINT[]), CAST(:devices AS BIGINT[]), "
    "CAST(:bits AS BIGINT[])) "
    "ON CONFLICT (chunk, device_id) DO UPDATE SET bits = uptime_slots.bits | excluded.bits"
)


_BEAT = bindparam("beat", type_=Device.__table__.c.last_heartbeat_at.type)
# Never backwards: another replica (or a handshake) may have written a later time.
_HEARD = (
    update(Device)
    .where(
        Device.id == bindparam("pk"),
        or_(Device.last_heartbeat_at.is_(None), Device.last_heartbeat_at < _BEAT),
    )
    .values(
        last_heartbeat_at=_BEAT,
        last_seen_at=case(
            (or_(Device.last_seen_at.is_(None), Device.last_seen_at < _BEAT), _BEAT),
            else_=Device.last_seen_at,
        ),
    )
)


def write_heard(session: Session, heard: Mapping[int, dt.datetime]) -> int:
    """Write each device's newest heartbeat (device row id -> time), in id order (so two
    replicas lock rows in the same order), FLUSH_BATCH rows per call."""
    rows = [{"pk": pk, "beat": at} for pk, at in sorted(heard.items())]
    for i in range(0, len(rows), FLUSH_BATCH):
        session.connection().execute(_HEARD, rows[i : i + FLUSH_BATCH])
    return len(rows)


def merge_bits(session: Session, buffered: Mapping[tuple[int, int], int]) -> int:
    """OR `buffered` ((chunk, device_id) -> bits) into the table, in key order (so two
    replicas lock rows in the same order and cannot deadlock), FLUSH_BATCH rows per call."""
    rows = [(c, d, b) for (c, d), b in sorted(buffered.items()) if b]
    arrays = session.get_bind().dialect.name == "postgresql"
    for i in range(0, len(rows), FLUSH_BATCH):
        part = rows[i : i + FLUSH_BATCH]
        if arrays:
            chunks, devices, bits = (list(col) for col in zip(*part, strict=True))
            session.execute(_MERGE_ARRAYS, {"chunks": chunks, "devices": devices, "bits": bits})
        else:
            session.execute(_MERGE, [{"chunk": c, "device_id": d, "bits": b} for c, d, b in part])
    return len(rows)


class UptimeRecorder:
    """Per-replica heartbeat aggregator. `record` is O(1) and touches no database.

    Record only heartbeats of devices that are `verified` at the time: no other slot can
    ever count (docs/rewards.md section 2), and fakes then cost no storage (T1). The
    epoch close stays the authority on what counts; this only says "seen in slot".
    """

    def __init__(self, clock: EpochClock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._buffer: dict[tuple[int, int], int] = {}
        # Bits this replica already wrote, for the current and previous chunk: a device
        # beating several times a slot is then written once per slot, not once per flush.
        self._written: dict[tuple[int, int], int] = {}
        self._latest_chunk = 0
        # Newest heartbeat per device not written yet, and when each device's was last
        # written (pruned once older than HEARD_EVERY, when it no longer holds one back).
        self._heard: dict[int, dt.datetime] = {}
        self._heard_written: dict[int, dt.datetime] = {}

    def heard(self, device_id: int, at: dt.datetime) -> None:
        """A heartbeat from `device_id` reached this replica (whether or not it counts).
        O(1), no database: the flush writes it, at most once per HEARD_EVERY."""
        with self._lock:
            written = self._heard_written.get(device_id)
            if written is not None and at - written < HEARD_EVERY:
                return
            known = self._heard.get(device_id)
            if known is None or at > known:
                self._heard[device_id] = at

    def record(self, device_id: int, at: dt.datetime) -> None:
        g = self.clock.global_slot(at.timestamp())
        if g < 0:  # before genesis nothing is paid, so nothing is kept
            return
        chunk, bit = divmod(g, CHUNK_SLOTS)
        key = (chunk, device_id)
        mark = 1 << bit
        with self._lock:
            if not self._written.get(key, 0) & mark:
                self._buffer[key] = self._buffer.get(key, 0) | mark

    def pending(self) -> int:
        """Buffered (chunk, device) entries not yet flushed."""
        with self._lock:
            return len(self._buffer)

    def flush(self, database: Database) -> int:
        """Write everything buffered; returns the rows merged. On failure the bits go
        back into the buffer (merged with newer ones), so a failed flush loses nothing."""
        self._flush_heard(database)
        with self._lock:
            taken, self._buffer = self._buffer, {}
        if not taken:
            return 0
        try:
            with database.transaction() as session:
                rows = merge_bits(session, taken)
        except BaseException:
            with self._lock:
                for key, bits in taken.items():
                    self._buffer[key] = self._buffer.get(key, 0) | bits
            raise
        with self._lock:
            written = self._written
            for key, bits in taken.items():
                written[key] = written.get(key, 0) | bits
            newest = max(chunk for chunk, _ in taken)
            if newest > self._latest_chunk:  # once a chunk (an hour): forget older ones
                self._latest_chunk = newest
                self._written = {k: v for k, v in written.items() if k[0] >= newest - 1}
        return rows


    def _flush_heard(self, database: Database) -> None:
        """Write the buffered last heartbeats; on failure they go back (newest wins)."""
        with self._lock:
            heard, self._heard = self._heard, {}
        if not heard:
            return
        try:
            with database.transaction() as session:
                write_heard(session, heard)
        except BaseException:
            with self._lock:
                for pk, at in heard.items():
                    known = self._heard.get(pk)
                    if known is None or at > known:
                        self._heard[pk] = at
            raise
        with self._lock:
            self._heard_written.update(heard)
            horizon = max(heard.values()) - HEARD_EVERY
            self._heard_written = {k: v for k, v in self._heard_written.items() if v > horizon}


# -- reading ----------------------------------------------------------------------------


def chunk_span(first_slot: int, last_slot: int) -> tuple[int, int]:
    """Inclusive chunk range holding global slots [first_slot, last_slot)."""
    return first_slot // CHUNK_SLOTS, (last_slot - 1) // CHUNK_SLOTS


def place(chunk: int, bits: int, first_slot: int, width: int) -> int:
    """A chunk's bits as a bitmap whose bit 0 is global slot `first_slot`, `width` wide."""
    shift = chunk * CHUNK_SLOTS - first_slot
    moved = bits << shift if shift >= 0 else bits >> -shift
    return moved & ((1 << width) - 1)


def device_bitmap(session: Session, device_id: int, first_slot: int, last_slot: int) -> int:
    """Raw "seen" bits of one device for global slots [first_slot, last_slot)."""
    lo, hi = chunk_span(first_slot, last_slot)
    rows = session.execute(
        select(UptimeSlots.chunk, UptimeSlots.bits).where(
            UptimeSlots.device_id == device_id, UptimeSlots.chunk.between(lo, hi)
        )
    ).all()
    out = 0
    for chunk, bits in rows:
        out |= place(chunk, bits, first_slot, last_slot - first_slot)
    return out
