"""Rewards over HTTP: owners see their own uptime and payouts; the public sees every
closed epoch (totals, root, emission), the schedule, incident windows and per-wallet
proofs. Public bodies are built from `reward_schemas` only (T2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from gpunet.core.errors import NotFound
from gpunet.server.api import reward_schemas as r
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import ReadSession, State, owner
from gpunet.server.api.paging import page_of
from gpunet.server.context import Ctx
from gpunet.server.db.tables import IncidentWindowRow, RewardEpoch
from gpunet.server.security.principal import Scope
from gpunet.server.services import devices, incidents, rewards
from gpunet.server.services.reward_views import device_epoch_uptime, my_payouts

router = APIRouter(prefix="/api/v1", tags=["rewards"])
public = APIRouter(prefix="/api/v1/explorer", tags=["explorer"])
ReadCtx = Annotated[Ctx, Depends(owner(Scope.DEVICES_READ))]
CACHE = "public, max-age=30"
Limit = Annotated[int, Query(ge=1, le=500)]


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


# -- owners -----------------------------------------------------------------------------


@router.get("/devices/{device_id}/uptime", response_model=r.DeviceUptimeOut)
def my_device_uptime(
    device_id: s.PublicDeviceId,
    ctx: ReadCtx,
    st: State,
    epoch: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> r.DeviceUptimeOut:
    assert ctx.actor.owner_id is not None
    device = devices.owned(ctx.session, ctx.actor.owner_id, device_id)
    clock = st.rewards.schedule.clock
    e = clock.epoch_index(ctx.now.timestamp()) if epoch is None else epoch
    u = device_epoch_uptime(ctx.session, st.rewards, device, max(e, 0))
    return r.DeviceUptimeOut(
        device_id=device.public_id,
        epoch=u.epoch,
        starts_at=u.starts_at,
        ends_at=u.ends_at,
        slots_per_epoch=u.slots_per_epoch,
        online_slots=u.online_slots,
        counted_slots=u.counted_bitmap.bit_count(),
        counted_bitmap=format(u.counted_bitmap, "x"),
        weight=str(u.weight),
        closed=u.closed,
    )


@router.get("/rewards/epochs/{epoch}/mine", response_model=r.MyPayoutsOut)
def my_epoch_payouts(epoch: r.EpochParam, ctx: ReadCtx) -> r.MyPayoutsOut:
    assert ctx.actor.owner_id is not None
    row, paid = my_payouts(ctx.session, ctx.actor.owner_id, epoch)
    return r.MyPayoutsOut(
        epoch=epoch,
        closed=row is not None,
        root=row.root if row else None,
        emission=str(row.emission) if row else None,
        payouts=[r.PayoutOut(wallet=w, amount=str(a)) for w, a in sorted(paid.items())],
    )


# -- public -----------------------------------------------------------------------------


@public.get("/epochs", response_model=r.EpochList)
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


@public.get("/epochs/{epoch}", response_model=r.EpochOut)
def epoch(epoch: r.EpochParam, session: ReadSession, response: Response) -> r.EpochOut:
    row = rewards.get(session, epoch)
    if row is None:
        raise NotFound("this epoch is not closed")
    response.headers["Cache-Control"] = CACHE
    return epoch_out(row)


@public.get("/epochs/{epoch}/payouts", response_model=r.PayoutList)
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


@public.get("/epochs/{epoch}/proofs/{wallet}", response_model=r.ProofOut)
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


@public.get("/rewards/schedule", response_model=r.ScheduleOut)
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


@public.get("/incidents", response_model=r.IncidentList)
def incident_windows(
    session: ReadSession,
    response: Response,
    limit: Limit = 50,
    before: dt.datetime | None = None,
) -> r.IncidentList:
    """Declared windows, latest start first."""
    response.headers["Cache-Control"] = CACHE
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=dt.UTC)
    rows = incidents.public_listing(session, limit=limit + 1, before=before)
    page, next_before = page_of(rows, limit, lambda w: w.starts_at)
    return r.IncidentList(items=[incident_out(w) for w in page], next_before=next_before)
