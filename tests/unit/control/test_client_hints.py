"""What the agent's log says when the coordinator is not the one it enrolled with: the
setting that fixes it (issue 12, finding 4: an agent looped on this line with no hint)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from tests.unit.control.test_client import SERVER_ID, check_timeout, until, with_fake

from gpunet.agent.control import ControlClient
from gpunet.core import control


def test_a_coordinator_of_another_name_is_answered_with_the_setting_to_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gpunet.agent.control")

    async def misnamed(reader: Any, writer: Any, seen: dict[str, Any]) -> None:
        # The coordinator behind a proxy that was never told its public URL.
        hello = control.Hello(b"n" * 32, "http://127.0.0.1:8000", 0.0, (1, 1))
        writer.write(control.encode(hello.wire()))
        await asyncio.sleep(0.05)

    async def check(client: ControlClient, seen: dict[str, Any]) -> None:
        await until(lambda: seen["connections"] >= 2)

    asyncio.run(check_timeout(with_fake(misnamed, check)))
    said = [r.getMessage() for r in caplog.records if "calls itself" in r.getMessage()]
    assert said, caplog.text
    assert "'http://127.0.0.1:8000', expected 'https://coordinator.example'" in said[0]
    assert f"set the coordinator's GPUNET_PUBLIC_URL to {SERVER_ID}" in said[0]
    assert "enroll again with --coordinator" in said[0]
