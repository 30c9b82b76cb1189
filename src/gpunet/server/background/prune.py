"""Forget replay nonces and rate counters once they can no longer matter."""

from __future__ import annotations

import functools
import logging

from gpunet.core.clock import Clock
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.engine import Database
from gpunet.server.services import devices, ratelimit

log = logging.getLogger("gpunet.background.prune")


def prune_once(database: Database, clock: Clock) -> tuple[int, int]:
    now = clock.now()
    with database.transaction() as session:
        nonces = devices.prune_nonces(session, now)
        counters = ratelimit.prune(session, now)
    if nonces or counters:
        log.info("pruned %d nonces and %d rate counters", nonces, counters)
    return nonces, counters


def pruner(database: Database, clock: Clock, interval_s: float = 60.0) -> PeriodicJob:
    return PeriodicJob(
        "prune", interval_s, functools.partial(prune_once, database, clock), stop_timeout=5.0
    )
