"""Verified uptime as per-device slot bitmaps.

A bitmap is a non-negative Python ``int``: bit ``i`` set means slot ``i`` of the epoch
(or, for the ``*_global`` helpers, slot ``base + i``) is counted. Python ints are exact,
unbounded and `int.bit_count` is O(words), so an hour of one-minute slots is 8 bytes.

Rules (see docs/rewards.md):

* a heartbeat marks the slot it falls in; several heartbeats in one slot count once;
* a slot counts only if the device was in an *eligible* status (``verified`` by default)
  for the whole slot, per its status history (`StatusChange` list);
* a failed spot check forfeits every slot after the one holding the last passed proof,
  up to and including the slot of the failure (`Forfeit`).

Invariant: every function here returns a bitmap with no bit at or above
``slots_per_epoch`` (``count_slots(b) <= clock.slots_per_epoch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpunet.core.errors import InvalidInput
from gpunet.core.models import DeviceStatus
from gpunet.core.rewards.clock import EpochClock

ELIGIBLE_STATUSES: frozenset[DeviceStatus] = frozenset({DeviceStatus.VERIFIED})


@dataclass(frozen=True, slots=True)
class StatusChange:
    """From `at` (inclusive) the device has `status`, until the next change.

    Before its first change a device is ``pending``. Changes at equal times apply in
    list order (the last one wins).
    """

    at: int
    status: DeviceStatus


@dataclass(frozen=True, slots=True)
class Forfeit:
    """A failed spot check at `failed_at`; the last passed proof was at `last_pass_at`."""

    last_pass_at: int
    failed_at: int

    def __post_init__(self) -> None:
        if self.failed_at < self.last_pass_at:
            raise InvalidInput("a failure cannot precede the last pass")


def range_mask(start: int, end: int) -> int:
    """Bits ``[start, end)`` set (clamped below at 0); 0 when the range is empty."""
    start = max(start, 0)
    if end <= start:
        return 0
    return ((1 << (end - start)) - 1) << start


def full_mask(clock: EpochClock) -> int:
    """Every slot of an epoch."""
    return (1 << clock.slots_per_epoch) - 1


def clamp(clock: EpochClock, bitmap: int) -> int:
    """Drop bits outside the epoch (and reject negative bitmaps)."""
    if bitmap < 0:
        raise InvalidInput("a bitmap cannot be negative")
    return bitmap & full_mask(clock)


def count_slots(clock: EpochClock, bitmap: int) -> int:
    """Number of counted slots; never more than ``clock.slots_per_epoch``."""
    return clamp(clock, bitmap).bit_count()


def merge_heartbeats(
    clock: EpochClock, epoch: int, bitmap: int, timestamps: Iterable[float]
) -> int:
    """Set the slot of each heartbeat that falls inside `epoch`; others are ignored."""
    bitmap = clamp(clock, bitmap)
    first = clock.first_slot(epoch)
    n = clock.slots_per_epoch
    for ts in timestamps:
        local = clock.global_slot(ts) - first
        if 0 <= local < n:
            bitmap |= 1 << local
    return bitmap


def bitmap_from_heartbeats(clock: EpochClock, epoch: int, timestamps: Iterable[float]) -> int:
    return merge_heartbeats(clock, epoch, 0, timestamps)


def forfeit_range(clock: EpochClock, bitmap: int, start_slot: int, end_slot: int) -> int:
    """Clear local slots ``[start_slot, end_slot)`` (clamped to the epoch)."""
    return clamp(clock, bitmap) & ~range_mask(start_slot, end_slot)


def eligible_runs(
    changes: Sequence[StatusChange], eligible: frozenset[DeviceStatus] = ELIGIBLE_STATUSES
) -> list[tuple[int, int | None]]:
    """Maximal time ranges ``[start, end)`` spent in an eligible status (end None: open)."""
    ordered = sorted(enumerate(changes), key=lambda ic: (ic[1].at, ic[0]))
    runs: list[tuple[int, int | None]] = []
    run_start: int | None = None
    i = 0
    while i < len(ordered):
        at = ordered[i][1].at
        # Several changes at the same instant: only the last one is ever in effect.
        while i + 1 < len(ordered) and ordered[i + 1][1].at == at:
            i += 1
        ok = ordered[i][1].status in eligible
        if ok and run_start is None:
            run_start = at
        elif not ok and run_start is not None:
            runs.append((run_start, at))
            run_start = None
        i += 1
    if run_start is not None:
        runs.append((run_start, None))
    return runs


def status_at(changes: Sequence[StatusChange], ts: float, *, before: bool = False) -> DeviceStatus:
    """Status in effect at `ts` (or just before it, when `before`)."""
    current = DeviceStatus.PENDING
    best: tuple[int, int] | None = None
    for i, change in enumerate(changes):
        if (change.at < ts) if before else (change.at <= ts):
            key = (change.at, i)
            if best is None or key > best:
                best, current = key, change.status
    return current


def eligible_mask_global(
    clock: EpochClock,
    changes: Sequence[StatusChange],
    first: int,
    last: int,
    eligible: frozenset[DeviceStatus] = ELIGIBLE_STATUSES,
) -> int:
    """Bit ``g - first`` set for each global slot ``g`` in ``[first, last)`` spent
    entirely in an eligible status."""
    mask = 0
    for start, end in eligible_runs(changes, eligible):
        lo = max(clock.global_slot_ceil(start), first)
        hi = last if end is None else min(clock.global_slot(end), last)
        mask |= range_mask(lo - first, hi - first)
    return mask


def verified_mask(
    clock: EpochClock,
    epoch: int,
    changes: Sequence[StatusChange],
    eligible: frozenset[DeviceStatus] = ELIGIBLE_STATUSES,
) -> int:
    """Slots of `epoch` during which the device was eligible the whole slot."""
    first = clock.first_slot(epoch)
    return eligible_mask_global(clock, changes, first, first + clock.slots_per_epoch, eligible)


def forfeit_mask(clock: EpochClock, epoch: int, forfeits: Iterable[Forfeit]) -> int:
    """Slots of `epoch` lost to failed spot checks.

    For each forfeit: global slots from the one after the slot of the last pass up to
    and including the slot of the failure.
    """
    first = clock.first_slot(epoch)
    mask = 0
    for f in forfeits:
        lo = clock.global_slot(f.last_pass_at) + 1 - first
        hi = clock.global_slot(f.failed_at) + 1 - first
        mask |= range_mask(lo, min(hi, clock.slots_per_epoch))
    return mask


def to_bytes(clock: EpochClock, bitmap: int) -> bytes:
    """Little-endian storage form: bit i of the bitmap is bit (i % 8) of byte i // 8."""
    return clamp(clock, bitmap).to_bytes((clock.slots_per_epoch + 7) // 8, "little")


def from_bytes(clock: EpochClock, data: bytes) -> int:
    if len(data) != (clock.slots_per_epoch + 7) // 8:
        raise InvalidInput("bitmap has the wrong length for this epoch")
    bitmap = int.from_bytes(data, "little")
    if bitmap >> clock.slots_per_epoch:
        raise InvalidInput("bitmap sets slots beyond the epoch")
    return bitmap
