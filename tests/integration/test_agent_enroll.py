"""The agent's enrollment against a real coordinator: keys per GPU, kept private, idempotent."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gpunet.agent.client import CoordinatorError, WorkerClient
from gpunet.agent.discovery import fake_gpu
from gpunet.agent.enroll import enroll_host
from gpunet.agent.keystore import Keystore
from gpunet.core.clock import unix
from tests.integration.conftest import Net


def test_enroll_host_makes_one_key_per_gpu_and_records_ids(net: Net, tmp_path: Path) -> None:
    owner = net.register()
    gpus = [fake_gpu(i) for i in range(3)]
    store = Keystore(tmp_path / "keys")
    lines: list[str] = []
    result = enroll_host(
        net.client,
        store,
        code=net.code(owner, 3),
        gpus=gpus,
        coordinator_url="http://coordinator",
        progress=lines.append,
    )
    assert len(result.enrolled) == 3 and not result.already
    stored = store.devices()
    assert {d.gpu_uuid for d in stored} == {g.gpu_uuid for g in gpus}
    assert len({d.public_key for d in stored}) == 3
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("enrolling 3 device(s)" in line for line in lines)
    # Each stored key speaks for its own device.
    for d in stored:
        client = WorkerClient(
            net.client, store.signer(d.gpu_uuid), clock=lambda: unix(net.clock.now())
        )
        assert client.whoami()["device_id"] == d.device_id


def test_enrolling_again_keeps_identities(net: Net, tmp_path: Path) -> None:
    owner = net.register()
    store = Keystore(tmp_path / "keys")
    first = enroll_host(
        net.client, store, code=net.code(owner), gpus=[fake_gpu(0)], coordinator_url="http://c"
    )
    again = enroll_host(
        net.client, store, code=net.code(owner), gpus=[fake_gpu(0)], coordinator_url="http://c"
    )
    assert again.enrolled == [] and again.already == first.enrolled


def test_refused_enrollment_says_why_and_can_be_retried(net: Net, tmp_path: Path) -> None:
    owner = net.register()
    store = Keystore(tmp_path / "keys")
    with pytest.raises(CoordinatorError, match="invalid or expired enrollment code"):
        enroll_host(
            net.client,
            store,
            code="gpn-enr-" + "c" * 32,
            gpus=[fake_gpu(0)],
            coordinator_url="http://c",
        )
    # The key made for the failed attempt is reused, not duplicated.
    result = enroll_host(
        net.client, store, code=net.code(owner), gpus=[fake_gpu(0)], coordinator_url="http://c"
    )
    assert len(result.enrolled) == 1 and len(store.devices()) == 1


def test_key_rotation_keeps_identity_and_retires_the_old_key(net: Net, tmp_path: Path) -> None:
    from gpunet.agent.rotation import rotate_device_key
    from gpunet.core.signing import DeviceSigner

    store = Keystore(tmp_path / "keys")
    enroll_host(
        net.client,
        store,
        code=net.code(net.register()),
        gpus=[fake_gpu(0)],
        coordinator_url="http://c",
    )
    [before] = store.devices()
    old_key = store.load(before.gpu_uuid)
    device_id = rotate_device_key(
        net.client, store, before.gpu_uuid, clock=lambda: unix(net.clock.now())
    )
    [after] = store.devices()
    assert device_id == before.device_id == after.device_id
    assert after.public_key != before.public_key and not after.rotation_pending
    clock = lambda: unix(net.clock.now())  # noqa: E731
    assert (
        WorkerClient(net.client, store.signer(after.gpu_uuid), clock=clock).whoami()["device_id"]
        == device_id
    )
    stale = WorkerClient(net.client, DeviceSigner(str(device_id), old_key), clock=clock)
    with pytest.raises(CoordinatorError):
        stale.whoami()
