"""Rewards over HTTP for owners: their own devices' uptime and their own payouts.

What the public sees of rewards (closed epochs, payouts, proofs, the schedule and
incident windows) is served by the explorer router (`api.explorer`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gpunet.server.api import reward_schemas as r
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import OwnerCtx, State, owner
from gpunet.server.security.principal import Scope
from gpunet.server.services import devices
from gpunet.server.services.reward_views import device_epoch_uptime, my_payouts

router = APIRouter(prefix="/api/v1", tags=["rewards"])
ReadCtx = Annotated[OwnerCtx, Depends(owner(Scope.DEVICES_READ))]


@router.get("/devices/{device_id}/uptime", response_model=r.DeviceUptimeOut)
def my_device_uptime(
    device_id: s.PublicDeviceId,
    ctx: ReadCtx,
    st: State,
    epoch: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> r.DeviceUptimeOut:
    clock = st.rewards.schedule.clock
    e = clock.epoch_index(ctx.now.timestamp()) if epoch is None else epoch
    # The schema's bound is static; what the epoch clock can turn into times depends on
    # the schedule in force, so that is checked here (422), before any time is computed.
    clock.check_epoch(max(e, 0))
    device = devices.owned(ctx.session, ctx.owner_id, device_id)
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
    row, paid = my_payouts(ctx.session, ctx.owner_id, epoch)
    return r.MyPayoutsOut(
        epoch=epoch,
        closed=row is not None,
        root=row.root if row else None,
        emission=str(row.emission) if row else None,
        payouts=[r.PayoutOut(wallet=w, amount=str(a)) for w, a in sorted(paid.items())],
    )
