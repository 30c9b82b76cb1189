"""Epochs and uptime slots: the time grid every reward rule is written on.

Time is integer Unix seconds. Epoch `e` covers ``[genesis + e*epoch_seconds,
genesis + (e+1)*epoch_seconds)`` and is cut into ``slots_per_epoch`` slots of
``slot_seconds`` each. Slots also have a *global* index counted from genesis, so rules
that look across an epoch boundary (incident look-back, forfeits) need no special case:
global slot ``g`` is slot ``g - e*slots_per_epoch`` of epoch ``e = g // slots_per_epoch``.

Invariants: ``epoch_seconds`` is a positive multiple of ``slot_seconds``; every
timestamp maps to exactly one epoch and one slot (floor division, also before genesis).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpunet.core.bounds import EARLIEST_TS, LATEST_TS
from gpunet.core.errors import InvalidInput

DEFAULT_EPOCH_SECONDS = 3600
DEFAULT_SLOT_SECONDS = 60
MAX_SLOTS_PER_EPOCH = 1 << 20  # a bitmap of at most 128 KiB per device and epoch


@dataclass(frozen=True, slots=True)
class EpochClock:
    """Maps timestamps to epochs and slots. Immutable and cheap to copy."""

    genesis: int = 0
    epoch_seconds: int = DEFAULT_EPOCH_SECONDS
    slot_seconds: int = DEFAULT_SLOT_SECONDS

    def __post_init__(self) -> None:
        for name in ("genesis", "epoch_seconds", "slot_seconds"):
            value = getattr(self, name)
            if type(value) is not int:
                raise InvalidInput(f"{name} must be an integer", field=name)
        if self.slot_seconds <= 0 or self.epoch_seconds <= 0:
            raise InvalidInput("epoch and slot lengths must be positive")
        if self.epoch_seconds % self.slot_seconds:
            raise InvalidInput("epoch_seconds must be a multiple of slot_seconds")
        if self.epoch_seconds // self.slot_seconds > MAX_SLOTS_PER_EPOCH:
            raise InvalidInput("too many slots per epoch")

    @property
    def slots_per_epoch(self) -> int:
        return self.epoch_seconds // self.slot_seconds

    def epoch_index(self, ts: float) -> int:
        """The epoch containing `ts` (negative before genesis)."""
        return int((ts - self.genesis) // self.epoch_seconds)

    def epoch_start(self, epoch: int) -> int:
        return self.genesis + epoch * self.epoch_seconds

    def epoch_end(self, epoch: int) -> int:
        """Exclusive end of `epoch` (the start of the next one)."""
        return self.epoch_start(epoch + 1)

    def check_epoch(self, epoch: int) -> None:
        """InvalidInput unless `epoch` lies in the span of time the project can represent
        (core.bounds): an epoch from a request is bounded by this before its times are
        turned into datetimes, which would overflow past year 9999."""
        if self.epoch_start(epoch) < EARLIEST_TS or self.epoch_end(epoch) > LATEST_TS:
            raise InvalidInput("the epoch lies outside the representable time", field="epoch")

    def global_slot(self, ts: float) -> int:
        """The global slot containing `ts`."""
        return int((ts - self.genesis) // self.slot_seconds)

    def global_slot_ceil(self, ts: float) -> int:
        """The first global slot that starts at or after `ts`."""
        return -int((self.genesis - ts) // self.slot_seconds)

    def slot_start(self, global_slot: int) -> int:
        return self.genesis + global_slot * self.slot_seconds

    def first_slot(self, epoch: int) -> int:
        """Global index of slot 0 of `epoch`."""
        return epoch * self.slots_per_epoch

    def slot_index(self, epoch: int, ts: float) -> int | None:
        """Slot of `ts` inside `epoch`, or None when `ts` lies outside the epoch."""
        local = self.global_slot(ts) - self.first_slot(epoch)
        return local if 0 <= local < self.slots_per_epoch else None
