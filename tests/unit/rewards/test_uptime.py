from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet.core.errors import InvalidInput
from gpunet.core.models import DeviceStatus
from gpunet.core.rewards.clock import EpochClock
from gpunet.core.rewards.uptime import (
    Forfeit,
    StatusChange,
    bitmap_from_heartbeats,
    count_slots,
    eligible_runs,
    forfeit_mask,
    forfeit_range,
    from_bytes,
    merge_heartbeats,
    status_at,
    to_bytes,
    verified_mask,
)

V, P, S, X = (DeviceStatus.VERIFIED, DeviceStatus.PENDING, DeviceStatus.SUSPECT,
              DeviceStatus.SUSPENDED)
CLOCK = EpochClock(genesis=1_000_000, epoch_seconds=3600, slot_seconds=60)
G = CLOCK.genesis


def test_clock_defaults_and_slots():
    c = EpochClock()
    assert (c.epoch_seconds, c.slot_seconds, c.slots_per_epoch) == (3600, 60, 60)
    assert CLOCK.epoch_index(G) == 0
    assert CLOCK.epoch_index(G - 1) == -1
    assert CLOCK.epoch_index(G + 3599.9) == 0
    assert CLOCK.slot_index(1, G + 3600) == 0
    assert CLOCK.slot_index(1, G + 3600 + 59.99) == 0
    assert CLOCK.slot_index(1, G + 3600 + 60) == 1
    assert CLOCK.slot_index(1, G + 7199) == 59
    assert CLOCK.slot_index(1, G + 7200) is None
    assert CLOCK.slot_index(1, G + 3599) is None
    assert CLOCK.global_slot_ceil(G + 61) == 2
    assert CLOCK.global_slot_ceil(G + 60) == 1


@pytest.mark.parametrize("kw", [dict(epoch_seconds=100, slot_seconds=30),
                                dict(slot_seconds=0), dict(epoch_seconds=-60),
                                dict(genesis=1.5)])
def test_clock_rejects_bad_config(kw):
    with pytest.raises(InvalidInput):
        EpochClock(**kw)


def test_heartbeats_to_bitmap():
    hb = [G + 5, G + 30, G + 61, G + 3599, G + 3600, G - 1]
    b = bitmap_from_heartbeats(CLOCK, 0, hb)
    assert b == (1 << 0) | (1 << 1) | (1 << 59)
    assert count_slots(CLOCK, b) == 3
    b = merge_heartbeats(CLOCK, 0, b, [G + 120])
    assert count_slots(CLOCK, b) == 4


def test_forfeit_range_clamps():
    full = (1 << 60) - 1
    assert count_slots(CLOCK, forfeit_range(CLOCK, full, 10, 20)) == 50
    assert count_slots(CLOCK, forfeit_range(CLOCK, full, -5, 5)) == 55
    assert forfeit_range(CLOCK, full, 0, 1000) == 0
    assert forfeit_range(CLOCK, full, 30, 10) == full


def test_status_runs_and_status_at():
    changes = [StatusChange(10, V), StatusChange(20, S), StatusChange(20, V),
               StatusChange(30, X), StatusChange(40, V)]
    assert eligible_runs(changes) == [(10, 30), (40, None)]
    assert status_at(changes, 5) == P
    assert status_at(changes, 30) == X
    assert status_at(changes, 30, before=True) == V
    assert status_at(changes, 20) == V
    # list order matters only for equal times, not otherwise
    assert eligible_runs(list(reversed(changes))) == [(10, 20), (40, None)]


def test_verified_mask_whole_slots_only():
    # verified from mid slot 2 to mid slot 10, suspended, verified again from slot 50
    changes = [StatusChange(G + 150, V), StatusChange(G + 630, X), StatusChange(G + 3000, V)]
    m = verified_mask(CLOCK, 0, changes)
    assert m == sum(1 << i for i in range(3, 10)) | sum(1 << i for i in range(50, 60))
    # the next epoch is entirely verified
    assert verified_mask(CLOCK, 1, changes) == (1 << 60) - 1
    assert verified_mask(CLOCK, 0, []) == 0
    assert verified_mask(CLOCK, 0, [StatusChange(G, S)]) == 0


def test_forfeit_since_last_pass():
    # last pass in slot 5, failure in slot 20: slots 6..20 are lost
    m = forfeit_mask(CLOCK, 0, [Forfeit(G + 5 * 60 + 1, G + 20 * 60 + 7)])
    assert m == sum(1 << i for i in range(6, 21))
    # a pass in the previous epoch forfeits from the start of this one
    m = forfeit_mask(CLOCK, 1, [Forfeit(G + 3000, G + 3600 + 90)])
    assert m == 0b11
    # a failure after the epoch clears to its end
    assert forfeit_mask(CLOCK, 0, [Forfeit(G + 3000, G + 9000)]) == sum(
        1 << i for i in range(51, 60))
    with pytest.raises(InvalidInput):
        Forfeit(10, 5)


def test_bytes_roundtrip_and_bounds():
    b = bitmap_from_heartbeats(CLOCK, 0, [G, G + 3540])
    data = to_bytes(CLOCK, b)
    assert len(data) == 8 and from_bytes(CLOCK, data) == b
    with pytest.raises(InvalidInput):
        from_bytes(CLOCK, b"\xff" * 8)
    with pytest.raises(InvalidInput):
        from_bytes(CLOCK, b"\x00" * 7)
    with pytest.raises(InvalidInput):
        count_slots(CLOCK, -1)


clock_st = st.sampled_from([CLOCK, EpochClock(genesis=7, epoch_seconds=600, slot_seconds=60),
                            EpochClock(epoch_seconds=3600, slot_seconds=1)])


@settings(deadline=None)
@given(clock_st, st.integers(-3, 3), st.lists(st.floats(-1e5, 1e7, allow_nan=False)),
       st.integers(min_value=0, max_value=2**4000))
def test_uptime_never_exceeds_epoch(clock, epoch, heartbeats, junk):
    b = merge_heartbeats(clock, epoch, junk, heartbeats)
    assert 0 <= count_slots(clock, b) <= clock.slots_per_epoch
    assert b >> clock.slots_per_epoch == 0


@settings(deadline=None)
@given(clock_st, st.integers(0, 3),
       st.lists(st.tuples(st.integers(0, 20_000), st.sampled_from([V, P, S, X])), max_size=12),
       st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)), max_size=4))
def test_masks_inside_epoch(clock, epoch, raw_changes, raw_forfeits):
    changes = [StatusChange(clock.genesis + t, s) for t, s in raw_changes]
    forfeits = [Forfeit(clock.genesis + min(a, b), clock.genesis + max(a, b))
                for a, b in raw_forfeits]
    for m in (verified_mask(clock, epoch, changes), forfeit_mask(clock, epoch, forfeits)):
        assert 0 <= m < 1 << clock.slots_per_epoch
    if not any(s == V for _, s in raw_changes):
        assert verified_mask(clock, epoch, changes) == 0
