"""The public view of the network. Only verified devices count as supply (T1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import Device


@dataclass(frozen=True, slots=True)
class NetworkTotals:
    by_status: dict[str, int]
    verified_gpus: int
    verified_vram_mib: int


def totals(session: Session) -> NetworkTotals:
    rows = session.execute(
        select(Device.status, func.count(), func.coalesce(func.sum(Device.vram_mib), 0)).group_by(
            Device.status
        )
    ).all()
    by_status = {s.value: 0 for s in DeviceStatus}
    vram = 0
    for status, count, vram_sum in rows:
        by_status[status] = int(count)
        if status == DeviceStatus.VERIFIED.value:
            vram = int(vram_sum)
    return NetworkTotals(by_status, by_status[DeviceStatus.VERIFIED.value], vram)


@dataclass(frozen=True, slots=True)
class GroupCount:
    model: str
    region: str | None
    status: str
    count: int


def breakdown(session: Session) -> list[GroupCount]:
    rows = session.execute(
        select(Device.model, Device.region, Device.status, func.count())
        .group_by(Device.model, Device.region, Device.status)
        .order_by(Device.model, Device.region, Device.status)
    ).all()
    return [GroupCount(m, r, s, int(c)) for m, r, s, c in rows]


def list_devices(
    session: Session,
    *,
    status: str | None,
    model: str | None,
    region: str | None,
    limit: int,
    after: str | None,
) -> Sequence[Device]:
    """Keyset pagination by public id: random ids give a stable order that reveals nothing."""
    stmt = select(Device).order_by(Device.public_id).limit(limit)
    if status:
        stmt = stmt.where(Device.status == status)
    if model:
        stmt = stmt.where(Device.model == model)
    if region:
        stmt = stmt.where(Device.region == region)
    if after:
        stmt = stmt.where(Device.public_id > after)
    return session.execute(stmt).scalars().all()


def get_device(session: Session, public_id: str) -> Device | None:
    return session.execute(select(Device).where(Device.public_id == public_id)).scalar_one_or_none()
