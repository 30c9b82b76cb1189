"""The Ray nodes this host runs for customers' clusters: started, watched and stopped on
the coordinator's commands (core.clusters), one node per (cluster, device).

Each node is `ray start --block` in its own process group, with:
- token authentication on (RAY_AUTH_MODE=token) and the cluster's token read from a
  0600 file (RAY_AUTH_TOKEN_PATH), never from the command line or the environment a
  `ps` shows;
- its own temporary directory and its own ports (several nodes, of several clusters,
  may share a host), the dashboard and the jobs API on the head only;
- the parent-death signal set, so that if the agent dies (even by SIGKILL) the node
  stops with it: a node the coordinator can no longer see must not keep serving, and
  an agent that restarts starts from no nodes (the coordinator asks, and replaces).

Every handler is idempotent: the coordinator delivers a command again when an answer
was lost, and a second start of a running node answers as the first did.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpunet.core import clusters as cc

log = logging.getLogger("gpunet.agent.ray")
Report = Callable[[dict[str, Any]], Awaitable[Any]]
START_TIMEOUT_S = 120.0  # `ray start` on a loaded two-core host takes tens of seconds
CHECK_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
OBJECT_STORE_BYTES = 128 * 1024 * 1024  # enough for the readiness check; Ray's minimum is 75 MB
_READY = "Ray runtime started"
_PR_SET_PDEATHSIG = 1
# Not $TMPDIR, which may be long: Ray's socket paths must fit in 107 bytes. Directories
# are made by mkdtemp (random name, mode 0700) and only our own are ever removed.
SHORT_TMP = Path("/tmp")  # noqa: S108

# Run by the head's agent with the cluster's token: every node Ray reports alive, and
# the node each pinned task actually ran on (one per node, zero CPUs so busy nodes
# still answer).
CHECK_SCRIPT = """
import json, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()
ran = ray.get([
    where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
    for n in alive
], timeout=60)
print(json.dumps({"alive": alive, "ran": ran}))
"""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the agent (its parent) dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def route_address(host: str, port: int) -> str:
    """This host's address on the route to (host, port): what other nodes and the
    customer reach (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def ray_executable() -> str | None:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray")


@dataclass
class Node:
    start: cc.StartNode
    process: subprocess.Popen[bytes]
    workdir: Path
    token_file: Path
    log_file: Path
    temp: Path
    started: cc.NodeStarted | None = None
    ready: asyncio.Future[cc.NodeStarted] = field(init=False, repr=False)
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.start.cluster, self.start.device


class RayNodes:
    """See the module docstring. `gpu_of(device)` names the GPU a device's node may use
    (None: a cpu-dev device, no GPU); `report` tells the coordinator a node exited on
    its own."""

    def __init__(
        self,
        home: Path,
        *,
        node_ip: str | None = None,
        num_cpus: int = 1,
        gpu_of: Callable[[str], str | None] | None = None,
        ray_bin: str | None = None,
    ) -> None:
        self.home = home
        self.node_ip = node_ip or "127.0.0.1"
        self.num_cpus = num_cpus
        self.gpu_of = gpu_of or (lambda _device: None)
        self.ray_bin = ray_bin
        self.report: Report | None = None
        self.nodes: dict[tuple[str, str], Node] = {}
        self._lock = asyncio.Lock()
        # Ray's socket paths must stay under the kernel's 107-byte limit, so each node's
        # directory is short, under /tmp, and named after this agent's home: what an
        # earlier life of this agent left (its nodes died with it) is removed here.
        self._temp_prefix = "gpr" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
        for stale in SHORT_TMP.glob(self._temp_prefix + "*"):
            if not stale.is_symlink() and stale.is_dir() and stale.stat().st_uid == os.getuid():
                shutil.rmtree(stale, ignore_errors=True)

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {cc.START: self.start, cc.STOP: self.stop, cc.CHECK: self.check,
                cc.STATUS: self.status}

    # -- commands --------------------------------------------------------------------
    async def start(self, args: dict[str, Any]) -> Any:
        start = cc.StartNode.parse(args)
        async with self._lock:
            node = self.nodes.get((start.cluster, start.device))
            running = node is not None and node.process.poll() is None
            if node is not None and not running:
                await self._terminate(node)
            if not running:
                node = self._spawn(start)
                node.ready = asyncio.get_running_loop().create_future()
                self.nodes[node.key] = node
        assert node is not None
        if running:
            # Delivered again (an answer lost, or slower than the coordinator waits): the
            # same node's answer, once it is up.
            return (await asyncio.shield(node.ready)).wire()
        try:
            node.started = await self._wait_ready(node)
        except Exception as exc:
            node.ready.set_exception(exc)
            node.ready.exception()  # retrieved here, so an unawaited failure is not logged
            await self._terminate(node)
            self.nodes.pop(node.key, None)
            raise
        node.ready.set_result(node.started)
        node.watcher = asyncio.get_running_loop().create_task(self._watch(node))
        log.info("cluster %s: %s node for %s is up", start.cluster,
                 "head" if start.is_head else "worker", start.device)
        return node.started.wire()

    async def stop(self, args: dict[str, Any]) -> Any:
        ref = cc.NodeRef.parse(args)
        node = self.nodes.pop((ref.cluster, ref.device), None)
        if node is not None:
            await self._terminate(node)
            log.info("cluster %s: node for %s stopped", ref.cluster, ref.device)
        return {"stopped": True}

    async def status(self, args: dict[str, Any]) -> Any:
        ref = cc.NodeRef.parse(args)
        node = self.nodes.get((ref.cluster, ref.device))
        return {"running": node is not None and node.process.poll() is None}

    async def check(self, args: dict[str, Any]) -> Any:
        check = cc.CheckCluster.parse(args)
        node = self.nodes.get((check.cluster, check.device))
        if node is None or node.started is None or node.started.address is None:
            raise RuntimeError("this host runs no head for that cluster")
        env = self._env(node.start, node.token_file)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHECK_SCRIPT, node.started.address,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            raise RuntimeError("the readiness check did not finish in time") from None
        if proc.returncode != 0:
            raise RuntimeError(f"readiness check failed: {err.decode()[-300:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    async def stop_all(self) -> None:
        for node in list(self.nodes.values()):
            await self._terminate(node)
        self.nodes.clear()

    # -- processes ---------------------------------------------------------------------
    def _env(self, start: cc.StartNode, token_file: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token_file),
            RAY_USAGE_STATS_ENABLED="0",
            # A cpu-dev node sees no GPU; a GPU device's node sees its own GPU only.
            CUDA_VISIBLE_DEVICES=self.gpu_of(start.device) or "",
        )
        return env

    def _spawn(self, start: cc.StartNode) -> Node:
        ray = self.ray_bin or ray_executable()
        if ray is None:
            raise RuntimeError("Ray is not installed on this host: pip install 'gpunet[agent]'")
        workdir = self.home / start.cluster / start.device
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        token_file = workdir / "token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(start.token)
        temp = Path(tempfile.mkdtemp(prefix=self._temp_prefix, dir=SHORT_TMP))
        ports = {"node-manager-port": free_port(), "object-manager-port": free_port(),
                 "dashboard-agent-listen-port": free_port(),
                 "dashboard-agent-grpc-port": free_port(),
                 "runtime-env-agent-port": free_port(), "metrics-export-port": free_port()}
        cmd = [ray, "start", "--block", "--disable-usage-stats",
               "--node-ip-address", self.node_ip, "--temp-dir", str(temp),
               "--num-cpus", str(self.num_cpus), "--num-gpus", str(start.num_gpus),
               "--resources", json.dumps(start.resources),
               "--object-store-memory", str(OBJECT_STORE_BYTES)]
        if start.is_head:
            ports |= {"port": free_port(), "dashboard-port": free_port(),
                      "ray-client-server-port": free_port()}
            cmd += ["--head", "--include-dashboard", "true", "--dashboard-host", self.node_ip]
        else:
            assert start.head_address is not None
            cmd += ["--address", start.head_address]
        for name, port in ports.items():
            cmd += [f"--{name}", str(port)]
        log_file = workdir / "ray.log"
        out = open(log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(  # noqa: S603 - our own ray executable, checked args
                cmd, env=self._env(start, token_file), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        return Node(start, process, workdir, token_file, log_file, temp, ports=ports)

    async def _wait_ready(self, node: Node) -> cc.NodeStarted:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {self._tail(node)}")
            if _READY in self._tail(node, 20_000):
                ip, start = self.node_ip, node.start
                if not start.is_head:
                    return cc.NodeStarted(ip)
                return cc.NodeStarted(
                    ip, f"{_host(ip)}:{node.ports['port']}",
                    f"{_host(ip)}:{node.ports['dashboard-port']}",
                )
            await asyncio.sleep(0.25)
        raise RuntimeError("ray start did not come up in time")

    @staticmethod
    def _tail(node: Node, size: int = 400) -> str:
        try:
            with open(node.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    async def _watch(self, node: Node) -> None:
        """Tell the coordinator when a node exits without being asked to."""
        while node.process.poll() is None:
            await asyncio.sleep(1.0)
        if node.stopping or self.nodes.get(node.key) is not node:
            return
        self.nodes.pop(node.key, None)
        node.token_file.unlink(missing_ok=True)
        shutil.rmtree(node.temp, ignore_errors=True)
        detail = f"ray exited with code {node.process.returncode}"
        log.warning("cluster %s: node for %s exited: %s", *node.key, detail)
        if self.report is not None:
            with contextlib.suppress(Exception):
                await self.report({"cluster": node.start.cluster,
                                   "device": node.start.device, "detail": detail})

    async def _terminate(self, node: Node) -> None:
        """SIGTERM to `ray start --block` (it stops its Ray processes), then SIGKILL to
        the whole process group if anything is left."""
        node.stopping = True
        if node.watcher is not None:
            node.watcher.cancel()
        proc = node.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        node.token_file.unlink(missing_ok=True)
        shutil.rmtree(node.temp, ignore_errors=True)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def cluster_nodes(
    home: Path,
    control: tuple[str, int],
    node_ip: str | None,
    num_cpus: int,
    gpus: dict[str, Any],
) -> RayNodes:
    """The agent's RayNodes: nodes under `home`/ray, reachable at `node_ip` (default:
    this host's address towards the coordinator's control channel), each device's node
    pinned to its own GPU (a cpu-dev device gets none)."""

    def gpu_of(device: str) -> str | None:
        gpu = gpus.get(device)
        return None if gpu is None or gpu.backend == "cpu" else str(gpu.gpu_uuid)

    return RayNodes(
        home / "ray",
        node_ip=node_ip or route_address(*control),
        num_cpus=num_cpus,
        gpu_of=gpu_of,
    )
