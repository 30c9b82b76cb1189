"""Finding 1: "challenges can be ignored for free".

A device that passed once keeps sending signed heartbeats for two simulated days, with
four roll-calls, and never fetches a challenge. It must stop earning from its first
overdue challenge, end suspended or unpaid, and cost the coordinator at most one
challenge row per reissue interval (not one per scheduler pass).
"""

from __future__ import annotations

import pytest

from gpunet.core.clock import FrozenClock
from gpunet.server.db.engine import Database
from tests.adversarial.world import (
    CPU_DEV,
    answer_if_asked,
    challenges,
    coordinator,
    device_row,
    heartbeat,
    rounds,
)

HOURS = 48
TICK_S = 300  # scheduler passes
BEAT_EVERY = 2  # a heartbeat every 10 minutes: 288 in 48 h


@pytest.mark.parametrize(
    "beat_offset_s",
    [
        0,  # heartbeats land as challenges are issued: heard from, so each one fails
        75,  # heartbeats never overlap a challenge's window: each one lapses unheard
    ],
)
def test_a_device_that_never_answers_earns_nothing_and_ends_suspended_or_unpaid(
    database: Database, database_url: str, clock: FrozenClock, beat_offset_s: int
) -> None:
    with coordinator(database, database_url, clock) as net:
        [dev] = net.enroll(net.register(), **CPU_DEV)
        job = rounds(net, rollcall_gaps=[10 * 3600] * 4)  # roll-calls at 10, 20, 30, 40 h
        job.run_once()
        assert answer_if_asked(net, dev)  # the one honest proof: enrollment
        start = clock.now()
        beats: list[tuple[float, bool]] = []
        for i in range(HOURS * 3600 // TICK_S):
            job.run_once()
            waited = 0
            if i % BEAT_EVERY == 0:
                clock.advance(beat_offset_s)
                waited = beat_offset_s
                beats.append((clock.now().timestamp(), bool(heartbeat(net, dev)["counted"])))
            clock.advance(TICK_S - waited)
        rows = challenges(net, dev)
        device = device_row(net, dev)

    assert len(beats) == HOURS * 3600 // (TICK_S * BEAT_EVERY)
    first_deadline = min(r.deadline for r in rows if r.kind != "enrollment").timestamp()
    late = [counted for ts, counted in beats if ts > first_deadline]
    assert late and not any(late), "heartbeats counted after the first overdue challenge"
    if beat_offset_s == 0:
        # Heard from, so each challenge was received: two failures suspend it.
        assert device.status == "suspended"
    else:
        # Never heard: spot checks lapse (it owes a proof, nothing counts), and the
        # first roll-call it lets lapse is a failure like any other.
        assert device.proof_owed_since is not None and device.status == "suspect"
        lapsed_rollcalls = [r for r in rows if r.kind == "rollcall"]
        assert lapsed_rollcalls and all(r.outcome == "missed" for r in lapsed_rollcalls)
        assert lapsed_rollcalls[0].reason == "too_slow"
    assert device.last_rollcall_pass_at is not None
    assert device.last_rollcall_pass_at <= start
    # Bounded: one re-issue per interval (600 s), the roll-calls, the failure retries.
    budget = HOURS * 3600 // 600 + 4 + 8
    assert len(rows) <= budget, f"{len(rows)} challenge rows in {HOURS} h"


def test_a_challenge_not_yet_heard_of_does_not_excuse_a_roll_call(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    """A spot check (or an owed proof's re-issue) issued in the same pass as a roll-call
    is replaced by the roll-call's challenge, so no device misses a simultaneous check
    because another challenge of its own was outstanding."""
    from gpunet.server.db.tables import Device
    from gpunet.server.services import proof_schedule, proofs
    from tests.adversarial.world import pk, state

    with coordinator(database, database_url, clock) as net:
        [dev] = net.enroll(net.register(), **CPU_DEV)
        rounds(net).run_once()
        assert answer_if_asked(net, dev)
        st = state(net)
        with net.database.transaction() as s:
            device = s.get(Device, pk(net, dev))
            spot = proofs.issue(s, device, kind="spot", batch="b1", now=clock.now(),
                                catalog=st.catalog, policy=st.proof_policy)
            assert spot is not None
            called = proof_schedule.rollcall(s, fraction=1.0, now=clock.now(),
                                             catalog=st.catalog, policy=st.proof_policy)
        assert called == 1
        rows = {r.kind: r for r in challenges(net, dev)}
        assert rows["spot"].outcome == "missed" and rows["spot"].reason is None
        assert rows["rollcall"].outcome == "open"
