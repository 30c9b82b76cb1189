"""Clusters through the API on both databases, with agents that answer commands as the
real agent does (the real agent and Ray are in tests/e2e/test_clusters_ray.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gpunet.server.db.cluster_tables import ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services.clusters import agents
from tests.integration.clusters_world import (
    FakeAgents,
    heard,
    outbox_args,
    ready_devices,
    state_of,
)
from tests.integration.conftest import Net, OwnerHandle

pytestmark = pytest.mark.db


def ask(net: Net, owner: OwnerHandle, count: int, **kw: object) -> dict[str, object]:
    r = net.client.post("/api/v1/clusters", json={"count": count, **kw}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def show(net: Net, owner: OwnerHandle, cluster_id: str) -> dict[str, object]:
    r = net.client.get(f"/api/v1/clusters/{cluster_id}", headers=owner.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def gone_for_good(net: Net, fake: FakeAgents, device_id: str) -> None:
    """The device's agent leaves its control session and does not come back."""
    fake.down.add(device_id)
    with net.database.read() as s:
        row_id = s.execute(select(Device.id).where(Device.public_id == device_id)).scalar_one()
    with net.database.transaction() as s:
        agents.sessions_gone(s, [row_id], net.clock.now())
    net.clock.advance(fake.st.clusters.lost_after_s + 1)
    fake.settle()


def holding(net: Net) -> dict[int, int]:
    with net.database.read() as s:
        return dict(
            s.execute(
                select(ClusterMember.device_id, ClusterMember.cluster_id).where(
                    ClusterMember.released_at.is_(None)
                )
            ).all()
        )


def test_build_use_and_terminate(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    devs = ready_devices(net, supplier, 3)
    fake = FakeAgents(net, st)
    c = ask(net, customer, 2, gpu_model="cpu-dev", name="train-1")
    cid = str(c["cluster_id"])
    assert c["status"] == "building" and c["scope"] == "host"
    # No credentials before it is ready.
    r = net.client.get(f"/api/v1/clusters/{cid}/credentials", headers=customer.headers)
    assert r.status_code == 409
    fake.settle()
    c = show(net, customer, cid)
    assert c["status"] == "ready", c
    assert c["address"] == "10.0.0.1:6379"
    # The head started first, the worker joined its address, then the head checked.
    names = [(n, a.get("head_address")) for n, _, a in fake.seen]
    assert names[0] == ("cluster_start", None)
    assert names[1] == ("cluster_start", "10.0.0.1:6379")
    assert names[2][0] == "cluster_check"
    cred = net.client.get(f"/api/v1/clusters/{cid}/credentials", headers=customer.headers)
    assert cred.status_code == 200
    token = cred.json()["token"]
    assert len(token) >= 43
    # The agents got the token; the outbox never held it.
    assert all(a.get("token") == token for n, _, a in fake.seen if n == "cluster_start")
    assert all("token" not in a and token not in str(a) for a in outbox_args(net))
    assert len(holding(net)) == 2

    listed = net.client.get("/api/v1/clusters", headers=customer.headers).json()
    assert [i["cluster_id"] for i in listed["items"]] == [cid]
    r = net.client.post(f"/api/v1/clusters/{cid}/terminate", headers=customer.headers)
    assert r.status_code == 200 and r.json()["status"] == "terminating"
    fake.settle()
    c = show(net, customer, cid)
    assert c["status"] == "terminated"
    assert {m["status"] for m in c["members"]} == {"stopped"}  # type: ignore[union-attr]
    assert holding(net) == {}
    assert not any(fake.running.values())
    # Released devices are due for their light check, and are not placed until they
    # pass one.
    with net.database.read() as s:
        due = s.execute(select(Device.next_check_at).where(
            Device.public_id.in_([d.device_id for d in devs[:2]]))).scalars().all()
    assert all(t is not None and t <= net.clock.now() for t in due)
    r = net.client.post("/api/v1/clusters", json={"count": 2}, headers=customer.headers)
    assert r.status_code == 409
    assert "clear of proofs owed" in r.json()["error"]["message"]
    # Terminating again changes nothing.
    again = net.client.post(f"/api/v1/clusters/{cid}/terminate", headers=customer.headers)
    assert again.status_code == 200 and again.json()["status"] == "terminated"


def test_refusals_say_which_constraint_and_how_many_fit(net: Net) -> None:
    state_of(net)
    supplier, customer = net.register(), net.register()
    ready_devices(net, supplier, 2)
    r = net.client.post("/api/v1/clusters", json={"count": 3}, headers=customer.headers)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "not_placeable"
    assert "3 device(s) wanted; only 2 are" in err["message"]
    r = net.client.post(
        "/api/v1/clusters", json={"count": 1, "gpu_model": "h100-sxm"}, headers=customer.headers
    )
    assert r.status_code == 409 and "only 0 are proven as h100-sxm" in r.text
    r = net.client.post(
        "/api/v1/clusters", json={"count": 2, "max_latency_ms": 0.01}, headers=customer.headers
    )
    assert r.status_code == 409 and "can promise 0.01 ms" in r.text
    # Nothing was reserved by any refusal.
    assert holding(net) == {}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"count": 0},
        {"count": "2"},
        {"count": True},
        {"count": 1, "min_int8_tops": True},
        {"count": 1, "region": "'; DROP TABLE devices; --"},
        {"count": 1, "engine": "spark"},
        {"count": 1, "duration_s": 10},
        {"count": 1, "surprise": 1},
    ],
)
def test_bad_requests_are_refused_and_change_nothing(net: Net, body: dict[str, object]) -> None:
    state_of(net)
    customer = net.register()
    ready_devices(net, net.register(), 1)
    r = net.client.post("/api/v1/clusters", json=body, headers=customer.headers)
    assert r.status_code == 422, r.text
    assert holding(net) == {}


def test_a_customer_sees_and_controls_only_their_clusters(net: Net) -> None:
    st = state_of(net)
    supplier, alice, mallory = net.register(), net.register(), net.register()
    ready_devices(net, supplier, 1)
    cid = str(ask(net, alice, 1)["cluster_id"])
    FakeAgents(net, st).settle()
    for method, path in (
        ("GET", f"/api/v1/clusters/{cid}"),
        ("GET", f"/api/v1/clusters/{cid}/credentials"),
        ("GET", f"/api/v1/clusters/{cid}/usage"),
        ("POST", f"/api/v1/clusters/{cid}/terminate"),
    ):
        r = net.client.request(method, path, headers=mallory.headers)
        assert r.status_code == 404, (method, path, r.text)
        assert cid not in r.text
    assert net.client.get("/api/v1/clusters", headers=mallory.headers).json()["items"] == []
    # The supplier of the device sees nothing of the customer's cluster either.
    r = net.client.get(f"/api/v1/clusters/{cid}/credentials", headers=supplier.headers)
    assert r.status_code == 404
    # A token without the clusters scopes is refused.
    t = net.client.post(
        "/api/v1/auth/token",
        json={"email": alice.email, "password": alice.password, "scopes": ["devices:read"]},
    ).json()["access_token"]
    r = net.client.get(f"/api/v1/clusters/{cid}", headers={"Authorization": f"Bearer {t}"})
    assert r.status_code == 403
    assert show(net, alice, cid)["status"] == "ready"


def test_a_lost_worker_is_reported_and_replaced(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    devs = ready_devices(net, supplier, 3)
    fake = FakeAgents(net, st)
    cid = str(ask(net, customer, 2)["cluster_id"])
    fake.settle()
    c = show(net, customer, cid)
    worker = next(m for m in c["members"] if m["role"] == "worker")  # type: ignore[union-attr]
    pk = {d.device_id: i for i, d in enumerate(devs)}
    gone_for_good(net, fake, worker["device_id"])
    c = show(net, customer, cid)
    statuses = {m["device_id"]: m["status"] for m in c["members"]}  # type: ignore[union-attr]
    assert statuses[worker["device_id"]] == "lost"
    assert c["status"] == "ready"  # replaced by the third device, and checked again
    assert sorted(statuses.values()) == ["lost", "running", "running"]
    kinds = [(e["kind"], e["to_status"]) for e in c["events"]]  # type: ignore[union-attr]
    assert ("cluster", "degraded") in kinds and kinds[-1] == ("cluster", "ready")
    assert len(pk) == 3


def test_a_lost_head_fails_the_cluster_and_frees_every_device(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    ready_devices(net, supplier, 2)
    fake = FakeAgents(net, st)
    cid = str(ask(net, customer, 2)["cluster_id"])
    fake.settle()
    c = show(net, customer, cid)
    head = next(m for m in c["members"] if m["role"] == "head")  # type: ignore[union-attr]
    gone_for_good(net, fake, head["device_id"])
    c = show(net, customer, cid)
    assert c["status"] == "failed" and "head" in str(c["detail"])
    assert holding(net) == {}


def test_not_ready_by_the_deadline_fails(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    devs = ready_devices(net, supplier, 2)
    fake = FakeAgents(net, st, down={d.device_id for d in devs})  # agents never answer
    cid = str(ask(net, customer, 2)["cluster_id"])
    fake.settle()
    net.clock.advance(st.clusters.build_timeout_s + 1)
    heard(net)
    fake.settle()
    c = show(net, customer, cid)
    assert c["status"] == "terminating"  # the stop commands wait for the agents a while
    net.clock.advance(2 * st.clusters.command_timeout_s + st.clusters.lost_after_s)
    heard(net)
    fake.settle()
    c = show(net, customer, cid)
    assert c["status"] == "failed" and "deadline" in str(c["detail"])
    assert holding(net) == {}


def test_a_cluster_ends_when_its_duration_runs_out(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    ready_devices(net, supplier, 1)
    fake = FakeAgents(net, st)
    cid = str(ask(net, customer, 1, duration_s=600)["cluster_id"])
    fake.settle()
    net.clock.advance(601)
    heard(net)
    fake.settle()
    c = show(net, customer, cid)
    assert c["status"] == "terminated" and holding(net) == {}
    assert any("duration" in str(e["detail"]) for e in c["events"])  # type: ignore[union-attr]


def test_placement_prefers_one_host_then_one_network(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    ready_devices(net, supplier, 1, host="host-fingerprint-aaaa", enrolled_from="10.1.0.5")
    pair = ready_devices(net, supplier, 2, host="host-fingerprint-bbbb", enrolled_from="10.2.0.5")
    near = ready_devices(net, supplier, 1, host="host-fingerprint-cccc", enrolled_from="10.2.0.9")
    c = ask(net, customer, 2)
    assert c["scope"] == "host"
    assert {m["device_id"] for m in c["members"]} == {d.device_id for d in pair}  # type: ignore[union-attr]
    c = ask(net, customer, 1, max_latency_ms=1)
    assert [m["device_id"] for m in c["members"]] != []  # type: ignore[union-attr]
    FakeAgents(net, st).settle()
    assert near  # placed above or left free: either way one host group was preferred


def test_the_fast_path_places_as_the_whole_network_would(net: Net) -> None:
    """reservation.on_best_host reads one host's devices; placement on them must choose
    what it chooses on every candidate."""
    import random

    from sqlalchemy import update

    from gpunet.core.clusters import ClusterRequest
    from gpunet.core.placement import Placement, place
    from gpunet.server.services.clusters import reservation

    st = state_of(net)
    supplier = net.register()
    rng = random.Random(7)
    devs = []
    for h in range(8):
        devs += ready_devices(net, supplier, rng.randint(1, 4), host=f"host-fingerprint-{h:04d}")
    # Some are offline, some not verified, some owe a proof.
    with net.database.transaction() as s:
        for d in devs:
            roll = rng.random()
            if roll < 0.15:
                change = {"last_heartbeat_at": net.clock.now().replace(year=2025)}
            elif roll < 0.25:
                change = {"status": "suspect"}
            elif roll < 0.3:
                change = {"proof_owed_since": net.clock.now()}
            else:
                continue
            s.execute(update(Device).where(Device.public_id == d.device_id).values(**change))
    for count in (1, 2, 3, 4):
        request = ClusterRequest(count=count)
        with net.database.read() as s:
            kw = {"now": net.clock.now(), "online_window_s": st.clusters.online_window_s}
            fast = reservation.on_best_host(s, request, st.catalog, **kw)
            whole = place(request, reservation.candidates(s, request, st.catalog, **kw),
                          net.clock.now())
        if fast is None:
            assert not isinstance(whole, Placement) or whole.scope != "host"
            continue
        got = place(request, fast, net.clock.now())
        assert isinstance(got, Placement) and isinstance(whole, Placement)
        assert [c.id for c in got.devices] == [c.id for c in whole.devices]
