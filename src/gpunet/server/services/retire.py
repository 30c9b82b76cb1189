"""Taking a device out of service: by its owner, or because a new key replaced it.

A retired device keeps its row, its proofs, its uptime and its payouts (the explorer
still shows them), but from the moment of retirement it counts for nothing: it is
never challenged (`proof_schedule.CHALLENGEABLE`), its heartbeats earn nothing
(`core.lifecycle.heartbeat_counts`), and its key authenticates nothing
(`devices.authenticate_request`, `control.auth`). Its GPU may then be enrolled again
as a new device, which starts from `pending`, so the two never count at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.errors import Conflict
from gpunet.core.models import DeviceStatus
from gpunet.server.context import Ctx
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.security.principal import Principal
from gpunet.server.services import devices, writes
from gpunet.server.services.device_status import switch_device_status
from gpunet.server.services.proofs import OUTSTANDING, ChallengeOutcome

VOID = "void: the device was retired before answering"


def retire(
    session: Session, device: Device, *, reason: str, actor: Principal, now: dt.datetime
) -> None:
    """Retire a locked `device` (status change and audit through switch_device_status)."""
    if device.status == DeviceStatus.RETIRED.value:
        raise Conflict(f"device {device.public_id} is already retired")
    switch_device_status(session, device, DeviceStatus.RETIRED, reason=reason, actor=actor, now=now)
    # Its open challenge would otherwise lapse later and be judged; it is simply void.
    # Recorded as missed, with no verdict applied, so no forfeit or status follows.
    for row in session.execute(
        select(ChallengeRow)
        .where(ChallengeRow.device_id == device.id, ChallengeRow.outcome.in_(OUTSTANDING))
        .with_for_update()
    ).scalars():
        row.outcome = ChallengeOutcome.MISSED.value
        row.completed_at = now
        row.detail = VOID
    device.next_check_at = None
    device.updated_at = now


def retire_by_owner(ctx: Ctx, public_id: str) -> Device:
    """The owner retires one of their devices; another owner's device is NotFound."""
    assert ctx.actor.owner_id is not None
    device = devices.owned(ctx.session, ctx.actor.owner_id, public_id, lock=True)
    writes.record_write(ctx, "device.retire")
    retire(ctx.session, device, reason="retired by its owner", actor=ctx.actor, now=ctx.now)
    return device
