"""Closing epochs on the coordinator: read, allocate exactly, publish once.

`close_epoch` reads the epoch's inputs in a read transaction (uptime bits, status
history, forfeits, incident windows, wallets, catalog weights), runs the pure
`core.rewards.close_epoch`, then writes the result in one short write transaction that
first inserts the epoch's row with ON CONFLICT DO NOTHING. The epoch's primary key is
the arbiter: of two closers (replicas, a retried CLI, the background job) exactly one
inserts the row and its payouts; the other sees the row and returns it. A crash before
the commit leaves nothing, so re-running pays exactly once. Closed epochs are final.

An epoch is due `settle_s` after it ends (at least one uptime flush interval), so every
replica's last heartbeat bits of the epoch are in before it is read.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gpunet.core import rewards as core
from gpunet.core.errors import Conflict, InvalidInput
from gpunet.core.rewards import PayoutProof, Snapshot
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import RewardEpoch, RewardPayout, UptimeSlots
from gpunet.server.services import explorer_history, proof_schedule
from gpunet.server.services.clusters import usage
from gpunet.server.services.reward_config import RewardConfig
from gpunet.server.services.reward_inputs import Counted, device_uptimes, plan
from gpunet.server.services.uptime import CHUNK_SLOTS


@dataclass(frozen=True)
class Closed:
    row: RewardEpoch
    created: bool  # False: it was already closed (by us earlier or by another closer)


def _utc(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def is_due(config: RewardConfig, epoch: int, now: dt.datetime) -> bool:
    end = config.schedule.clock.epoch_end(epoch)
    return now.timestamp() >= end + config.settle_s


def latest_due(config: RewardConfig, now: dt.datetime) -> int:
    """The last epoch that may be closed at `now`."""
    return config.schedule.clock.epoch_index(now.timestamp() - config.settle_s) - 1


def get(session: Session, epoch: int) -> RewardEpoch | None:
    return session.get(RewardEpoch, epoch)


@dataclass
class Totals:
    """What the epoch's row reports beside the payouts."""

    devices: int = 0  # devices with counted slots and a positive weight
    counted_slots: int = 0

    def adding(self, counted: Iterable[Counted]) -> Iterator[core.DeviceUptime]:
        """Pass each device's uptime on to the allocation, adding it up on the way (the
        inputs are streamed, never held: a million devices is a million rows)."""
        for c in counted:
            self.devices += 1
            self.counted_slots += c.uptime.slots
            yield c.uptime


def compute(
    session: Session, config: RewardConfig, epoch: int
) -> tuple[core.EpochClose, Totals, int]:
    """The pure close over the database's inputs (no writes)."""
    clock = config.schedule.clock
    p = plan(session, clock, config.policy, epoch)
    totals = Totals()
    counted = device_uptimes(session, clock, config.policy, config.weights, p)
    # Counted slots inside a customer's cluster are its cluster slots (docs/rewards.md).
    counted = usage.with_cluster_slots(counted, usage.serving_masks(session, clock, epoch))
    result = core.close_epoch(config.schedule, epoch, totals.adding(counted), config.weights)
    return result, totals, len(p.windows)


def close_epoch(
    database: Database, config: RewardConfig, epoch: int, *, now: dt.datetime
) -> Closed:
    """Close `epoch` once; closing it again (anywhere) returns the stored result."""
    if type(epoch) is not int or not 0 <= epoch < 2**62:
        raise InvalidInput("epoch must be a non-negative integer")
    with database.read() as session:
        existing = get(session, epoch)
        if existing is not None:
            return Closed(existing, created=False)
        if not is_due(config, epoch, now):
            clock = config.schedule.clock
            when = _utc(clock.epoch_end(epoch)) + dt.timedelta(seconds=config.settle_s)
            raise Conflict(f"epoch {epoch} can be closed from {when.isoformat()}")
        result, totals, windows = compute(session, config, epoch)
    clock = config.schedule.clock
    snap = result.snapshot
    row = RewardEpoch(
        epoch=epoch,
        starts_at=_utc(clock.epoch_start(epoch)),
        ends_at=_utc(clock.epoch_end(epoch)),
        emission=snap.emission,
        paid=snap.emission - snap.unallocated,
        unallocated=snap.unallocated,
        root=snap.root.hex(),
        wallets=len(snap.wallets),
        devices=totals.devices,
        counted_slots=totals.counted_slots,
        incidents=windows,
        schedule_sha256=config.schedule_sha256,
        closed_at=now,
    )
    with database.transaction() as session:
        if not _insert_epoch(session, row):
            # Another closer got there first; its row is the truth.
            created = False
        else:
            _insert_payouts(session, epoch, snap)
            # Kept for the explorer's device pages (a device's share of the emission).
            explorer_history.record_score(
                session, epoch, result.allocation.total_score, config.weights
            )
            created = True
    if not created:
        with database.read() as session:
            stored = get(session, epoch)
            assert stored is not None
            return Closed(stored, created=False)
    _cache_put(database, snap)
    return Closed(row, created=True)


def _insert_epoch(session: Session, row: RewardEpoch) -> bool:
    values = {c.name: getattr(row, c.name) for c in RewardEpoch.__table__.columns}
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RewardEpoch)
    stmt = (
        ins.values(**values)
        .on_conflict_do_nothing(index_elements=["epoch"])
        .returning(RewardEpoch.__table__.c.epoch)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def _insert_payouts(session: Session, epoch: int, snap: Snapshot) -> None:
    """Bulk insert inside the caller's transaction: COPY on PostgreSQL, one executemany
    on SQLite (amounts as decimal strings there, see db.amount)."""
    if not snap.wallets:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cur,
            cur.copy("COPY reward_payouts (epoch, wallet, amount) FROM STDIN") as copy,
        ):
            for wallet, amount in zip(snap.wallets, snap.amounts, strict=True):
                copy.write_row((epoch, wallet, amount))
        return
    conn.exec_driver_sql(
        "INSERT INTO reward_payouts (epoch, wallet, amount) VALUES (?, ?, ?)",
        [(epoch, w, str(a)) for w, a in zip(snap.wallets, snap.amounts, strict=True)],
    )


# -- due epochs -------------------------------------------------------------------------


def due_epochs(
    session: Session, config: RewardConfig, now: dt.datetime, limit: int | None
) -> list[int]:
    """Epochs that may close now and are not closed, oldest first.

    The first epoch considered is the earliest one with uptime or already closed: epochs
    before anyone ever sent a heartbeat are left alone (nothing could be paid in them).
    With `config.await_rollcall`, an epoch is due only once a roll-call started after
    its end has resolved: a device that fails or misses it forfeits uptime back to its
    last roll-call pass, and that must reach the epoch before it is paid.
    """
    last = latest_due(config, now)
    if config.await_rollcall:
        last = min(last, rollcall_confirmed_epoch(session, config))
    spe = config.schedule.clock.slots_per_epoch
    first_chunk = session.execute(select(func.min(UptimeSlots.chunk))).scalar_one_or_none()
    first_closed = session.execute(select(func.min(RewardEpoch.epoch))).scalar_one_or_none()
    starts = []
    if first_chunk is not None:
        starts.append(first_chunk * CHUNK_SLOTS // spe)
    if first_closed is not None:
        starts.append(first_closed)
    if not starts:
        return []
    start = max(0, min(starts))
    if start > last:
        return []
    closed = set(
        session.execute(
            select(RewardEpoch.epoch).where(RewardEpoch.epoch.between(start, last))
        ).scalars()
    )
    out = []
    for e in range(start, last + 1):
        if e not in closed:
            out.append(e)
            if limit is not None and len(out) >= limit:
                break
    return out


def rollcall_confirmed_epoch(session: Session, config: RewardConfig) -> int:
    """The last epoch that ends no later than the latest resolved roll-call (-1: none)."""
    until = proof_schedule.rollcall_confirmed_until(session)
    if until is None:
        return -1
    return config.schedule.clock.epoch_index(until.timestamp()) - 1


def close_due(
    database: Database, config: RewardConfig, *, now: dt.datetime, limit: int | None = None
) -> list[Closed]:
    with database.read() as session:
        epochs = due_epochs(session, config, now, limit)
    return [close_epoch(database, config, e, now=now) for e in epochs]


def prune_uptime(
    database: Database, config: RewardConfig, *, now: dt.datetime, keep_days: int
) -> int:
    """Forget uptime bits older than `keep_days`, once the epoch before that is closed."""
    clock = config.schedule.clock
    cutoff = clock.epoch_index(now.timestamp() - keep_days * 86400)
    with database.transaction() as session:
        if get(session, cutoff - 1) is None:
            return 0
        chunk = clock.first_slot(cutoff) // CHUNK_SLOTS
        result = session.execute(delete(UptimeSlots).where(UptimeSlots.chunk < chunk))
        return int(getattr(result, "rowcount", 0) or 0)


# -- reading closed epochs --------------------------------------------------------------


def listing(session: Session, *, limit: int, before: int | None) -> Sequence[RewardEpoch]:
    q = select(RewardEpoch).order_by(RewardEpoch.epoch.desc()).limit(limit)
    if before is not None:
        q = q.where(RewardEpoch.epoch < before)
    return session.execute(q).scalars().all()


def payouts_page(
    session: Session, epoch: int, *, limit: int, after: str | None
) -> list[tuple[str, int]]:
    q = (
        select(RewardPayout.wallet, RewardPayout.amount)
        .where(RewardPayout.epoch == epoch)
        .order_by(RewardPayout.wallet)
        .limit(limit)
    )
    if after is not None:
        q = q.where(RewardPayout.wallet > after)
    return [(w, a) for w, a in session.execute(q).all()]


def payouts_for(session: Session, epoch: int, wallets: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(wallets), 1000):
        part = list(wallets[i : i + 1000])
        q = select(RewardPayout.wallet, RewardPayout.amount).where(
            RewardPayout.epoch == epoch, RewardPayout.wallet.in_(part)
        )
        out.update({w: a for w, a in session.execute(q).all()})
    return out


def all_payouts(session: Session, epoch: int) -> dict[str, int]:
    """Every wallet's amount (a plain query: a million rows without ORM overhead)."""
    raw = session.execute(
        text("SELECT wallet, amount FROM reward_payouts WHERE epoch = :e"), {"e": epoch}
    )
    return {w: int(str(a)) for w, a in raw}


_cache: OrderedDict[tuple[str, int, str], Snapshot] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 2


def _cache_key(database: Database, epoch: int, root: str) -> tuple[str, int, str]:
    return (database.engine.url.render_as_string(hide_password=True), epoch, root)


def _cache_put(database: Database, snap: Snapshot) -> None:
    with _cache_lock:
        _cache[_cache_key(database, snap.epoch, snap.root.hex())] = snap
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def snapshot(database: Database, session: Session, row: RewardEpoch) -> Snapshot:
    """The epoch's snapshot rebuilt from its stored payouts (cached: building one for a
    million wallets takes seconds). Refuses to serve proofs for a root that no longer
    matches what was published."""
    key = _cache_key(database, row.epoch, row.root)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    snap = core.snapshot_from_payouts(
        row.epoch, row.emission, all_payouts(session, row.epoch), row.unallocated
    )
    if snap.root.hex() != row.root:
        raise Conflict(f"stored payouts of epoch {row.epoch} do not match its published root")
    _cache_put(database, snap)
    return snap


def proof(database: Database, session: Session, epoch: int, wallet: str) -> PayoutProof | None:
    row = get(session, epoch)
    if row is None:
        return None
    try:
        return snapshot(database, session, row).proof(wallet)
    except KeyError:
        return None
