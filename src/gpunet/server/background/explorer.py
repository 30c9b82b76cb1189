"""Keep the explorer's hourly network snapshots (services.explorer_history).

Every replica may run it: a snapshot's primary key is its hour, so of two replicas the
first writes it and the second finds it there. Only the hour just ended is written: the
counts by status are "as of now", and writing them for an hour long past (after the
coordinator was down) would put today's numbers at yesterday's time; a gap in the plot
says truthfully that nobody was looking.
"""

from __future__ import annotations

import functools

from gpunet.core.clock import Clock
from gpunet.core.pog import Catalog
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.engine import Database
from gpunet.server.services import explorer_history
from gpunet.server.services.reward_config import RewardConfig

TICK_S = 60.0


def snapshot_once(database: Database, catalog: Catalog, config: RewardConfig, clock: Clock) -> bool:
    now = clock.now()
    period = explorer_history.period_of(now) - 1
    with database.transaction() as session:
        return explorer_history.take_snapshot(
            session, catalog, config.schedule.clock, period, now
        )


def history_keeper(
    database: Database, catalog: Catalog, config: RewardConfig, clock: Clock
) -> PeriodicJob:
    run_once = functools.partial(snapshot_once, database, catalog, config, clock)
    return PeriodicJob("explorer-history", TICK_S, run_once)
