"""The signed heartbeat: a device says it is online; no database row per heartbeat.

The bit goes into this replica's in-memory `UptimeRecorder` (flushed in batches) when
the heartbeat counts (services.liveness: verified, no challenge overdue, no proof owed).
Database work: the signature's replay guard, one indexed read of the device's
outstanding challenge (a heartbeat is how the device hears of it: the response names
it, and it counts as received), and at most once a minute the device's
`last_seen_at`. The control channel records heartbeats the same way.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body

from gpunet.server.api import reward_schemas as r
from gpunet.server.api.deps import DeviceCtx, State
from gpunet.server.services import liveness
from gpunet.server.services.devices import calling_device

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])
LAST_SEEN_EVERY = dt.timedelta(seconds=60)


@router.post("/heartbeat", response_model=r.HeartbeatOut)
def heartbeat(
    ctx: DeviceCtx, st: State, _body: Annotated[r.HeartbeatIn | None, Body()] = None
) -> r.HeartbeatOut:
    # Not touched on every call: that would be a row update per heartbeat.
    device = calling_device(ctx.session, ctx.actor.device_id, ctx.now)
    heard = liveness.hear(ctx.session, device, ctx.now)
    st.uptime.heard(device.id, ctx.now)  # the last heartbeat received, for worker status
    if heard.counts:
        st.uptime.record(device.id, ctx.now)
    if device.last_seen_at is None or ctx.now - device.last_seen_at >= LAST_SEEN_EVERY:
        device.last_seen_at = ctx.now
    clock = st.uptime.clock
    ts = ctx.now.timestamp()
    epoch = clock.epoch_index(ts)
    return r.HeartbeatOut(
        status=device.status,
        counted=heard.counts,
        epoch=epoch,
        slot=clock.global_slot(ts) - clock.first_slot(epoch),
        slot_seconds=clock.slot_seconds,
        challenge=heard.challenge,
    )
