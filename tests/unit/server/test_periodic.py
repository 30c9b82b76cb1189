"""PeriodicJob: a failing pass never stops the job, and stop runs the final duty.

Waits are on events the job sets, bounded at 30 s for a loaded machine; nothing sleeps.
"""

from __future__ import annotations

import threading

import pytest

from gpunet.server.background.periodic import PeriodicJob


def test_a_failing_pass_is_logged_and_the_job_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    passes: list[int] = []
    second = threading.Event()

    def run_once() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("first pass fails")
        second.set()

    job = PeriodicJob("flaky", 0.001, run_once)
    job.start()
    try:
        assert second.wait(30)
    finally:
        job.stop()
    assert "background job flaky failed" in caplog.text


def test_stop_runs_on_stop_once_even_if_never_started() -> None:
    stopped: list[str] = []
    job = PeriodicJob("idle", 3600, lambda: None, on_stop=lambda: stopped.append("done"))
    job.stop()
    assert stopped == ["done"]


def test_a_job_starts_once_and_needs_a_positive_interval() -> None:
    job = PeriodicJob("once", 3600, lambda: None)
    job.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            job.start()
    finally:
        job.stop()
    with pytest.raises(ValueError, match="positive"):
        PeriodicJob("never", 0, lambda: None)
