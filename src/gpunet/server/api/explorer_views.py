"""Builders of the explorer's public bodies, shared by the JSON routes (`api.explorer`)
and the explorer pages (`server.explorer`): a page can show only what one of these
returns, so it can never show more than the JSON API does (T2)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpunet.core.errors import NotFound
from gpunet.server.api import explorer_schemas as x
from gpunet.server.api import reward_schemas as r
from gpunet.server.api import schemas as s
from gpunet.server.db.tables import Base, Challenge, Device, IncidentWindowRow, RewardEpoch
from gpunet.server.services import explorer, explorer_history, rewards
from gpunet.server.state import AppState

OVERVIEW_EPOCHS = 24
# The overview's totals group all 600,000 devices; every replica recounts them at most
# this often (the page and JSON are cacheable for 30 s anyway).
TOTALS_TTL_S = 15.0

T = TypeVar("T")
_cache: dict[tuple[int, str], tuple[float, object]] = {}
_refreshing: set[tuple[int, str]] = set()
_cache_lock = threading.Lock()


def _cached(st: AppState, name: str, build: Callable[[Session], T], session: Session) -> T:
    """The value built at most TOTALS_TTL_S ago. Once it is older, the first request to
    see that starts a rebuild on a thread of its own (with its own read transaction) and,
    like every request until the rebuild is in, is served the previous value: no request
    waits for a recount of 600,000 devices except the very first after start."""
    key = (id(st.database), name)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        stale = hit is None or now - hit[0] >= TOTALS_TTL_S
        start = hit is not None and stale and key not in _refreshing
        if start:
            _refreshing.add(key)
    if hit is None:
        value = build(session)
        with _cache_lock:
            _cache[key] = (time.monotonic(), value)
        return value
    if start:
        threading.Thread(target=_rebuild, args=(st, key, build), daemon=True).start()
    return hit[1]  # type: ignore[return-value]


def _rebuild(st: AppState, key: tuple[int, str], build: Callable[[Session], object]) -> None:
    try:
        with st.database.read() as session:
            value = build(session)
        with _cache_lock:
            _cache[key] = (time.monotonic(), value)
    finally:
        with _cache_lock:
            _refreshing.discard(key)


def forget_cached() -> None:
    """Drop the totals kept in this process (tests that change the network mid-test)."""
    with _cache_lock:
        _cache.clear()


# -- rows to public bodies --------------------------------------------------------------


def public_device(d: Device) -> s.PublicDevice:
    last_seen = d.last_seen_at.replace(second=0, microsecond=0) if d.last_seen_at else None
    return s.PublicDevice(
        device_id=d.public_id,
        vendor=d.vendor,
        model=d.model,
        vram_mib=d.vram_mib,
        status=d.status,
        region=d.region,
        enrolled_on=d.created_at.date(),
        last_seen_at=last_seen,
    )


def epoch_out(row: RewardEpoch) -> r.EpochOut:
    return r.EpochOut(
        epoch=row.epoch,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        emission=str(row.emission),
        paid=str(row.paid),
        unallocated=str(row.unallocated),
        root=row.root,
        wallets=row.wallets,
        devices=row.devices,
        counted_slots=row.counted_slots,
        incidents=row.incidents,
        schedule_sha256=row.schedule_sha256,
        closed_at=row.closed_at,
    )


def incident_out(w: IncidentWindowRow) -> r.IncidentOut:
    return r.IncidentOut(
        starts_at=w.starts_at, ends_at=w.ends_at, reason=w.reason, declared_at=w.declared_at
    )


# -- the network -------------------------------------------------------------------------


def stats(session: Session) -> s.NetworkStats:
    t = explorer.totals(session)
    return s.NetworkStats(
        devices_by_status=t.by_status,
        verified_gpus=t.verified_gpus,
        verified_vram_mib=t.verified_vram_mib,
    )


def clusters_running(session: Session) -> int | None:
    """Running customer clusters, once a `clusters` table exists (issue 9 adds it)."""
    table = Base.metadata.tables.get("clusters")
    if table is None or "status" not in table.c:
        return None
    return int(
        session.execute(
            select(func.count()).select_from(table).where(table.c.status == "running")
        ).scalar_one()
    )


def overview(session: Session, st: AppState) -> x.Overview:
    def build(db: Session) -> tuple[s.NetworkStats, list[s.ModelCount], float]:
        verified = [
            s.ModelCount(model=g.model, region=g.region, status=g.status, count=g.count)
            for g in explorer.breakdown(db)
            if g.status == "verified"
        ]
        return stats(db), verified, explorer_history.verified_compute(db, st.catalog)

    totals, verified, tops = _cached(st, "overview", build, session)
    epochs = rewards.listing(session, limit=OVERVIEW_EPOCHS, before=None)
    return x.Overview(
        stats=totals,
        verified_by_model=verified,
        verified_int8_tops=tops,
        clusters_running=clusters_running(session),
        epochs=[epoch_out(e) for e in epochs],
    )


def history(session: Session, st: AppState, hours: int) -> x.NetworkHistory:
    now = explorer_history.period_of(st.clock.now())
    slot_hours = st.rewards.schedule.clock.slot_seconds / 3600
    rows = explorer_history.history(session, since=now - hours, until=now + 1)
    return x.NetworkHistory(
        period_seconds=explorer_history.PERIOD_S,
        items=[
            x.NetworkPoint(
                at=p.at,
                verified=p.verified,
                pending=p.pending,
                suspect=p.suspect,
                suspended=p.suspended,
                verified_vram_mib=p.verified_vram_mib,
                verified_int8_tops=p.verified_int8_tops,
                online_devices=p.online_devices,
                online_device_hours=round(p.online_slots * slot_hours, 3),
                proofs_passed=p.proofs_passed,
                proofs_failed=p.proofs_failed,
                proofs_missed=p.proofs_missed,
            )
            for p in rows
        ],
    )


# -- one device --------------------------------------------------------------------------


def device_row(session: Session, device_id: str) -> Device:
    d = explorer.get_device(session, device_id)
    if d is None:
        raise NotFound("no such device")
    return d


def _proof(c: Challenge, st: AppState) -> x.PublicProof:
    profile = st.catalog.get(c.profile)
    return x.PublicProof(
        issued_hour=c.issued_at.replace(minute=0, second=0, microsecond=0),
        kind=c.kind,
        profile=c.profile,
        outcome=c.outcome,
        reason=c.reason,
        commit_seconds=round(c.commit_elapsed_s, 3) if c.commit_elapsed_s is not None else None,
        budget_seconds=profile.budget.budget_s if profile else None,
        verify_cpu_ms=round(c.verify_cpu_ms, 1) if c.verify_cpu_ms is not None else None,
    )


def proofs(
    session: Session, st: AppState, device: Device, *, limit: int, before: dt.datetime | None
) -> x.PublicProofList:
    rows = explorer_history.device_proofs(session, device.id, limit=limit + 1, before=before)
    items = [_proof(c, st) for c in rows[:limit]]
    if len(rows) <= limit:
        return x.PublicProofList(items=items, next_before=None)
    # The cursor is a whole hour, like the times shown (an exact time would give away
    # what the hour hides): the page ends before its last hour, which the next page
    # starts with. A page all within one hour (dozens of retries) skips the rest of it.
    last = items[-1].issued_hour
    kept = [p for p in items if p.issued_hour > last]
    if kept:
        return x.PublicProofList(items=kept, next_before=last + dt.timedelta(hours=1))
    return x.PublicProofList(items=items, next_before=last)


def device_epochs(
    session: Session, st: AppState, device: Device, *, before: int | None, limit: int
) -> x.DeviceEpochList:
    clock = st.rewards.schedule.clock
    current = clock.epoch_index(st.clock.now().timestamp())
    first = clock.epoch_index(device.created_at.timestamp())
    top = current if before is None else min(before - 1, current)
    epochs = [e for e in range(top, max(first, top - limit + 1) - 1, -1) if e >= 0]
    figures = explorer_history.device_epochs(session, st.rewards, device, epochs)
    return x.DeviceEpochList(
        device_id=device.public_id,
        items=[
            x.DeviceEpochOut(
                epoch=f.epoch,
                starts_at=f.starts_at,
                slots_per_epoch=clock.slots_per_epoch,
                online_slots=f.online_slots,
                counted_slots=f.counted_slots,
                closed=f.closed,
                reward=str(f.reward) if f.reward is not None else None,
            )
            for f in figures
        ],
        next_before=epochs[-1] if epochs and epochs[-1] > max(first, 0) else None,
    )
