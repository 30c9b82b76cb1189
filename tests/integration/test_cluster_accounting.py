"""Cluster hours come only from time the coordinator saw the node alive: for the
customer's usage statement and for the supplier's cluster slots in the reward split."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from sqlalchemy import select

from gpunet.server.db.tables import Device
from gpunet.server.services.clusters import agents, usage
from gpunet.server.services.clusters.settings import ClusterSettings
from gpunet.server.services.reward_inputs import device_uptimes, plan
from tests.integration.clusters_world import FakeAgents, ready_devices, state_of
from tests.integration.conftest import Net

pytestmark = pytest.mark.db
MINUTE = 60


def test_a_node_away_is_not_credited_for_its_absence(net: Net) -> None:
    st = state_of(net)
    # Tolerant settings: a host away ten minutes is waited for, not replaced.
    st.clusters = ClusterSettings(lost_after_s=3600, online_window_s=3600, command_timeout_s=30)
    supplier, customer = net.register(), net.register()
    devs = ready_devices(net, supplier, 2)
    fake = FakeAgents(net, st)
    r = net.client.post("/api/v1/clusters", json={"count": 2}, headers=customer.headers)
    cid = r.json()["cluster_id"]
    fake.settle()
    members = net.client.get(f"/api/v1/clusters/{cid}", headers=customer.headers).json()
    head = next(m["device_id"] for m in members["members"] if m["role"] == "head")
    worker = next(m["device_id"] for m in members["members"] if m["role"] == "worker")
    with net.database.read() as s:
        pk = dict(s.execute(select(Device.public_id, Device.id)).all())
    started = net.clock.now()

    def beat(minutes: int, who: list[str]) -> None:
        for _ in range(minutes):
            for d in who:
                st.uptime.record(pk[d], net.clock.now())
            net.clock.advance(MINUTE)
            fake.settle()
        st.uptime.flush(net.database)

    beat(10, [head, worker])
    # The worker's host drops off for ten minutes (no heartbeat reaches any replica),
    # then comes back with its node still running.
    fake.down.add(worker)
    with net.database.transaction() as s:
        agents.sessions_gone(s, [pk[worker]], net.clock.now())
    beat(10, [head])
    fake.down.discard(worker)
    with net.database.transaction() as s:
        agents.sessions_back(s, [pk[worker]], net.clock.now())
    fake.settle()
    beat(5, [head, worker])
    # Half an hour has passed: the customer signs in again (access tokens last 15 min).
    customer.token = net.client.post(
        "/api/v1/auth/token", json={"email": customer.email, "password": customer.password}
    ).json()["access_token"]
    net.client.post(f"/api/v1/clusters/{cid}/terminate", headers=customer.headers)
    fake.settle()

    statement = net.client.get(f"/api/v1/clusters/{cid}/usage", headers=customer.headers).json()
    billed = {m["device_id"]: m for m in statement["members"]}
    assert billed[head]["credited_s"] == 25 * MINUTE
    assert billed[worker]["credited_s"] == 15 * MINUTE  # the ten minutes away are not
    assert billed[worker]["serving_s"] == pytest.approx(25 * MINUTE, abs=2 * MINUTE)
    assert statement["credited_s"] == 40 * MINUTE

    # The reward split sees the same: cluster slots are counted slots while serving.
    config = st.rewards
    clock = config.schedule.clock
    epoch = clock.epoch_index(started.timestamp())
    with net.database.read() as s:
        p = plan(s, clock, config.policy, epoch)
        masks = usage.serving_masks(s, clock, epoch)
        counted = {
            c.device_id: c.uptime
            for c in usage.with_cluster_slots(
                device_uptimes(s, clock, config.policy, {"cpu-dev": Fraction(1)}, p), masks
            )
        }
    assert counted[pk[head]].cluster_slots == 25
    assert counted[pk[worker]].cluster_slots == 15
    assert counted[pk[worker]].slots == 15
    assert len(devs) == 2


def test_a_node_killed_stops_earning_at_its_last_heartbeat(net: Net) -> None:
    st = state_of(net)
    supplier, customer = net.register(), net.register()
    ready_devices(net, supplier, 2)
    fake = FakeAgents(net, st)
    cid = net.client.post(
        "/api/v1/clusters", json={"count": 2}, headers=customer.headers
    ).json()["cluster_id"]
    fake.settle()
    c = net.client.get(f"/api/v1/clusters/{cid}", headers=customer.headers).json()
    worker = next(m["device_id"] for m in c["members"] if m["role"] == "worker")
    with net.database.read() as s:
        pk = dict(s.execute(select(Device.public_id, Device.id)).all())
    for _ in range(3):
        for m in c["members"]:
            st.uptime.record(pk[m["device_id"]], net.clock.now())
        net.clock.advance(MINUTE)
    st.uptime.flush(net.database)
    killed = net.clock.now()
    fake.down.add(worker)
    with net.database.transaction() as s:
        agents.sessions_gone(s, [pk[worker]], killed)
    net.clock.advance(st.clusters.lost_after_s + 1)
    fake.settle()
    c = net.client.get(f"/api/v1/clusters/{cid}", headers=customer.headers).json()
    lost = next(m for m in c["members"] if m["device_id"] == worker)
    assert lost["status"] == "lost"
    assert dt.datetime.fromisoformat(lost["running_until"]) == killed
    statement = net.client.get(f"/api/v1/clusters/{cid}/usage", headers=customer.headers).json()
    billed = {m["device_id"]: m["credited_s"] for m in statement["members"]}
    assert billed[worker] == 3 * MINUTE
