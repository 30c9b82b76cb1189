"""Flush each replica's buffered heartbeats into `uptime_slots` every few seconds.

The interval is the most uptime a crash can lose; the epoch closer waits at least that
long after an epoch ends (settings.rewards_settle_s) so every replica's last flush of
the epoch is in before it is read. On shutdown the buffer is flushed once more.
"""

from __future__ import annotations

import logging
import threading

from gpunet.server.db.engine import Database
from gpunet.server.services.uptime import UptimeRecorder

log = logging.getLogger("gpunet.background.uptime")


class UptimeFlusher:
    def __init__(self, recorder: UptimeRecorder, database: Database, interval_s: float) -> None:
        self._recorder = recorder
        self._database = database
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpunet-uptime", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._flush()

    def _flush(self) -> None:
        try:
            self._recorder.flush(self._database)
        except Exception:  # kept in the buffer; retried next interval
            log.exception("uptime flush failed")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush()
