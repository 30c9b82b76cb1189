"""The proof-of-GPU scheduler: settle overdue challenges, issue due ones (with their
cohorts), and call the roll at random times.

Every replica may run it. Due devices are taken with SKIP LOCKED on PostgreSQL, and a
device never has two outstanding challenges, so two replicas never double-issue. Each
replica draws its own roll-call times, so with R replicas roll-calls come R times as
often as `rollcall_mean_s` says (still at unpredictable, exponential times).
"""

from __future__ import annotations

import datetime as dt
import logging
import random

from gpunet.core.clock import Clock
from gpunet.core.pog import Catalog
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.engine import Database
from gpunet.server.services import proof_schedule, proofs

log = logging.getLogger("gpunet.background.proofs")


def quiet_window_s(catalog: Catalog, policy: proofs.ProofPolicy) -> float:
    """How long before a roll-call no other challenge is issued: the longest any
    challenge can stay open (commit budget, opening window, allowance). A device with a
    challenge of its own still open when the roll-call comes would be left out of it
    (issue() gives a device one challenge at a time), and one GPU behind several devices
    could keep that device's uptime; with the quiet window none is open."""
    longest = max(
        (m.budget.budget_s + m.budget.open_budget_s for m in catalog.models), default=0.0
    )
    return longest + policy.delivery_allowance_s


class ProofRounds:
    """One pass of the scheduler per `run_once`; the next roll-call time is drawn here
    (exponential gaps of mean `rollcall_mean_s`), so nobody can tell when it comes."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        catalog: Catalog,
        policy: proofs.ProofPolicy,
        *,
        rollcall_mean_s: float,
        rollcall_fraction: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.clock = clock
        self.catalog = catalog
        self.policy = policy
        self.rollcall_mean_s = rollcall_mean_s
        self.rollcall_fraction = rollcall_fraction
        self.rng = rng or random.SystemRandom()
        self.next_rollcall_at: dt.datetime | None = None
        self.quiet_s = quiet_window_s(catalog, policy)

    def draw_next_rollcall(self, now: dt.datetime) -> dt.datetime:
        gap = self.rng.expovariate(1.0 / self.rollcall_mean_s)
        self.next_rollcall_at = now + dt.timedelta(seconds=gap)
        return self.next_rollcall_at

    def run_once(self) -> tuple[int, int, int]:
        """(settled, issued, roll-called) in this pass."""
        now = self.clock.now()
        if self.next_rollcall_at is None:
            self.draw_next_rollcall(now)
        assert self.next_rollcall_at is not None
        with self.database.transaction() as session:
            settled = proofs.expire(session, now=now, policy=self.policy)
        issued = 0
        quiet_from = self.next_rollcall_at - dt.timedelta(seconds=self.quiet_s)
        if now < quiet_from:
            with self.database.transaction() as session:
                issued = proof_schedule.schedule_due(
                    session, now=now, catalog=self.catalog, policy=self.policy
                )
        called = 0
        if now >= self.next_rollcall_at:
            with self.database.transaction() as session:
                called = proof_schedule.rollcall(
                    session,
                    fraction=self.rollcall_fraction,
                    now=now,
                    catalog=self.catalog,
                    policy=self.policy,
                )
            self.draw_next_rollcall(now)
        if settled or issued or called:
            log.info(
                "challenges: %d settled, %d issued, %d in a roll-call", settled, issued, called
            )
        return settled, issued, called


def proof_scheduler(
    database: Database,
    clock: Clock,
    catalog: Catalog,
    policy: proofs.ProofPolicy,
    *,
    tick_s: float,
    rollcall_mean_s: float,
    rollcall_fraction: float,
) -> PeriodicJob:
    rounds = ProofRounds(
        database,
        clock,
        catalog,
        policy,
        rollcall_mean_s=rollcall_mean_s,
        rollcall_fraction=rollcall_fraction,
    )
    return PeriodicJob("proofs", tick_s, rounds.run_once)
