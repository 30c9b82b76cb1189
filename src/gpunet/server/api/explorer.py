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
from gpunet.server.api import explorer_schemas as x
from gpunet.server.api import explorer_views as views
from gpunet.server.api import reward_schemas as r
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import ReadSession, State
from gpunet.server.api.explorer_views import epoch_out, incident_out, public_device
from gpunet.server.api.paging import page_of
from gpunet.server.services import explorer, incidents, rewards

router = APIRouter(prefix="/api/v1/explorer", tags=["explorer"])
CACHE = "public, max-age=30"
Limit = Annotated[int, Query(ge=1, le=500)]


# -- devices and totals -----------------------------------------------------------------


@router.get("/stats", response_model=s.NetworkStats)
def stats(session: ReadSession, response: Response) -> s.NetworkStats:
    response.headers["Cache-Control"] = CACHE
    return views.stats(session)


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


# -- the explorer pages' data: overview, history, one device's proofs and epochs -------


@router.get("/overview", response_model=x.Overview)
def overview(session: ReadSession, st: State, response: Response) -> x.Overview:
    """The front page's figures: totals, verified devices by model and region, verified
    compute, running clusters (once clusters exist) and the latest closed epochs."""
    response.headers["Cache-Control"] = CACHE
    return views.overview(session, st)


@router.get("/history", response_model=x.NetworkHistory)
def history(
    session: ReadSession,
    st: State,
    response: Response,
    hours: Annotated[int, Query(ge=1, le=24 * 92)] = 24 * 7,
) -> x.NetworkHistory:
    """Hourly snapshots kept by the coordinator (supply, uptime, proof verdicts)."""
    response.headers["Cache-Control"] = CACHE
    return views.history(session, st, hours)


@router.get("/devices/{device_id}/proofs", response_model=x.PublicProofList)
def device_proofs(
    device_id: s.PublicDeviceId,
    session: ReadSession,
    st: State,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: SaneDatetime | None = None,
) -> x.PublicProofList:
    """The device's proofs of GPU, newest first, times to the hour."""
    d = views.device_row(session, device_id)
    response.headers["Cache-Control"] = CACHE
    return views.proofs(session, st, d, limit=limit, before=before)


@router.get("/devices/{device_id}/epochs", response_model=x.DeviceEpochList)
def device_epochs(
    device_id: s.PublicDeviceId,
    session: ReadSession,
    st: State,
    response: Response,
    before: Annotated[int | None, Query(ge=1, le=2**40)] = None,
    limit: Annotated[int, Query(ge=1, le=24)] = 12,
) -> x.DeviceEpochList:
    """Uptime and share of the emission per epoch, newest first."""
    d = views.device_row(session, device_id)
    response.headers["Cache-Control"] = CACHE
    return views.device_epochs(session, st, d, before=before, limit=limit)
