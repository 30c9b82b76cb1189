"""Flush each replica's buffered heartbeats into `uptime_slots` every few seconds.

The interval is the most uptime a crash can lose; the epoch closer waits at least that
long after an epoch ends (settings.rewards_settle_s) so every replica's last flush of
the epoch is in before it is read. On shutdown the buffer is flushed once more. A
failed flush keeps the bits in the buffer, so the next pass writes them.
"""

from __future__ import annotations

import functools

from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.engine import Database
from gpunet.server.services.uptime import UptimeRecorder


def uptime_flusher(recorder: UptimeRecorder, database: Database, interval_s: float) -> PeriodicJob:
    flush = functools.partial(recorder.flush, database)
    return PeriodicJob("uptime", interval_s, flush, on_stop=flush)
