"""What owners see of their own uptime and payouts (never another owner's)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.rewards.allocation import valid_wallet
from gpunet.server.db.tables import Device, Owner, RewardEpoch
from gpunet.server.services import rewards, uptime
from gpunet.server.services.reward_config import RewardConfig
from gpunet.server.services.reward_inputs import UNSET_PREFIX, device_uptimes, plan


@dataclass(frozen=True)
class DeviceEpochUptime:
    epoch: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    slots_per_epoch: int
    online_slots: int
    counted_bitmap: int
    weight: Fraction
    closed: bool


def device_epoch_uptime(
    session: Session, config: RewardConfig, device: Device, epoch: int
) -> DeviceEpochUptime:
    """The device's slots in `epoch` by the very rules of the close (incident credit and
    forfeits included), from what has been flushed so far. Counted regardless of the
    model's weight: the weight is shown beside it."""
    clock = config.schedule.clock
    p = plan(session, clock, config.policy, epoch)
    online = uptime.device_bitmap(session, device.id, p.e_first, p.e_last)
    unit = {k: Fraction(1) for k in config.weights}
    mine = device_uptimes(session, clock, config.policy, unit, p, device_id=device.id)
    counted = {c.device_id: c.bitmap for c in mine}
    return DeviceEpochUptime(
        epoch=epoch,
        starts_at=dt.datetime.fromtimestamp(clock.epoch_start(epoch), dt.UTC),
        ends_at=dt.datetime.fromtimestamp(clock.epoch_end(epoch), dt.UTC),
        slots_per_epoch=clock.slots_per_epoch,
        online_slots=online.bit_count(),
        counted_bitmap=counted.get(device.id, 0),
        weight=config.weights.get(device.profile or "", Fraction(0)),
        closed=rewards.get(session, epoch) is not None,
    )


def my_payouts(
    session: Session, owner_id: int, epoch: int
) -> tuple[RewardEpoch | None, dict[str, int]]:
    """The owner's current wallet and its devices' `unset.` placeholders in `epoch`.

    A wallet shared with other accounts shows the wallet's whole amount; a wallet the
    owner used before changing it is not looked up (the public payout list has it).
    """
    row = rewards.get(session, epoch)
    if row is None:
        return None, {}
    wallet = session.execute(select(Owner.wallet_address).where(Owner.id == owner_id)).scalar()
    wallets = [
        UNSET_PREFIX + pid
        for pid in session.execute(
            select(Device.public_id).where(Device.owner_id == owner_id)
        ).scalars()
    ]
    if wallet and valid_wallet(wallet):
        wallets.append(wallet)
    return row, rewards.payouts_for(session, epoch, wallets)
