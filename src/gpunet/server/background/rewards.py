"""Close due epochs automatically, and forget uptime bits past their retention.

Every replica may run it: closing is idempotent (the epoch's row is inserted once), so
two replicas racing for the same epoch pay it once, and a pass that fails is simply
retried at the next tick. A tick closes at most a day's worth of epochs, so a long
backlog never holds the job for long.
"""

from __future__ import annotations

import functools
import logging

from gpunet.core.clock import Clock
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.engine import Database
from gpunet.server.services import rewards
from gpunet.server.services.reward_config import RewardConfig

log = logging.getLogger("gpunet.background.rewards")
MAX_PER_TICK = 24


def close_once(database: Database, config: RewardConfig, clock: Clock, keep_days: int) -> list[int]:
    now = clock.now()
    done = rewards.close_due(database, config, now=now, limit=MAX_PER_TICK)
    rewards.prune_uptime(database, config, now=now, keep_days=keep_days)
    closed = [c.row.epoch for c in done if c.created]
    if closed:
        log.info("closed epochs %s", closed)
    return closed


def epoch_closer(
    database: Database, config: RewardConfig, clock: Clock, *, tick_s: float, keep_days: int
) -> PeriodicJob:
    # A shutdown waits longer for a close in progress than for the other jobs: a large
    # epoch takes seconds to write, and letting it finish saves the next replica a redo.
    run_once = functools.partial(close_once, database, config, clock, keep_days)
    return PeriodicJob("epochs", tick_s, run_once, stop_timeout=30.0)
