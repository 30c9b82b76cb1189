"""A key rotation killed at every one of its steps heals by itself (issue 12, finding 1).

The kill is a SystemExit raised from `rotation.on_step` at step i, for each i: nothing
after that point runs, and every keystore write before it is already durable (each is
one atomic rename or link), which is what a SIGKILL leaves behind. The "restarted
agent" is a fresh Keystore over the same files and a live signer, as `gpunet worker
run` and `gpunet worker status` build them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpunet.agent import rotation
from gpunet.agent.client import WorkerClient
from gpunet.agent.discovery import fake_gpu
from gpunet.agent.enroll import enroll_host
from gpunet.agent.keystore import Keystore
from gpunet.core.clock import unix
from tests.integration.conftest import Net


@pytest.fixture
def restore_hook() -> Iterator[None]:
    yield
    rotation.on_step = None


@pytest.mark.parametrize("step", rotation.STEPS)
def test_rotation_killed_at_each_step_recovers_without_anyone(
    net: Net, tmp_path: Path, step: str, restore_hook: None
) -> None:
    store = Keystore(tmp_path / "keys")
    enroll_host(
        net.client, store, code=net.code(net.register()), gpus=[fake_gpu(0)],
        coordinator_url="http://c",
    )
    [before] = store.devices()
    clock = lambda: unix(net.clock.now())  # noqa: E731

    def kill(at: str) -> None:
        if at == step:
            raise SystemExit(137)

    rotation.on_step = kill
    with pytest.raises(SystemExit):
        rotation.rotate_device_key(net.client, store, before.gpu_uuid, clock=clock)
    rotation.on_step = None

    # The agent restarts: the same files, a fresh process's view of them.
    restarted = Keystore(tmp_path / "keys")
    client = WorkerClient(net.client, restarted.live_signer(before.gpu_uuid), clock=clock)
    assert client.whoami()["device_id"] == before.device_id  # same identity, no human
    [after] = restarted.devices()
    assert after.device_id == before.device_id
    # Only a kill after the coordinator took the new key needs healing; then it is done.
    assert client.recovered_rotation == (step == "answered")
    if client.recovered_rotation:
        assert not after.rotation_pending and after.public_key != before.public_key
    # Whatever the step, running rotate-key again completes cleanly and the device
    # still speaks with the key the coordinator holds.
    rotation.rotate_device_key(net.client, restarted, before.gpu_uuid, clock=clock)
    assert WorkerClient(net.client, restarted.signer(before.gpu_uuid), clock=clock).whoami()[
        "device_id"
    ] == before.device_id
