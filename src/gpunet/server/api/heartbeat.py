"""The signed heartbeat: a device says it is online; no database row per heartbeat.

The bit goes into this replica's in-memory `UptimeRecorder` (flushed in batches); the
only database work is the signature's replay guard and, at most once a minute, the
device's `last_seen_at`. The control channel records heartbeats the same way.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body

from gpunet.core.errors import Unauthenticated
from gpunet.core.models import DeviceStatus
from gpunet.server.api import reward_schemas as r
from gpunet.server.api.deps import DeviceCtx, State
from gpunet.server.db.tables import Device

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])
LAST_SEEN_EVERY = dt.timedelta(seconds=60)


@router.post("/heartbeat", response_model=r.HeartbeatOut)
def heartbeat(
    ctx: DeviceCtx, st: State, _body: Annotated[r.HeartbeatIn | None, Body()] = None
) -> r.HeartbeatOut:
    # Not devices.get_self: that writes last_seen_at on every call, a row update per
    # heartbeat; here it is written at most once a minute.
    device = ctx.session.get(Device, ctx.actor.device_id)
    if device is None:
        raise Unauthenticated("unknown device")
    counted = device.status == DeviceStatus.VERIFIED.value
    if counted:
        st.uptime.record(device.id, ctx.now)
    if device.last_seen_at is None or ctx.now - device.last_seen_at >= LAST_SEEN_EVERY:
        device.last_seen_at = ctx.now
    clock = st.uptime.clock
    ts = ctx.now.timestamp()
    epoch = clock.epoch_index(ts)
    return r.HeartbeatOut(
        status=device.status,
        counted=counted,
        epoch=epoch,
        slot=clock.global_slot(ts) - clock.first_slot(epoch),
        slot_seconds=clock.slot_seconds,
    )
