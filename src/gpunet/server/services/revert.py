"""Undo what one principal changed since a moment, using the audit log.

Walks the principal's records newest first. A field goes back to its `before` value
only if it still holds that principal's `after` value; if someone else changed it
since, the field is left alone and reported, so a revert never clobbers honest work.
Devices the principal enrolled in that time are suspended (they can be reinstated and
must then prove themselves again). Every restored change is itself audited.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import Device, Owner
from gpunet.server.security.principal import Principal
from gpunet.server.services import audit
from gpunet.server.services.device_status import switch_device_status

DEVICE_FIELDS = {"label", "region", "agent_version", "driver_version", "cuda_version", "os_name"}
OWNER_FIELDS = {"display_name", "wallet_address"}


@dataclass
class RevertReport:
    restored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)


def _entity(session: Session, kind: str, entity_id: str) -> Device | Owner | None:
    if kind == "device":
        return session.execute(
            select(Device).where(Device.public_id == entity_id).with_for_update()
        ).scalar_one_or_none()
    if kind == "owner" and entity_id.isdigit():
        return session.get(Owner, int(entity_id), with_for_update=True)
    return None


def revert(
    session: Session,
    *,
    target: Principal,
    since: dt.datetime,
    operator: Principal,
    now: dt.datetime,
    dry_run: bool = False,
) -> RevertReport:
    report = RevertReport()
    records = audit.records_by(
        session, actor_kind=target.kind.value, actor_id=target.id, since=since
    )
    for record in records:
        entity = _entity(session, record.entity_kind, record.entity_id)
        label = f"{record.entity_kind} {record.entity_id} ({record.action} #{record.id})"
        if entity is None:
            report.skipped.append(f"{label}: no longer exists")
            continue
        if record.action == "device.enroll" and isinstance(entity, Device):
            if entity.status != DeviceStatus.SUSPENDED.value:
                if not dry_run:
                    switch_device_status(
                        session,
                        entity,
                        DeviceStatus.SUSPENDED,
                        reason=f"revert of {target.key}",
                        actor=operator,
                        now=now,
                    )
                report.suspended.append(entity.public_id)
            continue
        allowed = DEVICE_FIELDS if isinstance(entity, Device) else OWNER_FIELDS
        before = json.loads(record.before or "{}")
        after = json.loads(record.after or "{}")
        fields = [f for f in after if f in allowed]
        if not fields:
            continue
        restore = {f: before.get(f) for f in fields if getattr(entity, f) == after[f]}
        for f in fields:
            if f not in restore:
                report.skipped.append(f"{label}: {f} was changed again since")
        if not restore:
            continue
        current = {f: getattr(entity, f) for f in restore}
        if not dry_run:
            for f, v in restore.items():
                setattr(entity, f, v)
            audit.append(
                session,
                actor=operator,
                action="revert",
                entity_kind=record.entity_kind,
                entity_id=record.entity_id,
                before=current,
                after=restore,
                now=now,
            )
        report.restored.append(f"{label}: {', '.join(sorted(restore))}")
    return report
