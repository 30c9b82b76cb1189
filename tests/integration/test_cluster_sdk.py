"""The customer's SDK (gpunet.client) against a coordinator on each backend, with
agents that answer as the real one does."""

from __future__ import annotations

from typing import Any

import pytest

from gpunet.client import ClusterError, Clusters
from tests.integration.clusters_world import FakeAgents, ready_devices, state_of
from tests.integration.conftest import Net, OwnerHandle

pytestmark = pytest.mark.db


def sdk(net: Net, owner: OwnerHandle, fake: FakeAgents) -> Clusters:
    def call(method: str, path: str, body: Any, ok: int) -> Any:
        fake.settle()  # the agents and the driver move between the customer's calls
        r = net.client.request(method, path, json=body, headers=owner.headers)
        if r.status_code != ok:
            raise ClusterError(f"{r.json()['error']['message']} ({r.status_code})")
        return r.json()

    return Clusters(call)


def test_create_wait_use_and_terminate(net: Net) -> None:
    st = state_of(net)
    customer = net.register()
    ready_devices(net, net.register(), 2)
    clusters = sdk(net, customer, FakeAgents(net, st))
    c = clusters.create(2, gpu_model="cpu-dev", name="sdk-test", min_vram_mib=None)
    ray = clusters.wait_ready(c["cluster_id"], timeout=30)
    assert ray.address == "10.0.0.1:6379" and ray.dashboard == "10.0.0.1:8265"
    env = ray.env()
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == ray.token
    assert env["RAY_ADDRESS"] == ray.address
    assert env["RAY_API_SERVER_ADDRESS"] == "http://10.0.0.1:8265"
    assert [i["cluster_id"] for i in clusters.list()] == [c["cluster_id"]]
    assert clusters.usage(c["cluster_id"])["cluster_id"] == c["cluster_id"]
    clusters.terminate(c["cluster_id"])
    assert clusters.get(c["cluster_id"])["status"] == "terminated"
    with pytest.raises(ClusterError, match="credentials are given once it is ready"):
        clusters.credentials(c["cluster_id"])


def test_refusal_is_a_cluster_error_with_the_reason(net: Net) -> None:
    st = state_of(net)
    customer = net.register()
    ready_devices(net, net.register(), 1)
    clusters = sdk(net, customer, FakeAgents(net, st))
    with pytest.raises(ClusterError, match="2 device\\(s\\) wanted; only 1 is"):
        clusters.create(2)
