"""One way to run a background job: `PeriodicJob(name, interval, run_once)`.

Every background job of the coordinator is a `run_once()` that does one pass and
returns; this class repeats it on a thread until stopped. Tests call `run_once`
directly (no sleeping, no private attributes), and a pass that raises is logged and
retried at the next interval: one bad pass never stops a job, as with the agent's
duties.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gpunet.background")


class PeriodicJob:
    """Runs `run_once` every `interval` seconds on a daemon thread.

    `on_stop` (optional) runs once after the loop has ended, e.g. a last flush of
    buffered heartbeats so a clean shutdown loses nothing. `stop` waits up to
    `stop_timeout` seconds for a pass in progress; the thread is a daemon, so a pass
    still running after that dies with the process (every job's pass is idempotent).
    """

    def __init__(
        self,
        name: str,
        interval: float,
        run_once: Callable[[], Any],
        *,
        on_stop: Callable[[], Any] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"{name}: the interval must be positive")
        self.name = name
        self.interval = interval
        self.run_once = run_once
        self._on_stop = on_stop
        self.stop_timeout = stop_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._loop, name=f"gpunet-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout if timeout is None else timeout)
        if self._on_stop is not None:
            self._guarded(self._on_stop)

    def _guarded(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # retried at the next interval
            log.exception("background job %s failed; it carries on", self.name)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._guarded(self.run_once)
