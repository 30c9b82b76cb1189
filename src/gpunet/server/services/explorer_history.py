"""What the explorer keeps and reads beyond the live device counts (issue 10).

- Hourly network snapshots: the history job writes one row per completed hour (the
  counts by status, verified VRAM and compute, the hour's verified uptime and its proof
  verdicts), so the public plots read a few hundred small rows, never 600,000 devices
  and a month of challenges per request. Counts are as of when the row was taken (a
  minute or so after the hour); uptime and verdicts are exactly the hour's.
- Epoch scores: the total score each close computed, so a device page can show a
  device's share of the emission without re-running the close.
- One device's proofs and per-epoch figures, for its public page.

Every reader returns rows or plain values; the public schemas in `api.explorer_schemas`
choose what of them is shown (T2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gpunet.core.pog import Catalog
from gpunet.core.rewards import EpochClock
from gpunet.server.db.tables import (
    Challenge,
    Device,
    EpochScore,
    NetworkSnapshot,
    RewardEpoch,
    UptimeSlots,
)
from gpunet.server.services import explorer
from gpunet.server.services.reward_config import RewardConfig
from gpunet.server.services.reward_inputs import device_uptimes, plan
from gpunet.server.services.uptime import chunk_span, place

PERIOD_S = 3600
VERIFIED = "verified"
VERDICTS = ("passed", "failed", "missed")


def period_of(moment: dt.datetime) -> int:
    return int(moment.timestamp()) // PERIOD_S


def period_start(period: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(period * PERIOD_S, dt.UTC)


# -- writing ----------------------------------------------------------------------------


def verified_compute(session: Session, catalog: Catalog) -> float:
    """Peak int8 TOPS of every verified device, by the catalog profile it passed as."""
    rows = session.execute(
        select(Device.profile, func.count())
        .where(Device.status == VERIFIED)
        .group_by(Device.profile)
    ).all()
    total = 0.0
    for key, count in rows:
        profile = catalog.get(key) if key else None
        if profile is not None and profile.peak_int8_tops:
            total += profile.peak_int8_tops * int(count)
    return total


def _uptime_in(session: Session, clock: EpochClock, period: int) -> tuple[int, int]:
    """(devices with any uptime bit in the hour, slots they were up), read once per hour."""
    first = clock.global_slot_ceil(period * PERIOD_S)
    last = clock.global_slot_ceil((period + 1) * PERIOD_S)
    if last <= first:
        return 0, 0
    lo, hi = chunk_span(first, last)
    per_device: dict[int, int] = {}
    rows = session.execute(
        select(UptimeSlots.device_id, UptimeSlots.chunk, UptimeSlots.bits).where(
            UptimeSlots.chunk.between(lo, hi)
        )
    )
    width = last - first
    for device_id, chunk, bits in rows:
        placed = place(chunk, bits, first, width)
        if placed:
            per_device[device_id] = per_device.get(device_id, 0) | placed
    return len(per_device), sum(b.bit_count() for b in per_device.values())


def _verdicts_in(session: Session, period: int) -> dict[str, int]:
    start, end = period_start(period), period_start(period + 1)
    rows = session.execute(
        select(Challenge.outcome, func.count())
        .where(Challenge.completed_at >= start, Challenge.completed_at < end)
        .where(Challenge.outcome.in_(VERDICTS))
        .group_by(Challenge.outcome)
    ).all()
    out = dict.fromkeys(VERDICTS, 0)
    out.update({outcome: int(n) for outcome, n in rows})
    return out


def take_snapshot(
    session: Session, catalog: Catalog, clock: EpochClock, period: int, now: dt.datetime
) -> bool:
    """Write the snapshot of `period` unless one exists (replicas race harmlessly: the
    primary key keeps the first). Returns whether this call wrote it."""
    if session.get(NetworkSnapshot, period) is not None:
        return False
    totals = explorer.totals(session)
    online, slots = _uptime_in(session, clock, period)
    verdicts = _verdicts_in(session, period)
    values = {
        "period": period,
        "at": period_start(period),
        "taken_at": now,
        "verified": totals.by_status.get("verified", 0),
        "pending": totals.by_status.get("pending", 0),
        "suspect": totals.by_status.get("suspect", 0),
        "suspended": totals.by_status.get("suspended", 0),
        "verified_vram_mib": totals.verified_vram_mib,
        "verified_int8_tops": verified_compute(session, catalog),
        "online_devices": online,
        "online_slots": slots,
        "proofs_passed": verdicts["passed"],
        "proofs_failed": verdicts["failed"],
        "proofs_missed": verdicts["missed"],
    }
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(NetworkSnapshot)
    stmt = ins.values(**values).on_conflict_do_nothing(index_elements=["period"])
    return bool(getattr(session.execute(stmt), "rowcount", 0))


def record_score(
    session: Session, epoch: int, total_score: int, weights: Mapping[str, Fraction]
) -> None:
    """Keep the close's total score beside the epoch (in the close's transaction). The
    scale is the weights' common denominator, as `core.rewards.allocation` scales them
    (the default cluster bonus of 1 adds no denominator)."""
    scale = lcm(*(Fraction(w).denominator for w in weights.values())) if weights else 1
    session.add(EpochScore(epoch=epoch, total_score=total_score, scale=scale))


# -- reading ----------------------------------------------------------------------------


def history(session: Session, *, since: int, until: int) -> Sequence[NetworkSnapshot]:
    """Snapshots of periods [since, until), oldest first (at most until - since rows)."""
    return (
        session.execute(
            select(NetworkSnapshot)
            .where(NetworkSnapshot.period >= since, NetworkSnapshot.period < until)
            .order_by(NetworkSnapshot.period)
        )
        .scalars()
        .all()
    )


def device_proofs(
    session: Session, device_pk: int, *, limit: int, before: dt.datetime | None
) -> Sequence[Challenge]:
    """A device's challenges, newest first (index ix_challenges_device_issued)."""
    stmt = (
        select(Challenge)
        .where(Challenge.device_id == device_pk)
        .order_by(Challenge.issued_at.desc(), Challenge.id.desc())
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(Challenge.issued_at < before)
    return session.execute(stmt).scalars().all()


@dataclass(frozen=True, slots=True)
class DeviceEpoch:
    epoch: int
    starts_at: dt.datetime
    online_slots: int
    counted_slots: int
    closed: bool
    reward: int | None  # base units; None while the epoch is open or its score unknown


def device_epochs(
    session: Session, config: RewardConfig, device: Device, epochs: Sequence[int]
) -> list[DeviceEpoch]:
    """Uptime and share of the emission for one device in each of `epochs`, by the rules
    of the close (forfeits and incident credit included). Bounded by the caller to a
    page of epochs: each is a handful of indexed point reads for this one device."""
    clock = config.schedule.clock
    closed = {
        e.epoch: e
        for e in session.execute(select(RewardEpoch).where(RewardEpoch.epoch.in_(epochs)))
        .scalars()
        .all()
    }
    scores = {
        s.epoch: s
        for s in session.execute(select(EpochScore).where(EpochScore.epoch.in_(epochs))).scalars()
    }
    weight = config.weights.get(device.profile or "", Fraction(0))
    out = []
    for epoch in epochs:
        p = plan(session, clock, config.policy, epoch)
        online = _device_online(session, device.id, p.e_first, p.e_last)
        unit = {k: Fraction(1) for k in config.weights}
        counted = sum(
            c.uptime.slots
            for c in device_uptimes(session, clock, config.policy, unit, p, device_id=device.id)
        )
        row, score = closed.get(epoch), scores.get(epoch)
        reward = None
        if row is not None and score is not None and score.total_score > 0:
            share = Fraction(row.emission) * weight * counted * score.scale / score.total_score
            reward = int(share)  # floor: the wallet's own rounding may add a unit
        elif row is not None and score is not None:
            reward = 0
        out.append(
            DeviceEpoch(
                epoch=epoch,
                starts_at=dt.datetime.fromtimestamp(clock.epoch_start(epoch), dt.UTC),
                online_slots=online,
                counted_slots=counted,
                closed=row is not None,
                reward=reward,
            )
        )
    return out


def _device_online(session: Session, device_pk: int, first: int, last: int) -> int:
    """Point reads of the chunks covering [first, last): the key leads with the chunk, so
    naming each chunk lets the index find (chunk, device) directly."""
    lo, hi = chunk_span(first, last)
    rows = session.execute(
        select(UptimeSlots.chunk, UptimeSlots.bits).where(
            UptimeSlots.chunk.in_(list(range(lo, hi + 1))), UptimeSlots.device_id == device_pk
        )
    ).all()
    bits = 0
    for chunk, b in rows:
        bits |= place(chunk, b, first, last - first)
    return bits.bit_count()
