"""Agent duties run on their own: one failing never stops the others."""

from __future__ import annotations

import asyncio
from typing import Any

from gpunet.agent.control.duties import Duty, HeartbeatDuty, drive


class FakeLink:
    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


class Broken(Duty):
    name = "broken"
    interval = 0.01

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, link: Any) -> None:
        self.calls += 1
        raise RuntimeError("this duty always fails")


def test_a_failing_duty_does_not_stop_heartbeats(monkeypatch: Any) -> None:
    real_sleep = asyncio.sleep

    async def quick(delay: float) -> None:  # the 1 s pause after a failure, shortened
        await real_sleep(min(delay, 0.01))

    monkeypatch.setattr(asyncio, "sleep", quick)
    link = FakeLink()
    broken, beat = Broken(), HeartbeatDuty(0.01)

    async def scenario() -> None:
        tasks = [asyncio.create_task(drive(d, link)) for d in (broken, beat)]  # type: ignore[arg-type]
        await real_sleep(0.3)
        link.closed = True
        await asyncio.wait_for(asyncio.gather(*tasks), 2)

    asyncio.run(scenario())
    assert broken.calls >= 3
    assert beat.sent >= 5
    assert [m["seq"] for m in link.sent] == list(range(1, beat.sent + 1))
