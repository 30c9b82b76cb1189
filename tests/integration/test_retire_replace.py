"""Retiring a device, and replacing one whose keys were lost (issue 12, finding 2).

A retired device stops counting, is never challenged and cannot authenticate, while its
history stays public; a replacement proves ownership with a fresh enrollment code, moves
the GPU to a new key and device with an audit record, and the GPU never counts twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from sqlalchemy import func, select

from gpunet.agent.client import CoordinatorError, WorkerClient
from gpunet.agent.discovery import fake_gpu
from gpunet.agent.enroll import enroll_host
from gpunet.agent.keystore import Keystore
from gpunet.cli.worker import _replacements
from gpunet.core.clock import unix
from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import AuditRecord, Challenge, Device
from gpunet.server.services import proof_schedule
from gpunet.server.services.audit import verify_chain
from tests.integration.conftest import DeviceHandle, Net, OwnerHandle
from tests.integration.rewards_world import (
    at,
    clock_of,
    close,
    flush,
    headers,
    heartbeat,
    move_to,
    record,
    state,
    verdict,
)


def _row(net: Net, device_id: str) -> Device:
    with net.database.read() as s:
        return s.execute(select(Device).where(Device.public_id == device_id)).scalar_one()


def _replace(
    net: Net, owner: OwnerHandle, old: DeviceHandle, *, replaces: str | None = None
) -> Any:
    """What `gpunet worker enroll --replace` sends: the same GPU, a fresh key and code."""
    c = net.client.post("/api/v1/enrollment-codes", json={}, headers=headers(net, owner))
    assert c.status_code == 201, c.text
    body, keys = net.enroll_body(c.json()["code"], [old.claim])
    if replaces is not None:
        body["devices"][0]["replaces"] = replaces
    r = net.client.post("/api/v1/enroll", json=body)
    return r, keys[0]


def _schedule(net: Net) -> None:
    st = state(net)
    with net.database.transaction() as s:
        proof_schedule.schedule_due(
            s, now=net.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )


def test_retire_stops_counting_and_challenges_and_keeps_history_public(net: Net) -> None:
    owner = net.register()
    dev, other = net.enroll(owner, 2)
    verdict(net, dev, True, net.clock.now())
    verdict(net, other, True, net.clock.now())
    assert net.client.get("/api/v1/explorer/stats").json()["devices_by_status"]["verified"] == 2

    r = net.client.post(f"/api/v1/devices/{dev.device_id}/retire", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "retired"

    stats = net.client.get("/api/v1/explorer/stats").json()
    assert stats["devices_by_status"]["verified"] == 1
    assert stats["devices_by_status"]["retired"] == 1
    # Its key authenticates nothing, and its holder is told why and what to do.
    hb = net.signed(dev, "POST", "/api/v1/worker/heartbeat", {})
    assert hb.status_code == 403 and "retired" in hb.text and "--replace" in hb.text
    assert heartbeat(net, other)  # the other device is untouched
    # Never challenged again, however long it waits.
    net.clock.advance(7 * 86400)
    _schedule(net)
    with net.database.read() as s:
        retired_pk = s.execute(
            select(Device.id).where(Device.public_id == dev.device_id)
        ).scalar_one()
        assert not s.execute(select(Challenge).where(Challenge.device_id == retired_pk)).first()
    # Its history stays public: the explorer still shows it, by id and by status.
    pub = net.client.get(f"/api/v1/explorer/devices/{dev.device_id}")
    assert pub.status_code == 200 and pub.json()["status"] == "retired"
    listed = net.client.get("/api/v1/explorer/devices", params={"status": "retired"}).json()
    assert [d["device_id"] for d in listed["items"]] == [dev.device_id]
    # Retiring twice is a conflict, and a retired device stays retired.
    again = net.client.post(f"/api/v1/devices/{dev.device_id}/retire", headers=headers(net, owner))
    assert again.status_code == 409
    verdict(net, dev, True, net.clock.now())  # a late verdict changes nothing
    assert _row(net, dev.device_id).status == DeviceStatus.RETIRED.value


def test_retire_voids_an_outstanding_challenge(net: Net) -> None:
    owner = net.register()
    (dev,) = net.enroll(owner, 1)
    _schedule(net)
    r = net.client.post(f"/api/v1/devices/{dev.device_id}/retire", headers=owner.headers)
    assert r.status_code == 200, r.text
    net.clock.advance(3600)
    with net.database.transaction() as s:
        from gpunet.server.services.proofs import expire

        expire(s, now=net.clock.now(), policy=state(net).proof_policy)
    with net.database.read() as s:
        outcomes = s.execute(select(Challenge.outcome, Challenge.detail)).all()
    assert outcomes and all(o == "missed" and "retired" in (d or "") for o, d in outcomes)
    assert _row(net, dev.device_id).status == DeviceStatus.RETIRED.value


def test_replace_after_losing_the_keystore_moves_the_gpu_with_an_audit_record(net: Net) -> None:
    owner = net.register()
    (old,) = net.enroll(owner, 1)
    verdict(net, old, True, net.clock.now())
    # The host lost GPUNET_HOME: a plain enroll of the same GPU is refused, and says how.
    plain, _ = _replace(net, owner, old)
    assert plain.status_code == 409
    assert f"--replace {old.device_id}" in plain.json()["error"]["message"]

    r, key = _replace(net, owner, old, replaces=old.device_id)
    assert r.status_code == 201, r.text
    [item] = r.json()["devices"]
    new = DeviceHandle(item["device_id"], key, old.claim, owner)
    assert new.device_id != old.device_id and item["gpu_uuid"] == old.claim.gpu_uuid

    before, after = _row(net, old.device_id), _row(net, new.device_id)
    assert before.status == "retired" and after.status == "pending"
    assert (after.gpu_uuid, after.pci_bus_id) == (old.claim.gpu_uuid, old.claim.pci_bus_id)
    with net.database.read() as s:
        [rec] = s.execute(
            select(AuditRecord).where(AuditRecord.action == "device.replace")
        ).scalars()
        assert rec.entity_id == old.device_id and rec.actor_kind == "owner"
        assert json.loads(rec.before or "{}")["public_key"] == before.public_key
        moved = json.loads(rec.after or "{}")
        assert moved["device_id"] == new.device_id
        assert moved["public_key"] == after.public_key
        assert moved["gpu_uuid"] == old.claim.gpu_uuid
        assert verify_chain(s).ok
    # The old key is dead; the new one works and starts proving from scratch.
    assert net.signed(old, "POST", "/api/v1/worker/heartbeat", {}).status_code == 403
    assert net.signed(new, "POST", "/api/v1/worker/heartbeat", {}).status_code == 200
    verdict(net, new, True, net.clock.now())
    assert _row(net, new.device_id).status == "verified"
    stats = net.client.get("/api/v1/explorer/stats").json()["devices_by_status"]
    assert stats["verified"] == 1 and stats["retired"] == 1
    # Replacing the retired device again is refused; the in-service one is named instead.
    twice, _ = _replace(net, owner, old, replaces=old.device_id)
    assert twice.status_code == 409


def test_a_replaced_gpu_never_counts_twice(net: Net) -> None:
    owner = net.register()
    (old,) = net.enroll(owner, 1)
    verdict(net, old, True, net.clock.now(), rollcall=True)
    epoch = clock_of(net).epoch_index(net.clock.now().timestamp()) + 1
    for slot in range(30):
        move_to(net, at(net, epoch, slot, 7))
        heartbeat(net, old)
    move_to(net, at(net, epoch, 30, 0))
    r, key = _replace(net, owner, old, replaces=old.device_id)
    assert r.status_code == 201, r.text
    new = DeviceHandle(r.json()["devices"][0]["device_id"], key, old.claim, owner)
    verdict(net, new, True, net.clock.now(), rollcall=True)
    for slot in range(30, 60):
        move_to(net, at(net, epoch, slot, 7))
        heartbeat(net, new)
        # The old device's stale control session still reports it: it must not count.
        record(net, old, net.clock.now())
    flush(net)
    move_to(net, at(net, epoch + 1, 0, int(state(net).rewards.settle_s)))
    closed = close(net, epoch)
    # One GPU, one epoch: at most one count per slot, however the identity moved.
    assert closed.row.counted_slots <= 60
    auth = headers(net, owner)
    bitmaps = []
    for d in (old, new):
        u = net.client.get(f"/api/v1/devices/{d.device_id}/uptime?epoch={epoch}", headers=auth)
        assert u.status_code == 200, u.text
        bitmaps.append(int(u.json()["counted_bitmap"], 16))
    assert bitmaps[0] & bitmaps[1] == 0, "a slot counted for both the old and the new device"
    assert bin(bitmaps[0]).count("1") == 30 and bin(bitmaps[1]).count("1") == 30
    assert closed.row.counted_slots == 60


def test_another_owners_device_is_not_found_and_nothing_changes(net: Net) -> None:
    alice, mallory = net.register(), net.register()
    (dev,) = net.enroll(alice, 1)
    before = _row(net, dev.device_id)
    r = net.client.post(f"/api/v1/devices/{dev.device_id}/retire", headers=mallory.headers)
    assert r.status_code == 404
    # Mallory's own code cannot replace Alice's device either, even for its real GPU.
    stolen, _ = _replace(net, mallory, dev, replaces=dev.device_id)
    assert stolen.status_code == 404
    # Nor can a plain enroll of Alice's GPU learn which device holds it.
    plain, _ = _replace(net, mallory, dev)
    assert plain.status_code == 409 and dev.device_id not in plain.text
    after = _row(net, dev.device_id)
    assert (after.status, after.public_key, after.updated_at) == (
        before.status,
        before.public_key,
        before.updated_at,
    )
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(Device)).scalar_one() == 1


def test_a_replacement_must_be_the_same_gpu(net: Net) -> None:
    owner = net.register()
    a, b = net.enroll(owner, 2)
    # B's GPU may not take over A's device.
    body, _ = net.enroll_body(net.code(owner), [b.claim])
    body["devices"][0]["replaces"] = a.device_id
    r = net.client.post("/api/v1/enroll", json=body)
    assert r.status_code == 409 and a.claim.gpu_uuid in r.json()["error"]["message"]
    assert _row(net, a.device_id).status == "pending"


def test_hostile_retire_and_replace_input_is_refused(net: Net) -> None:
    owner = net.register()
    (dev,) = net.enroll(owner, 1)
    for bad in ("dev_", "DEV_AAAAAAAAAAAAAAAA", "dev_aaaaaaaaaaaaaaa1", "' OR 1=1 --", "x" * 500):
        r = net.client.post(f"/api/v1/devices/{bad}/retire", headers=owner.headers)
        assert 400 <= r.status_code < 500, (bad, r.status_code)
        body, _ = net.enroll_body(net.code(owner), [dev.claim])
        body["devices"][0]["replaces"] = bad
        assert net.client.post("/api/v1/enroll", json=body).status_code == 422
    # Two entries may not replace one device, and no token retires nothing.
    body, _ = net.enroll_body(net.code(owner, 2), [dev.claim, dev.claim])
    for d in body["devices"]:
        d["replaces"] = dev.device_id
    assert 400 <= net.client.post("/api/v1/enroll", json=body).status_code < 500
    assert net.client.post(f"/api/v1/devices/{dev.device_id}/retire").status_code == 401
    assert _row(net, dev.device_id).status == "pending"


def test_the_agent_replaces_a_device_after_losing_its_keystore(net: Net, tmp_path: Path) -> None:
    """`gpunet worker enroll --replace`: what the agent sends after GPUNET_HOME was lost."""
    owner = net.register()
    gpu = fake_gpu(7)
    lost = Keystore(tmp_path / "lost" / "keys")
    [(uuid, old_id)] = enroll_host(
        net.client, lost, code=net.code(owner), gpus=[gpu], coordinator_url="http://c"
    ).enrolled
    fresh = Keystore(tmp_path / "fresh" / "keys")
    with pytest.raises(CoordinatorError) as refused:
        enroll_host(net.client, fresh, code=net.code(owner), gpus=[gpu], coordinator_url="http://c")
    assert refused.value.status == 409 and f"--replace {old_id}" in str(refused.value)
    result = enroll_host(
        net.client,
        fresh,
        code=net.code(owner),
        gpus=[gpu],
        coordinator_url="http://c",
        replaces=_replacements((old_id,), [uuid]),
    )
    [(moved, new_id)] = result.enrolled
    assert moved == uuid and new_id != old_id
    clock = lambda: unix(net.clock.now())  # noqa: E731
    assert WorkerClient(net.client, fresh.signer(uuid), clock=clock).whoami()["device_id"] == new_id
    with pytest.raises(CoordinatorError) as dead:
        WorkerClient(net.client, lost.signer(uuid), clock=clock).whoami()
    assert dead.value.status == 403 and "retired" in str(dead.value)


def test_replace_flag_names_the_gpu_on_a_many_gpu_host() -> None:
    assert _replacements(("dev_a",), ["GPU-1"]) == {"GPU-1": "dev_a"}
    assert _replacements(("GPU-2=dev_b",), ["GPU-1", "GPU-2"]) == {"GPU-2": "dev_b"}
    with pytest.raises(click.BadParameter, match="say which GPU"):
        _replacements(("dev_a",), ["GPU-1", "GPU-2"])
    with pytest.raises(click.BadParameter, match="no GPU GPU-9"):
        _replacements(("GPU-9=dev_a",), ["GPU-1"])
