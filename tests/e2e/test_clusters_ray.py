"""A customer's Ray cluster on real Ray, as users run it: a coordinator and three cpu-dev
agents as processes on this machine; the customer asks for a 2-node cluster through the
CLI, runs a task on both nodes with the returned address and token, loses a node to a
SIGKILLed agent (reported, replaced, and not credited for the time it was gone), and
terminates the cluster; the devices are free again.

Waits are bounded conditions, never sleeps a result depends on. Ray runs with one CPU
per node, the dashboard on the head only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gpunet.agent.keystore import Keystore
from gpunet.server.db.cluster_tables import ClusterMember
from tests.e2e import test_network_processes as processes
from tests.e2e.test_network_processes import GPUNET, Network, wait_for

PASSWORD = "customer password one"
CLUSTER_ENV = {
    "GPUNET_CLUSTER_TICK_S": "0.5",
    "GPUNET_CLUSTER_LOST_AFTER_S": "3",
    "GPUNET_CLUSTER_COMMAND_TIMEOUT_S": "150",
    "GPUNET_MIN_CHALLENGE_GAP_S": "1",
    "GPUNET_REWARDS_SLOT_SECONDS": "1",
    "GPUNET_REWARDS_EPOCH_SECONDS": "3600",
}
# A Ray driver: every live node, and the node a task pinned to each one ran on.
DRIVER = textwrap.dedent(
    """
    import json, ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ray.init(log_to_driver=False, logging_level="ERROR")  # RAY_ADDRESS from the env
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    @ray.remote(num_cpus=0)
    def where():
        return ray.get_runtime_context().get_node_id()
    ran = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n, soft=False)).remote() for n in alive], timeout=60)
    print(json.dumps({"alive": alive, "ran": ran}))
    """
)


@pytest.fixture
def cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator's cluster timings for this test (its environment is read from
    ours when the network fixture starts it)."""
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)


# The plain network of tests.e2e.test_network_processes, started after the settings.
sqlite_network = processes.sqlite_network


@pytest.fixture
def network(cluster_settings: None, sqlite_network: Network) -> Network:
    return sqlite_network


def customer_env(net: Network) -> dict[str, str]:
    """The customer's shell: its own credentials file and a HOME with no Ray token."""
    home = net.workdir / "customer"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "GPUNET_CREDENTIALS": str(home / "creds.json")}


def gpunet(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [GPUNET, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ray_env(exports: str) -> dict[str, str]:
    """`gpunet cluster env` output as a dict."""
    out = {}
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = shlex.split(value)[0]
    return out


def run_driver(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=120
    )


def show(env: dict[str, str], cluster_id: str) -> dict[str, Any]:
    return dict(json.loads(gpunet(env, "cluster", "show", cluster_id)))


def holding(net: Network) -> list[int]:
    with net.db().connect() as conn:
        return list(
            conn.execute(
                select(ClusterMember.device_id).where(ClusterMember.released_at.is_(None))
            ).scalars()
        )


def port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_a_customer_builds_uses_loses_a_node_and_ends_a_ray_cluster(network: Network) -> None:
    net = network
    control = f"127.0.0.1:{net.first.control_port}"
    for _ in range(3):
        net.add_agent(control)
    wait_for(
        "three cpu-dev devices verified",
        lambda: sorted(net.devices().values()) == ["verified"] * 3,
        90,
    )
    env = customer_env(net)
    httpx.post(net.first.url + "/api/v1/accounts",
               json={"email": "customer@example.com", "password": PASSWORD}).raise_for_status()
    gpunet(env, "login", "--coordinator", net.first.url, "--email", "customer@example.com",
           "--password", PASSWORD)

    # 1. The customer asks for two nodes through the CLI and follows the build.
    out = gpunet(env, "cluster", "create", "--count", "2", "--gpu-model", "cpu-dev",
                 "--duration", "30m", "--timeout", "150")
    assert "ready: Ray at" in out, out
    cluster_id = out.split()[1].rstrip(":")
    c = show(env, cluster_id)
    assert c["status"] == "ready" and len(c["members"]) == 2

    # 2. A task runs on both nodes through the returned address and token.
    creds = ray_env(gpunet(env, "cluster", "env", cluster_id))
    assert creds["RAY_AUTH_MODE"] == "token" and creds["RAY_ADDRESS"] == c["address"]
    done = run_driver({**env, **creds})
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["alive"]) == 2 and sorted(seen["ran"]) == sorted(seen["alive"])

    # 3. Without the token: no connection, no job.
    no_token = {k: v for k, v in {**env, **creds}.items() if k != "RAY_AUTH_TOKEN"}
    done = run_driver(no_token)
    assert done.returncode != 0 and "token" in done.stderr.lower(), done.stderr[-500:]
    wrong = {**env, **creds, "RAY_AUTH_TOKEN": "x" * 43}
    done = run_driver(wrong)
    assert done.returncode != 0
    jobs = f"http://{c['dashboard']}/api/jobs/"
    assert httpx.post(jobs, json={"entrypoint": "id"}, timeout=30).status_code == 401
    bad = {"Authorization": "Bearer " + "x" * 43}
    assert httpx.post(jobs, json={"entrypoint": "id"}, headers=bad, timeout=30).status_code in (
        401, 403)
    good = {"Authorization": f"Bearer {creds['RAY_AUTH_TOKEN']}"}
    assert httpx.get(jobs, headers=good, timeout=30).status_code == 200

    # 4. The worker's agent is SIGKILLed: the customer sees the node lost; the third
    # device replaces it; the lost device is credited only until it was gone.
    worker = next(m for m in c["members"] if m["role"] == "worker")
    agent = net.agents[_agent_of(net, worker["device_id"])]
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    killed_at = dt.datetime.now(dt.UTC)
    wait_for(
        "the customer sees the node lost",
        lambda: any(m["device_id"] == worker["device_id"] and m["status"] == "lost"
                    for m in show(env, cluster_id)["members"]),
        60,
    )
    wait_for("a replacement makes the cluster ready again",
             lambda: _ready_with_replacement(show(env, cluster_id), worker["device_id"]), 150)
    c = show(env, cluster_id)
    assert any(e["to_status"] == "degraded" for e in c["events"])
    lost = next(m for m in c["members"] if m["device_id"] == worker["device_id"])
    gone_from = dt.datetime.fromisoformat(lost["running_until"])
    assert gone_from <= killed_at
    usage = json.loads(
        httpx.get(f"{net.first.url}/api/v1/clusters/{cluster_id}/usage",
                  headers={"Authorization": f"Bearer {_token(env)}"}, timeout=10).text
    )
    billed = next(m for m in usage["members"] if m["device_id"] == worker["device_id"])
    served = (gone_from - dt.datetime.fromisoformat(lost["running_from"])).total_seconds()
    assert billed["credited_s"] <= served + 2  # slots of 1 s, both ends partial
    done = run_driver({**env, **creds})
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout.strip().splitlines()[-1])["ran"]) == 2

    # 5. Terminated: Ray stopped on every node, the devices free again.
    out = gpunet(env, "cluster", "terminate", cluster_id, "--timeout", "120")
    assert "terminated" in out, out
    c = show(env, cluster_id)
    assert {m["status"] for m in c["members"]} <= {"stopped", "lost"}
    assert holding(net) == []
    wait_for("the head's Ray is down", lambda: not port_open(c["address"]), 30)
    assert all(a.poll() is None for a in net.agents if a is not agent)


def _agent_of(net: Network, device_id: str) -> int:
    for i, home in enumerate(net.homes):
        if device_id in {d.device_id for d in Keystore(home / "keys").devices()}:
            return i
    raise AssertionError(f"no agent home holds {device_id}")


def _ready_with_replacement(c: dict[str, Any], lost: str) -> bool:
    running = [m for m in c["members"] if m["status"] == "running"]
    return c["status"] == "ready" and len(running) == 2 and lost not in {
        m["device_id"] for m in running
    }


def _token(env: dict[str, str]) -> str:
    return str(json.loads(Path(env["GPUNET_CREDENTIALS"]).read_text())["access_token"])
