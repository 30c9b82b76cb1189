"""What a cluster's devices served, counted only where the coordinator saw them alive.

A member serves from its node's start to its stop or loss (`running_from` ..
`running_until`). Of that, a slot counts only if the device's heartbeats counted in it
(the uptime ledger, services.uptime): a node whose agent was killed stops earning at its
last heartbeat, and a gap while it was away is never credited, even if it came back.

The same slots are the cluster slots of the reward split (docs/rewards.md): for each
closed epoch, a device's cluster slots are its counted slots that fall in one of its
serving intervals (`cluster_slots`), weighted by the cluster bonus in force.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gpunet.core.rewards import DeviceUptime, EpochClock
from gpunet.core.rewards.uptime import range_mask
from gpunet.server.db.cluster_tables import ClusterMember
from gpunet.server.services.reward_inputs import Counted
from gpunet.server.services.uptime import device_bitmap


@dataclass(frozen=True)
class MemberUsage:
    device_public_id: str
    role: str
    running_from: dt.datetime | None
    running_until: dt.datetime | None
    serving_s: float  # wall time between start and stop (or now)
    credited_s: int  # counted slots within it, in seconds


def member_usage(
    session: Session,
    clock: EpochClock,
    member: ClusterMember,
    device_public_id: str,
    now: dt.datetime,
) -> MemberUsage:
    start, end = member.running_from, member.running_until or (
        now if member.released_at is None else member.released_at
    )
    if start is None or end is None or end <= start:
        return MemberUsage(device_public_id, member.role, start, member.running_until, 0.0, 0)
    first = clock.global_slot(start.timestamp())
    last = clock.global_slot_ceil(end.timestamp())
    bits = device_bitmap(session, member.device_id, first, last)
    return MemberUsage(
        device_public_id,
        member.role,
        start,
        member.running_until,
        (end - start).total_seconds(),
        bits.bit_count() * clock.slot_seconds,
    )


def serving_masks(
    session: Session, clock: EpochClock, epoch: int
) -> dict[int, int]:
    """Device row id -> the slots of `epoch` (bit i = slot i) it spent serving a
    cluster, from every member interval overlapping the epoch."""
    start = dt.datetime.fromtimestamp(clock.epoch_start(epoch), dt.UTC)
    end = dt.datetime.fromtimestamp(clock.epoch_end(epoch), dt.UTC)
    rows = session.execute(
        select(ClusterMember.device_id, ClusterMember.running_from, ClusterMember.running_until,
               ClusterMember.released_at)
        .where(
            ClusterMember.running_from.is_not(None),
            ClusterMember.running_from < end,
            or_(ClusterMember.running_until.is_(None), ClusterMember.running_until > start),
        )
    ).all()
    first_slot = clock.first_slot(epoch)
    masks: dict[int, int] = defaultdict(int)
    for device_id, since, until, released in rows:
        if since is None:
            continue
        stop = until or released or end
        lo = clock.global_slot(since.timestamp()) - first_slot
        hi = clock.global_slot_ceil(min(stop, end).timestamp()) - first_slot
        masks[device_id] |= range_mask(max(lo, 0), min(hi, clock.slots_per_epoch))
    return dict(masks)


def with_cluster_slots(counted: Iterable[Counted], masks: dict[int, int]) -> Iterator[Counted]:
    """Each device's allocation input with its cluster slots: its counted slots (bit i
    = slot i of the epoch) inside its serving mask."""
    for c in counted:
        mask = masks.get(c.device_id)
        if not mask:
            yield c
            continue
        u = c.uptime
        yield c._replace(
            uptime=DeviceUptime(u.wallet, u.model, u.slots, (c.bitmap & mask).bit_count())
        )
