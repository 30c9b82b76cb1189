"""The one place where a device's status changes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gpunet.core.errors import Conflict
from gpunet.core.lifecycle import can_transition
from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import Device, DeviceEvent
from gpunet.server.security.principal import Principal
from gpunet.server.services import audit


def switch_device_status(
    session: Session,
    device: Device,
    new_status: DeviceStatus,
    *,
    reason: str,
    actor: Principal,
    now: dt.datetime,
) -> DeviceEvent:
    """Move a device to `new_status` if the lifecycle allows it, and record why."""
    current = DeviceStatus(device.status)
    if not can_transition(current, new_status):
        raise Conflict(f"a {current.value} device cannot become {new_status.value}")
    device.status = new_status.value
    device.status_changed_at = now
    event = DeviceEvent(
        device_id=device.id,
        at=now,
        kind="status",
        from_status=current.value,
        to_status=new_status.value,
        reason=reason[:255],
    )
    session.add(event)
    audit.append(
        session,
        actor=actor,
        action="device.status",
        entity_kind="device",
        entity_id=device.public_id,
        before={"status": current.value},
        after={"status": new_status.value},
        now=now,
    )
    return event
