"""The agent's Ray nodes with a stand-in `ray` executable: what is started and how, the
token kept off the command line, idempotent commands, and a node that dies reported.
(Real Ray runs in tests/e2e/test_clusters_ray.py.)"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gpunet.agent.ray_node import SHORT_TMP, RayNodes
from gpunet.core import clusters as cc

CLUSTER = "clu_abcdefghijklmnop"
HEAD = "dev_aaaaaaaaaaaaaaaa"
WORKER = "dev_bbbbbbbbbbbbbbbb"
TOKEN = "T" * 43
FAKE_RAY = """#!/bin/sh
# Records how it was started, says what `ray start --block` says once up, and blocks.
echo "$@" > "$(dirname "$0")/argv.$$"
env | grep '^RAY_\\|^CUDA_' > "$(dirname "$0")/env.$$"
echo "Ray runtime started."
exec sleep 600
"""


@pytest.fixture
def fake_ray(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ray = bin_dir / "ray"
    ray.write_text(FAKE_RAY)
    ray.chmod(ray.stat().st_mode | stat.S_IXUSR)
    return ray


def start_args(device: str, head: str | None = None) -> dict[str, Any]:
    return cc.StartNode(CLUSTER, device, head, 0, {"gpunet_node": 1.0}, TOKEN).wire()


def recorded(ray: Path, prefix: str) -> list[str]:
    return [p.read_text() for p in ray.parent.glob(f"{prefix}.*")]


def test_head_and_worker_start_with_token_auth_and_stop(fake_ray: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = RayNodes(tmp_path / "ray", node_ip="127.0.0.1", ray_bin=str(fake_ray),
                         gpu_of=lambda d: "GPU-1234" if d == WORKER else None)
        head = cc.NodeStarted.parse(await nodes.start(start_args(HEAD)))
        assert head.address is not None and head.address.startswith("127.0.0.1:")
        assert head.dashboard is not None
        # A second delivery of the same start answers as the first (idempotent), and two
        # at once start one node.
        assert cc.NodeStarted.parse(await nodes.start(start_args(HEAD))) == head
        both = await asyncio.gather(nodes.start(start_args(HEAD)), nodes.start(start_args(HEAD)))
        assert both[0] == both[1] == head.wire()
        worker = cc.NodeStarted.parse(await nodes.start(start_args(WORKER, head.address)))
        assert worker.address is None
        argv = recorded(fake_ray, "argv")
        assert len(argv) == 2
        head_argv = next(a for a in argv if "--head" in a)
        worker_argv = next(a for a in argv if "--address" in a)
        assert "--include-dashboard true --dashboard-host 127.0.0.1" in head_argv
        assert "dashboard-host" not in worker_argv and f"--address {head.address}" in worker_argv
        assert all(TOKEN not in a for a in argv)  # never on a command line
        envs = recorded(fake_ray, "env")
        assert all("RAY_AUTH_MODE=token" in e for e in envs)
        assert all(TOKEN not in e for e in envs)  # a file, not the environment
        assert any("CUDA_VISIBLE_DEVICES=GPU-1234" in e for e in envs)
        token_file = tmp_path / "ray" / CLUSTER / HEAD / "token"
        assert token_file.read_text() == TOKEN
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert await nodes.status({"cluster": CLUSTER, "device": HEAD}) == {"running": True}
        pid = nodes.nodes[(CLUSTER, HEAD)].process.pid
        await nodes.stop({"cluster": CLUSTER, "device": HEAD})
        assert await nodes.status({"cluster": CLUSTER, "device": HEAD}) == {"running": False}
        assert not token_file.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        # Stopping again is fine.
        assert await nodes.stop({"cluster": CLUSTER, "device": HEAD}) == {"stopped": True}
        await nodes.stop_all()
        assert nodes.nodes == {}

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_node_that_dies_is_reported(fake_ray: Path, tmp_path: Path) -> None:
    reports: list[dict[str, Any]] = []

    async def report(args: dict[str, Any]) -> None:
        reports.append(args)

    async def scenario() -> None:
        nodes = RayNodes(tmp_path / "ray", ray_bin=str(fake_ray))
        nodes.report = report
        await nodes.start(start_args(HEAD))
        nodes.nodes[(CLUSTER, HEAD)].process.kill()
        for _ in range(100):
            if reports:
                break
            await asyncio.sleep(0.05)
        assert reports and reports[0]["cluster"] == CLUSTER and reports[0]["device"] == HEAD
        assert cc.NodeRef.parse(reports[0]).device == HEAD
        assert await nodes.status({"cluster": CLUSTER, "device": HEAD}) == {"running": False}
        assert not (tmp_path / "ray" / CLUSTER / HEAD / "token").exists()
        # An agent that starts again (its nodes died with it, by SIGKILL say) clears
        # what they left.
        left = Path(tempfile.mkdtemp(prefix=nodes._temp_prefix, dir=SHORT_TMP))
        RayNodes(tmp_path / "ray", ray_bin=str(fake_ray))
        assert not left.exists()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_hostile_commands_are_refused(fake_ray: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = RayNodes(tmp_path / "ray", ray_bin=str(fake_ray))
        for bad in (
            {**start_args(HEAD), "cluster": "../../../etc"},
            {**start_args(HEAD), "head_address": "1.2.3.4:1 --block"},
            {**start_args(HEAD), "token": "short"},
        ):
            with pytest.raises(cc.BadCommand):
                await nodes.start(bad)
        with pytest.raises(RuntimeError):
            await nodes.check({"cluster": CLUSTER, "device": HEAD, "nodes": 1})
        assert recorded(fake_ray, "argv") == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_without_ray_the_start_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpunet.agent.ray_node as rn

    monkeypatch.setattr(rn, "ray_executable", lambda: None)
    nodes = RayNodes(tmp_path / "ray")

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="Ray is not installed"):
            await nodes.start(start_args(HEAD))

    asyncio.run(scenario())


def test_a_start_delivered_again_while_starting_waits_for_the_same_node(
    fake_ray: Path, tmp_path: Path
) -> None:
    slow = fake_ray.parent / "ray-slow"
    ready = 'echo "Ray runtime started."'
    slow.write_text(FAKE_RAY.replace(ready, f"sleep 1; {ready}"))
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)

    async def scenario() -> None:
        nodes = RayNodes(tmp_path / "ray", ray_bin=str(slow))
        first = asyncio.ensure_future(nodes.start(start_args(HEAD)))
        await asyncio.sleep(0.3)  # the node is starting when the command comes again
        again = await nodes.start(start_args(HEAD))
        assert again == await first
        assert len(recorded(fake_ray, "argv")) == 1
        await nodes.stop_all()

    asyncio.run(asyncio.wait_for(scenario(), 60))
