"""Forget replay nonces and rate counters once they can no longer matter."""

from __future__ import annotations

import logging
import threading

from gpunet.core.clock import Clock
from gpunet.server.db.engine import Database
from gpunet.server.services import devices, ratelimit

log = logging.getLogger("gpunet.background.prune")


def prune_once(database: Database, clock: Clock) -> tuple[int, int]:
    now = clock.now()
    with database.transaction() as session:
        nonces = devices.prune_nonces(session, now)
        counters = ratelimit.prune(session, now)
    return nonces, counters


class PruneJob:
    def __init__(self, database: Database, clock: Clock, interval_s: float = 60.0) -> None:
        self._database = database
        self._clock = clock
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpunet-prune", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                nonces, counters = prune_once(self._database, self._clock)
                if nonces or counters:
                    log.info("pruned %d nonces and %d rate counters", nonces, counters)
            except Exception:  # a failed pass is retried next interval; never kill the job
                log.exception("prune pass failed")
