"""Finding 4 (coordinator side): a device that chooses when to fetch gains nothing.

The clock starts at issue, so a late fetch only leaves less of the budget, and two
devices of one backend challenged in one roll-call cannot take turns: the second runs
out of time however the fetches are staggered.
"""

from __future__ import annotations

from gpunet.core.clock import FrozenClock
from gpunet.core.pog import Failure, FailureReason
from gpunet.server.db.engine import Database
from gpunet.server.services import proof_schedule
from tests.adversarial.world import (
    CPU_DEV,
    answer_if_asked,
    challenges,
    coordinator,
    fetch,
    prove,
    state,
)


def test_a_late_fetch_is_charged_from_issue(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        [dev] = net.enroll(net.register(), **CPU_DEV)
        with net.database.transaction() as s:
            st = state(net)
            proof_schedule.schedule_due(
                s, now=clock.now(), catalog=st.catalog, policy=st.proof_policy
            )
        window = st.proof_policy.delivery_allowance_s
        clock.advance(2.0 + window * 0.9)  # waits most of the window before fetching
        challenge = fetch(net, dev)
        assert challenge is not None
        # Its own work takes a fifth of the budget: on time from its fetch, late from issue.
        verdict = prove(net, dev, challenge, work_s=challenge.budget_s * 0.2)
        assert isinstance(verdict, Failure) and verdict.reason is FailureReason.TOO_SLOW
        [row] = challenges(net, dev)
        assert row.commit_elapsed_s is not None
        assert row.commit_elapsed_s >= challenge.budget_s  # measured from issue


def test_staggered_fetches_by_one_backend_fail_the_second_device(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        # Different owners and hosts: the attacker chose cohorts that never meet.
        a = net.enroll(net.register(), **CPU_DEV, host="host-aa-eeeeeeeeeeee")[0]
        b = net.enroll(net.register(), **CPU_DEV, host="host-bb-eeeeeeeeeeee")[0]
        st = state(net)
        with net.database.transaction() as s:
            proof_schedule.schedule_due(
                s, now=clock.now(), catalog=st.catalog, policy=st.proof_policy
            )
        assert answer_if_asked(net, a) and answer_if_asked(net, b)
        clock.advance(60)
        with net.database.transaction() as s:
            called = proof_schedule.rollcall(
                s, fraction=1.0, now=clock.now(), catalog=st.catalog, policy=st.proof_policy
            )
        assert called == 2
        first = fetch(net, a)
        assert first is not None
        # One backend: each chain takes 60% of what the deadline allows; B is fetched
        # only once A's chain is done, so B's own work would be on time from its fetch.
        work = (first.budget_s + st.proof_policy.delivery_allowance_s) * 0.6
        assert prove(net, a, first, work_s=work)
        second = fetch(net, b)
        assert second is not None
        verdict = prove(net, b, second, work_s=work)
        assert isinstance(verdict, Failure) and verdict.reason is FailureReason.TOO_SLOW
        rollcall = [r for r in challenges(net) if r.kind == "rollcall"]
        assert sorted(r.outcome for r in rollcall) == ["failed", "passed"]
