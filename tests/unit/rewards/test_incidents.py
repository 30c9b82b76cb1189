"""Incident windows, including the T6 scenario at the pure level."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet.core.errors import InvalidInput
from gpunet.core.models import DeviceStatus
from gpunet.core.rewards import (
    DeviceUptime,
    EpochClock,
    Forfeit,
    IncidentPolicy,
    IncidentWindow,
    StatusChange,
    close_epoch,
    count_slots,
    device_uptime,
    emission_for_epoch,
    incident_credit,
    load_schedule,
    verify_payout,
)
from gpunet.core.rewards.incidents import MAX_WINDOW_SECONDS

V, P, X = DeviceStatus.VERIFIED, DeviceStatus.PENDING, DeviceStatus.SUSPENDED
CLOCK = EpochClock(genesis=0, epoch_seconds=3600, slot_seconds=60)
FULL = (1 << 60) - 1


def slots(lo: int, hi: int) -> int:
    return sum(1 << i for i in range(lo, hi))


def test_window_validation():
    IncidentWindow(0, MAX_WINDOW_SECONDS, "ok")
    for args in [(10, 10, "r"), (10, 5, "r"), (0, MAX_WINDOW_SECONDS + 1, "r"), (0, 5, ""),
                 (0, 5, "x" * 201), (0, 5, "tab\there"), (0.5, 5, "r")]:
        with pytest.raises(InvalidInput):
            IncidentWindow(*args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        IncidentPolicy(lookback_slots=0)
    with pytest.raises(InvalidInput):
        IncidentPolicy(max_credit_slots=-1)


def test_credit_for_device_online_and_verified_just_before():
    w = IncidentWindow(3600 + 30 * 60, 3600 + 45 * 60, "firewall change")
    online_until_window = {1: slots(0, 30)}
    changes = [StatusChange(0, V)]
    assert incident_credit(CLOCK, 1, online_until_window, changes, [w]) == slots(30, 45)
    # offline for longer than the look-back before the window: nothing
    assert incident_credit(CLOCK, 1, {1: slots(0, 20)}, changes, [w]) == 0
    # never verified before the window: nothing, even though online
    assert incident_credit(CLOCK, 1, online_until_window, [], [w]) == 0
    assert incident_credit(CLOCK, 1, online_until_window,
                           [StatusChange(3600 + 40 * 60, V)], [w]) == 0
    # heartbeats in the look-back while still pending do not qualify
    assert incident_credit(CLOCK, 1, online_until_window,
                           [StatusChange(3600 + 29 * 60 + 30, V)], [w]) == 0
    # suspended just before the window: nothing
    assert incident_credit(CLOCK, 1, online_until_window,
                           [StatusChange(0, V), StatusChange(w.start - 1, X)], [w]) == 0
    # a change exactly at the window start (caused by the incident) does not matter
    assert incident_credit(CLOCK, 1, online_until_window,
                           [StatusChange(0, V), StatusChange(w.start, X)], [w]) == slots(30, 45)


def test_window_slots_overlap_and_cap():
    # [12:30 .. 15:10) into slots 0..15 of epoch 0 (partial slots are credited whole)
    w = IncidentWindow(12 * 60 + 30, 15 * 60 + 10, "partial slots")
    bitmaps = {0: slots(8, 12)}
    assert incident_credit(CLOCK, 0, bitmaps, [StatusChange(0, V)], [w]) == slots(12, 16)
    capped = IncidentPolicy(lookback_slots=5, max_credit_slots=2)
    assert incident_credit(CLOCK, 0, bitmaps, [StatusChange(0, V)], [w], capped) == slots(12, 14)
    none = IncidentPolicy(max_credit_slots=0)
    assert incident_credit(CLOCK, 0, bitmaps, [StatusChange(0, V)], [w], none) == 0


def test_window_across_epochs_with_lookback_in_previous_epoch():
    w = IncidentWindow(3600, 3600 + 2 * 3600, "regional outage")  # all of epochs 1 and 2
    bitmaps = {0: slots(58, 60)}  # seen in the last two minutes of epoch 0
    ch = [StatusChange(0, V)]
    assert incident_credit(CLOCK, 1, bitmaps, ch, [w]) == FULL
    policy = IncidentPolicy(max_credit_slots=90)
    assert incident_credit(CLOCK, 2, bitmaps, ch, [w], policy) == slots(0, 30)
    assert incident_credit(CLOCK, 0, bitmaps, ch, [w]) == 0
    # missing look-back epoch reads as offline
    assert incident_credit(CLOCK, 1, {}, ch, [w]) == 0


def test_back_to_back_windows_chain_in_time_order():
    w1 = IncidentWindow(10 * 60, 20 * 60, "first")
    w2 = IncidentWindow(20 * 60, 30 * 60, "second")
    bitmaps = {0: slots(5, 10)}
    ch = [StatusChange(0, V)]
    for order in ([w1, w2], [w2, w1]):
        assert incident_credit(CLOCK, 0, bitmaps, ch, order) == slots(10, 30)
    # without the first window, the device was not seen before the second
    assert incident_credit(CLOCK, 0, bitmaps, ch, [w2]) == 0


def test_forfeit_cancels_credit_after_last_pass():
    w = IncidentWindow(30 * 60, 50 * 60, "outage")
    bitmaps = {0: slots(0, 30)}
    ch = [StatusChange(0, V)]
    full = device_uptime(CLOCK, 0, bitmaps, ch, windows=[w])
    assert full == slots(0, 50)
    lost = device_uptime(CLOCK, 0, bitmaps, ch, windows=[w],
                         forfeits=[Forfeit(20 * 60 + 5, 40 * 60)])
    assert lost == slots(0, 21) | slots(41, 50)


def test_t6_honest_gpus_cut_off_at_snapshot_still_paid():
    """A firewall change cuts honest GPUs off for the end of epoch 1, where the snapshot
    is taken; an operator declares the window. They are paid as if online; a device that
    was never verified before the window gets nothing for it."""
    schedule = load_schedule({"version": 1, "genesis": 0, "seasons": [
        {"name": "s1", "start": 0, "end": 30 * 86400, "budget": 720 * 10**18 + 5}]})
    epoch = 1
    w = IncidentWindow(3600 + 40 * 60, 7200 + 10 * 60, "firewall change, forced restart")
    verified = [StatusChange(0, V)]
    cut_off = {0: FULL, 1: slots(0, 40)}  # online until the firewall change
    unaffected = {0: FULL, 1: FULL}
    # enrolled before, but its proof passes only after the incident started
    late = {0: FULL, 1: FULL}
    late_changes = [StatusChange(0, P), StatusChange(3600 + 45 * 60, V)]
    # verified earlier but went dark long before the incident
    gone = {0: slots(0, 10)}

    table = {
        "alice": (cut_off, verified),
        "bob": (unaffected, verified),
        "carol": (late, late_changes),
        "dave": (gone, verified),
    }
    uptime = {name: device_uptime(CLOCK, epoch, bm, ch, windows=[w])
              for name, (bm, ch) in table.items()}
    assert count_slots(CLOCK, uptime["alice"]) == 60
    assert count_slots(CLOCK, uptime["bob"]) == 60
    assert uptime["carol"] == slots(45, 60)  # its own verified slots, nothing credited
    assert uptime["dave"] == 0

    devices = [DeviceUptime(f"wallet-{name}", "h100", count_slots(CLOCK, bm))
               for name, bm in uptime.items()]
    closed = close_epoch(schedule, epoch, devices, {"h100": 10_000})
    pay = closed.allocation.payouts
    emission = emission_for_epoch(schedule, epoch)
    assert sum(pay.values()) == emission and closed.allocation.unallocated == 0
    assert abs(pay["wallet-alice"] - pay["wallet-bob"]) <= 1
    assert "wallet-dave" not in pay
    assert pay["wallet-carol"] * 4 - pay["wallet-alice"] in range(-5, 6)
    for wallet, amount in pay.items():
        assert verify_payout(closed.snapshot.root, epoch, wallet, amount,
                             closed.snapshot.proof(wallet))

    # without the declared window alice would have lost a third of her epoch
    no_window = device_uptime(CLOCK, epoch, cut_off, verified)
    assert count_slots(CLOCK, no_window) == 40
    # the emission does not depend on who took part
    assert close_epoch(schedule, epoch, devices[:1], {"h100": 10_000}).allocation.payouts == {
        "wallet-alice": emission}


@settings(deadline=None)
@given(st.integers(0, 3),
       st.lists(st.integers(0, 4 * 3600), max_size=80),
       st.lists(st.tuples(st.integers(0, 4 * 3600), st.sampled_from([V, P, X])), max_size=6),
       st.lists(st.tuples(st.integers(0, 4 * 3600), st.integers(1, 3 * 3600)), max_size=3))
def test_credited_uptime_stays_inside_epoch_and_needs_verification(epoch, hb, raw_ch, raw_w):
    from gpunet.core.rewards.uptime import bitmap_from_heartbeats

    bitmaps = {e: bitmap_from_heartbeats(CLOCK, e, hb) for e in range(4)}
    changes = [StatusChange(t, s) for t, s in raw_ch]
    windows = [IncidentWindow(a, a + n, "w") for a, n in raw_w]
    b = device_uptime(CLOCK, epoch, bitmaps, changes, windows=windows)
    assert 0 <= count_slots(CLOCK, b) <= CLOCK.slots_per_epoch and b >> 60 == 0
    if all(s != V for _, s in raw_ch):
        assert b == 0
    # windows only ever add uptime
    assert b & device_uptime(CLOCK, epoch, bitmaps, changes) == device_uptime(
        CLOCK, epoch, bitmaps, changes)


def test_to_device_uptime_counts_cluster_slots_inside_uptime():
    from gpunet.core.rewards import to_device_uptime

    d = to_device_uptime(CLOCK, "w", "h100", slots(0, 30), cluster_bitmap=slots(20, 60))
    assert d == DeviceUptime("w", "h100", 30, 10)
