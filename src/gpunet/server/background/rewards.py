"""Close due epochs automatically, and forget uptime bits past their retention.

Every replica may run it: closing is idempotent (the epoch's row is inserted once), so
two replicas racing for the same epoch pay it once. A tick closes at most a day's
worth of epochs, so a long backlog never holds the job for long.
"""

from __future__ import annotations

import logging
import threading

from gpunet.core.clock import Clock
from gpunet.server.db.engine import Database
from gpunet.server.services import rewards
from gpunet.server.services.reward_config import RewardConfig

log = logging.getLogger("gpunet.background.rewards")
MAX_PER_TICK = 24


def close_once(database: Database, config: RewardConfig, clock: Clock, keep_days: int) -> list[int]:
    now = clock.now()
    done = rewards.close_due(database, config, now=now, limit=MAX_PER_TICK)
    rewards.prune_uptime(database, config, now=now, keep_days=keep_days)
    return [c.row.epoch for c in done if c.created]


class EpochCloser:
    def __init__(
        self,
        database: Database,
        config: RewardConfig,
        clock: Clock,
        *,
        tick_s: float,
        keep_days: int,
    ) -> None:
        self._database = database
        self._config = config
        self._clock = clock
        self._tick = tick_s
        self._keep_days = keep_days
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpunet-epochs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                closed = close_once(self._database, self._config, self._clock, self._keep_days)
                if closed:
                    log.info("closed epochs %s", closed)
            except Exception:  # retried next tick; a closed epoch is never closed twice
                log.exception("epoch close pass failed")
