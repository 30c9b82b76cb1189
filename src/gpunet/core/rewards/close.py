"""Closing an epoch: from raw heartbeats and status history to a published snapshot.

The two calls the coordinator makes, both pure:

* `device_uptime` once per device: the effective uptime bitmap of the epoch,
  ``((heartbeats & verified) | incident_credit) & ~forfeited``;
* `close_epoch` once per epoch: emission from the public schedule, exact allocation,
  Merkle snapshot.

Invariant: ``sum(payouts) + unallocated == emission_for_epoch(schedule, epoch)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpunet.core.models import DeviceStatus
from gpunet.core.rewards.allocation import (
    BASIS_POINTS,
    Allocation,
    DeviceUptime,
    Weight,
    allocate,
)
from gpunet.core.rewards.clock import EpochClock
from gpunet.core.rewards.emission import EmissionSchedule, emission_for_epoch
from gpunet.core.rewards.incidents import IncidentPolicy, IncidentWindow, incident_credit
from gpunet.core.rewards.snapshot import Snapshot, build_snapshot
from gpunet.core.rewards.uptime import (
    ELIGIBLE_STATUSES,
    Forfeit,
    StatusChange,
    clamp,
    forfeit_mask,
    verified_mask,
)


def device_uptime(
    clock: EpochClock,
    epoch: int,
    bitmaps: Mapping[int, int],
    changes: Sequence[StatusChange],
    *,
    windows: Sequence[IncidentWindow] = (),
    forfeits: Iterable[Forfeit] = (),
    policy: IncidentPolicy | None = None,
    eligible: frozenset[DeviceStatus] = ELIGIBLE_STATUSES,
) -> int:
    """Effective uptime bitmap of one device for `epoch`.

    `bitmaps` maps epoch index -> raw heartbeat bitmap (this epoch, plus earlier ones
    when an incident window's look-back reaches into them). Forfeits apply last, so a
    failed proof also cancels incident credit after the last pass.
    """
    raw = clamp(clock, bitmaps.get(epoch, 0))
    counted = raw & verified_mask(clock, epoch, changes, eligible)
    if windows:
        counted |= incident_credit(clock, epoch, bitmaps, changes, windows, policy, eligible)
    return counted & ~forfeit_mask(clock, epoch, forfeits)


def to_device_uptime(
    clock: EpochClock, wallet: str, model: str, uptime: int, cluster_bitmap: int = 0
) -> DeviceUptime:
    """The allocation input for one device: counted slots, and those of them served in a
    customer's cluster (`cluster_bitmap`: slots the device was placed in one)."""
    uptime = clamp(clock, uptime)
    return DeviceUptime(wallet, model, uptime.bit_count(),
                        (uptime & clamp(clock, cluster_bitmap)).bit_count())


@dataclass(frozen=True, slots=True)
class EpochClose:
    allocation: Allocation
    snapshot: Snapshot


def close_epoch(
    schedule: EmissionSchedule,
    epoch: int,
    devices: Iterable[DeviceUptime],
    weights: Mapping[str, Weight],
    *,
    bonus: Weight = BASIS_POINTS,
) -> EpochClose:
    """Allocate the epoch's scheduled emission over `devices` and build its snapshot."""
    allocation = allocate(
        epoch,
        emission_for_epoch(schedule, epoch),
        devices,
        weights,
        bonus=bonus,
        slots_per_epoch=schedule.clock.slots_per_epoch,
    )
    return EpochClose(allocation, build_snapshot(allocation))
