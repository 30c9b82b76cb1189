"""The proof-of-GPU scheduler: expire missed challenges, issue due ones (with their
cohorts), and now and then call the roll.

Every replica may run it. Due devices are taken with SKIP LOCKED on PostgreSQL, and a
device never has two outstanding challenges, so two replicas never double-issue.
"""

from __future__ import annotations

import logging
import random
import threading

from gpunet.core.clock import Clock
from gpunet.core.pog import Catalog
from gpunet.server.db.engine import Database
from gpunet.server.services import proof_schedule, proofs

log = logging.getLogger("gpunet.background.proofs")


class ProofScheduler:
    def __init__(
        self,
        database: Database,
        clock: Clock,
        catalog: Catalog,
        policy: proofs.ProofPolicy,
        *,
        tick_s: float,
        rollcall_mean_s: float,
        rollcall_fraction: float,
    ) -> None:
        self._database = database
        self._clock = clock
        self._catalog = catalog
        self._policy = policy
        self._tick = tick_s
        self._rollcall_p = min(1.0, tick_s / rollcall_mean_s)
        self._rollcall_fraction = rollcall_fraction
        self._rng = random.SystemRandom()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpunet-proofs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> tuple[int, int, int]:
        now = self._clock.now()
        with self._database.transaction() as session:
            expired = proofs.expire(session, now=now, policy=self._policy)
        with self._database.transaction() as session:
            issued = proof_schedule.schedule_due(
                session, now=now, catalog=self._catalog, policy=self._policy
            )
        called = 0
        if self._rng.random() < self._rollcall_p:
            with self._database.transaction() as session:
                called = proof_schedule.rollcall(
                    session,
                    fraction=self._rollcall_fraction,
                    now=now,
                    catalog=self._catalog,
                    policy=self._policy,
                )
        return expired, issued, called

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                expired, issued, called = self.tick()
                if expired or issued or called:
                    log.info(
                        "challenges: %d expired, %d issued, %d in a roll-call",
                        expired,
                        issued,
                        called,
                    )
            except Exception:  # retried next tick; one bad pass never stops the scheduler
                log.exception("proof scheduler pass failed")
