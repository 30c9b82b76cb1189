"""The public explorer API: read-only, cacheable, built only from public schemas (T2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from gpunet.core.errors import NotFound
from gpunet.core.models import DeviceStatus
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import ReadSession
from gpunet.server.api.paging import page_of
from gpunet.server.db.tables import Device
from gpunet.server.services import explorer

router = APIRouter(prefix="/api/v1/explorer", tags=["explorer"])
CACHE = "public, max-age=30"


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
