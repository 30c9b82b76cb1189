"""Enrollment and device identity: one key per device, every device write signed."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from gpunet.core import signing
from gpunet.core.clock import unix
from gpunet.server.db.tables import Device
from tests.integration.conftest import Net, hardware


def device_count(net: Net) -> int:
    with net.database.read() as s:
        return int(s.execute(select(func.count()).select_from(Device)).scalar_one())


def test_enrollment_code_is_single_use(net: Net) -> None:
    owner = net.register()
    code = net.code(owner)
    body, _ = net.enroll_body(code, [hardware()])
    assert net.client.post("/api/v1/enroll", json=body).status_code == 201
    body2, _ = net.enroll_body(code, [hardware()])
    r = net.client.post("/api/v1/enroll", json=body2)
    assert r.status_code == 401
    assert device_count(net) == 1


def test_enrollment_code_expires(net: Net) -> None:
    owner = net.register()
    code = net.code(owner)
    net.clock.advance(net.settings.enrollment_code_ttl_s + 1)
    body, _ = net.enroll_body(code, [hardware()])
    assert net.client.post("/api/v1/enroll", json=body).status_code == 401
    assert device_count(net) == 0


def test_fabricated_code_is_refused_without_touching_devices(net: Net) -> None:
    fake = "gpn-enr-" + "a" * 32
    body, _ = net.enroll_body(fake, [hardware()])
    r = net.client.post("/api/v1/enroll", json=body)
    assert r.status_code == 401
    assert device_count(net) == 0


def test_devices_start_pending_with_claimed_hardware(net: Net) -> None:
    owner = net.register()
    [dev] = net.enroll(owner, model="RTX 4090", vram_mib=24564)
    r = net.client.get(f"/api/v1/devices/{dev.device_id}", headers=owner.headers)
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "pending"
    assert data["model"] == "RTX 4090"
    assert data["vram_mib"] == 24564
    assert data["gpu_uuid"] == dev.claim.gpu_uuid


def test_a_gpu_uuid_cannot_be_enrolled_twice(net: Net) -> None:
    a, b = net.register(), net.register()
    [dev] = net.enroll(a)
    body, _ = net.enroll_body(net.code(b), [hardware(gpu_uuid=dev.claim.gpu_uuid)])
    r = net.client.post("/api/v1/enroll", json=body)
    assert r.status_code == 409
    assert device_count(net) == 1


def test_one_enrollment_cannot_repeat_a_uuid_or_a_key(net: Net) -> None:
    owner = net.register()
    claim = hardware()
    body, _ = net.enroll_body(net.code(owner), [claim, claim])
    assert net.client.post("/api/v1/enroll", json=body).status_code == 422
    body, _ = net.enroll_body(net.code(owner), [hardware(), hardware()])
    body["devices"][1]["public_key"] = body["devices"][0]["public_key"]
    assert net.client.post("/api/v1/enroll", json=body).status_code in (401, 422)
    assert device_count(net) == 0


def test_proof_of_possession_is_bound_to_the_code_and_the_claim(net: Net) -> None:
    owner = net.register()
    code = net.code(owner)
    body, _ = net.enroll_body(code, [hardware()])
    # Change the claimed model after signing: the proof no longer matches.
    body["devices"][0]["hardware"]["model"] = "H200"
    assert net.client.post("/api/v1/enroll", json=body).status_code == 401
    # A proof made for another code does not transfer.
    other_body, _ = net.enroll_body(net.code(owner), [hardware()])
    other_body["code"] = code
    assert net.client.post("/api/v1/enroll", json=other_body).status_code == 401
    assert device_count(net) == 0


def test_code_limits_device_count_and_one_host_per_code(net: Net) -> None:
    owner = net.register()
    body, _ = net.enroll_body(net.code(owner, max_devices=1), [hardware(), hardware()])
    assert net.client.post("/api/v1/enroll", json=body).status_code == 422
    body, _ = net.enroll_body(
        net.code(owner),
        [hardware(host="host-aaaaaaaaaaaaaaaa"), hardware(host="host-bbbbbbbbbbbbbbbb")],
    )
    assert net.client.post("/api/v1/enroll", json=body).status_code == 422
    assert device_count(net) == 0


def test_signed_metadata_write_and_replay(net: Net) -> None:
    [dev] = net.enroll(net.register())
    path = "/api/v1/worker/device"
    raw = json.dumps({"agent_version": "1.2.3"}).encode()
    auth = dev.signer.authorization("PATCH", path, raw, unix(net.clock.now()))
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    assert net.client.patch(path, content=raw, headers=headers).status_code == 200
    again = net.client.patch(path, content=raw, headers=headers)
    assert again.status_code == 401
    assert "replay" in again.json()["error"]["message"]


def test_signature_covers_body_and_path(net: Net) -> None:
    [dev] = net.enroll(net.register())
    path = "/api/v1/worker/device"
    raw = json.dumps({"agent_version": "1.2.3"}).encode()
    auth = dev.signer.authorization("PATCH", path, raw, unix(net.clock.now()))
    tampered = json.dumps({"agent_version": "6.6.6"}).encode()
    r = net.client.patch(
        path, content=tampered, headers={"Authorization": auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 401
    auth = dev.signer.authorization("GET", path, b"", unix(net.clock.now()))
    r = net.client.post(path + "/rotate-key", content=b"{}", headers={"Authorization": auth})
    assert r.status_code == 401


def test_stale_or_future_timestamps_are_refused(net: Net) -> None:
    [dev] = net.enroll(net.register())
    now = unix(net.clock.now())
    window = net.settings.device_signature_window_s
    for ts in (now - window - 5, now + window + 5):
        r = net.signed(dev, "PATCH", "/api/v1/worker/device", {"os_name": "Linux"}, timestamp=ts)
        assert r.status_code == 401


def test_a_device_cannot_sign_as_another(net: Net) -> None:
    a, b = net.register(), net.register()
    [da], [db] = net.enroll(a), net.enroll(b)
    r = net.signed(da, "PATCH", "/api/v1/worker/device", {"os_name": "Evil"}, as_id=db.device_id)
    assert r.status_code == 401
    r = net.client.get(f"/api/v1/devices/{db.device_id}", headers=b.headers)
    assert r.json()["os_name"] is None


def test_unknown_and_null_worker_fields_are_refused(net: Net) -> None:
    [dev] = net.enroll(net.register())
    for body in ({"owner_id": 1}, {"status": "verified"}, {}, {"os_name": None}):
        r = net.signed(dev, "PATCH", "/api/v1/worker/device", body)
        assert r.status_code == 422, (body, r.text)


def test_key_rotation_keeps_identity(net: Net) -> None:
    owner = net.register()
    [dev] = net.enroll(owner)
    new = Ed25519PrivateKey.generate()
    new_pub = signing.public_key_text(new.public_key())
    ts = unix(net.clock.now())
    msg = signing.rotation_message(device_id=dev.device_id, new_public_key=new_pub, timestamp=ts)
    body = {
        "new_public_key": new_pub,
        "timestamp": ts,
        "old_key_signature": signing.b64u(dev.key.sign(msg)),
        "new_key_signature": signing.b64u(new.sign(msg)),
    }
    r = net.signed(dev, "POST", "/api/v1/worker/device/rotate-key", body)
    assert r.status_code == 200, r.text
    assert r.json()["device_id"] == dev.device_id
    # The old key is dead; the new key speaks for the same device.
    assert net.signed(dev, "GET", "/api/v1/worker/device").status_code == 401
    r = net.signed(dev, "GET", "/api/v1/worker/device", key=new)
    assert r.status_code == 200
    assert r.json()["device_id"] == dev.device_id


def test_rotation_needs_both_keys(net: Net) -> None:
    [dev] = net.enroll(net.register())
    new = Ed25519PrivateKey.generate()
    new_pub = signing.public_key_text(new.public_key())
    ts = unix(net.clock.now())
    msg = signing.rotation_message(device_id=dev.device_id, new_public_key=new_pub, timestamp=ts)
    body = {
        "new_public_key": new_pub,
        "timestamp": ts,
        "old_key_signature": signing.b64u(dev.key.sign(msg)),
        "new_key_signature": signing.b64u(dev.key.sign(msg)),
    }
    assert net.signed(dev, "POST", "/api/v1/worker/device/rotate-key", body).status_code == 401
    assert net.signed(dev, "GET", "/api/v1/worker/device").status_code == 200


def test_owner_edits_only_owner_fields_of_own_devices(net: Net) -> None:
    a, b = net.register(), net.register()
    [dev] = net.enroll(a)
    ok = net.client.patch(
        f"/api/v1/devices/{dev.device_id}",
        headers=a.headers,
        json={"label": "rack 4 slot 2", "region": "eu-west"},
    )
    assert ok.status_code == 200
    assert ok.json()["region"] == "eu-west"
    assert (
        net.client.patch(
            f"/api/v1/devices/{dev.device_id}", headers=b.headers, json={"label": "mine now"}
        ).status_code
        == 404
    )
    assert (
        net.client.patch(
            f"/api/v1/devices/{dev.device_id}", headers=a.headers, json={"status": "verified"}
        ).status_code
        == 422
    )
    assert (
        net.client.patch(
            f"/api/v1/devices/{dev.device_id}", headers=a.headers, json={"vram_mib": 999999}
        ).status_code
        == 422
    )


def test_owner_device_list_paginates(net: Net) -> None:
    owner = net.register()
    made = {d.device_id for d in net.enroll(owner, count=5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = net.client.get("/api/v1/devices", params=params, headers=owner.headers).json()
        seen += [d["device_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == made and len(seen) == 5
