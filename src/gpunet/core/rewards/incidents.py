"""Incident windows: operators protect honest devices from outages that are not theirs.

An operator declares ``[start, end)`` with a reason (T6: a firewall change cut honest
GPUs off right at a snapshot). A device *qualifies* for a window when both hold:

1. its status just before ``start`` is eligible (``verified``), and
2. it was online and eligible in at least one of the ``lookback_slots`` global slots just
   before the window's first slot (a heartbeat slot spent entirely verified, or a slot
   already credited by an earlier window, so back-to-back windows chain).

A qualifying device is credited every slot of the window *as if online*, capped at the
first ``max_credit_slots`` slots of the window. Window slots are every slot that
overlaps ``[start, end)``. A device never verified before the window gets nothing.

Invariant: the credit for an epoch is a bitmap inside that epoch; it depends only on
the inputs (windows are processed in (start, end, reason) order, not list order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpunet.core.errors import InvalidInput
from gpunet.core.models import DeviceStatus
from gpunet.core.rewards.clock import EpochClock
from gpunet.core.rewards.uptime import (
    ELIGIBLE_STATUSES,
    StatusChange,
    eligible_mask_global,
    range_mask,
    status_at,
)

_REASON = re.compile(r"^[\x20-\x7e]{1,200}$")
MAX_WINDOW_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class IncidentWindow:
    """An operator-declared outage ``[start, end)`` (integer Unix seconds)."""

    start: int
    end: int
    reason: str

    def __post_init__(self) -> None:
        if type(self.start) is not int or type(self.end) is not int:
            raise InvalidInput("incident bounds must be integer seconds")
        if not self.start < self.end <= self.start + MAX_WINDOW_SECONDS:
            raise InvalidInput("an incident window must be non-empty and at most 7 days")
        if not _REASON.match(self.reason):
            raise InvalidInput("incident reason must be 1..200 printable ASCII characters")


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    """How far back a device must have been seen, and how much a window may credit."""

    lookback_slots: int = 5
    max_credit_slots: int = 360  # 6 hours of one-minute slots

    def __post_init__(self) -> None:
        if not 1 <= self.lookback_slots <= 10_000:
            raise InvalidInput("lookback_slots must be within 1..10000")
        if not 0 <= self.max_credit_slots <= 100_000:
            raise InvalidInput("max_credit_slots must be within 0..100000")


def _global_bits(clock: EpochClock, bitmaps: Mapping[int, int], first: int, last: int) -> int:
    """Raw bitmap bits for global slots ``[first, last)``, gathered across epochs."""
    n = clock.slots_per_epoch
    out = 0
    g = first
    while g < last:
        epoch, local = divmod(g, n)
        take = min(n - local, last - g)
        bits = (bitmaps.get(epoch, 0) >> local) & ((1 << take) - 1)
        out |= bits << (g - first)
        g += take
    return out


def incident_credit(
    clock: EpochClock,
    epoch: int,
    bitmaps: Mapping[int, int],
    changes: Sequence[StatusChange],
    windows: Sequence[IncidentWindow],
    policy: IncidentPolicy | None = None,
    eligible: frozenset[DeviceStatus] = ELIGIBLE_STATUSES,
) -> int:
    """Slots of `epoch` credited to one device by incident windows.

    `bitmaps` maps epoch index to the device's raw heartbeat bitmap; it must hold the
    epochs covering each window's look-back (missing epochs read as offline). Pass every
    window that overlaps `epoch` (and earlier ones it may chain from).
    """
    policy = policy or IncidentPolicy()
    n = clock.slots_per_epoch
    e_first, e_last = clock.first_slot(epoch), clock.first_slot(epoch) + n
    credited: dict[int, int] = {}  # window first slot -> credited global range end

    def credited_bits(first: int, last: int) -> int:
        bits = 0
        for lo, hi in credited.items():
            bits |= range_mask(lo - first, min(hi, last) - first)
        return bits

    result = 0
    for w in sorted(windows, key=lambda w: (w.start, w.end, w.reason)):
        w_first = clock.global_slot(w.start)
        w_last = min(clock.global_slot_ceil(w.end), w_first + policy.max_credit_slots)
        if w_last <= w_first:
            continue
        if status_at(changes, w.start, before=True) not in eligible:
            continue
        lb_first = w_first - policy.lookback_slots
        seen = _global_bits(clock, bitmaps, lb_first, w_first)
        seen &= eligible_mask_global(clock, changes, lb_first, w_first, eligible)
        seen |= credited_bits(lb_first, w_first)
        if not seen:
            continue
        credited[w_first] = max(credited.get(w_first, w_first), w_last)
        lo, hi = max(w_first, e_first), min(w_last, e_last)
        result |= range_mask(lo - e_first, hi - e_first)
    return result
