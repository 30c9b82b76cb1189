"""The public explorer API, all of /api/v1/explorer: the network's devices and totals,
and what anyone may check of rewards (closed epochs, payouts and their proofs, the
schedule, incident windows). Read-only and cacheable; every body is built from the
public schemas (`schemas`, `reward_schemas`) only, never from a table row (T2 in
docs/threat-model.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from gpunet.core.bounds import SaneDatetime
from gpunet.core.errors import NotFound
from gpunet.core.models import DeviceStatus
from gpunet.server.api import reward_schemas as r
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import ReadSession, State
from gpunet.server.api.paging import page_of
from gpunet.server.db.tables import Device, IncidentWindowRow, RewardEpoch
from gpunet.server.services import explorer, incidents, rewards

router = APIRouter(prefix="/api/v1/explorer", tags=["explorer"])
CACHE = "public, max-age=30"
Limit = Annotated[int, Query(ge=1, le=500)]


# -- devices and totals -----------------------------------------------------------------


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


@router.get("/stats", response_model=s.NetworkStats)
def stats(session: ReadSession, response: Response) -> s.NetworkStats:
    response.headers["Cache-Control"] = CACHE
    t = explorer.totals(session)
    return s.NetworkStats(
        devices_by_status=t.by_status,
        verified_gpus=t.verified_gpus,
        verified_vram_mib=t.verified_vram_mib,
    )


@router.get("/models", response_model=s.ModelBreakdown)
def models(session: ReadSession, response: Response) -> s.ModelBreakdown:
    response.headers["Cache-Control"] = CACHE
    return s.ModelBreakdown(
        items=[
            s.ModelCount(model=g.model, region=g.region, status=g.status, count=g.count)
            for g in explorer.breakdown(session)
        ]
    )


@router.get("/devices", response_model=s.PublicDeviceList)
def devices(
    session: ReadSession,
    response: Response,
    status: DeviceStatus | None = None,
    # Patterns as in the stored values (SafeText, Region): a NUL byte or other junk gets
    # a 422 here instead of reaching the database (PostgreSQL refuses NUL in text: 500).
    model: Annotated[
        str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()+/:-]*$")
    ] = None,
    region: Annotated[
        str | None, Query(max_length=32, pattern=r"^[a-z]{2}(-[a-z0-9]{1,12}){0,2}$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^dev_[a-z2-7]{16}$")] = None,
) -> s.PublicDeviceList:
    response.headers["Cache-Control"] = CACHE
    rows = explorer.list_devices(
        session,
        status=status.value if status else None,
        model=model,
        region=region,
        limit=limit + 1,
        after=cursor,
    )
    page, next_cursor = page_of(rows, limit, lambda d: d.public_id)
    return s.PublicDeviceList(items=[public_device(d) for d in page], next_cursor=next_cursor)


@router.get("/devices/{device_id}", response_model=s.PublicDevice)
def device(device_id: s.PublicDeviceId, session: ReadSession, response: Response) -> s.PublicDevice:
    d = explorer.get_device(session, device_id)
    if d is None:
        raise NotFound("no such device")
    response.headers["Cache-Control"] = CACHE
    return public_device(d)


# -- rewards: closed epochs, payouts, proofs, the schedule, incident windows ----------


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
        starts_at=w.starts_at,
        ends_at=w.ends_at,
        reason=w.reason,
        declared_at=w.declared_at,
    )


@router.get("/epochs", response_model=r.EpochList)
def epochs(
    session: ReadSession,
    response: Response,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> r.EpochList:
    response.headers["Cache-Control"] = CACHE
    rows = rewards.listing(session, limit=limit + 1, before=before)
    page, next_before = page_of(rows, limit, lambda e: e.epoch)
    return r.EpochList(items=[epoch_out(e) for e in page], next_before=next_before)


@router.get("/epochs/{epoch}", response_model=r.EpochOut)
def epoch(epoch: r.EpochParam, session: ReadSession, response: Response) -> r.EpochOut:
    row = rewards.get(session, epoch)
    if row is None:
        raise NotFound("this epoch is not closed")
    response.headers["Cache-Control"] = CACHE
    return epoch_out(row)


@router.get("/epochs/{epoch}/payouts", response_model=r.PayoutList)
def payouts(
    epoch: r.EpochParam,
    session: ReadSession,
    response: Response,
    limit: Limit = 100,
    after: Annotated[
        str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    ] = None,
) -> r.PayoutList:
    row = rewards.get(session, epoch)
    if row is None:
        raise NotFound("this epoch is not closed")
    response.headers["Cache-Control"] = CACHE
    items = rewards.payouts_page(session, epoch, limit=limit + 1, after=after)
    page, next_after = page_of(items, limit, lambda item: item[0])
    return r.PayoutList(
        epoch=epoch,
        root=row.root,
        items=[r.PayoutOut(wallet=w, amount=str(a)) for w, a in page],
        next_after=next_after,
    )


@router.get("/epochs/{epoch}/proofs/{wallet}", response_model=r.ProofOut)
def payout_proof(
    epoch: r.EpochParam,
    wallet: r.WalletParam,
    session: ReadSession,
    st: State,
    response: Response,
) -> r.ProofOut:
    row = rewards.get(session, epoch)
    if row is None:
        raise NotFound("this epoch is not closed")
    p = rewards.proof(st.database, session, epoch, wallet)
    if p is None:
        raise NotFound("this wallet was paid nothing in this epoch")
    response.headers["Cache-Control"] = CACHE
    return r.ProofOut(root=row.root, proof=p.to_dict())


@router.get("/rewards/schedule", response_model=r.ScheduleOut)
def schedule(st: State, response: Response) -> r.ScheduleOut:
    response.headers["Cache-Control"] = CACHE
    c = st.rewards
    return r.ScheduleOut(
        schedule=c.published,
        schedule_sha256=c.schedule_sha256,
        incident_lookback_slots=c.policy.lookback_slots,
        incident_max_credit_slots=c.policy.max_credit_slots,
        settle_seconds=c.settle_s,
        weights={k: str(v) for k, v in sorted(c.weights.items())},
    )


@router.get("/incidents", response_model=r.IncidentList)
def incident_windows(
    session: ReadSession,
    response: Response,
    limit: Limit = 50,
    # In UTC and within the representable span (core.bounds): an offset at either end
    # of the calendar would overflow converting to UTC.
    before: SaneDatetime | None = None,
) -> r.IncidentList:
    """Declared windows, latest start first."""
    response.headers["Cache-Control"] = CACHE
    rows = incidents.public_listing(session, limit=limit + 1, before=before)
    page, next_before = page_of(rows, limit, lambda w: w.starts_at)
    return r.IncidentList(items=[incident_out(w) for w in page], next_before=next_before)
