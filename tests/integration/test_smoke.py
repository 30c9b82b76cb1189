from tests.integration.conftest import Net


def test_owner_enrolls_devices_and_explorer_counts_only_verified(net: Net) -> None:
    owner = net.register()
    devices = net.enroll(owner, count=2)
    stats = net.client.get("/api/v1/explorer/stats").json()
    assert stats["devices_by_status"]["pending"] == 2
    assert stats["verified_gpus"] == 0
    r = net.signed(devices[0], "PATCH", "/api/v1/worker/device", {"agent_version": "0.1.0"})
    assert r.status_code == 200, r.text
