"""Customer clusters: the request, the statuses, and the commands an agent runs.

Shared by the coordinator (which validates requests and writes commands to its outbox),
the agent (which parses and runs the commands) and the CLI/SDK (which builds requests).
Pure: no web, database or process code.

A cluster is a set of devices, one Ray node each. The first device placed is the head
(`ray start --head`); the others join it (`ray start --address`). Every node runs with
Ray's token authentication (RAY_AUTH_MODE=token) and the cluster's own token, which the
coordinator makes at placement and shows only to the customer and the cluster's nodes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from gpunet.core.models import MAX_VRAM_MIB, Label, Region, Strict

MAX_NODES = 64  # devices in one cluster
MIN_DURATION_S = 60
CLUSTER_ID = r"^clu_[a-z2-7]{16}$"
_CLUSTER_ID_RE = re.compile(CLUSTER_ID)
_DEVICE_ID_RE = re.compile(r"^dev_[a-z2-7]{16}$")
# host:port of a Ray GCS; hosts are names or IPv4/IPv6 literals, as `ray start` takes them.
_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_RESOURCE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")

ProfileKey = Annotated[
    str, StringConstraints(min_length=1, max_length=48, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]


class Engine(enum.StrEnum):
    RAY = "ray"


class ClusterStatus(enum.StrEnum):
    """A cluster's life; it changes only in services.clusters.status.switch_cluster."""

    BUILDING = "building"  # devices reserved, Ray nodes starting
    READY = "ready"  # every node reported by Ray and a task ran on each
    DEGRADED = "degraded"  # a node was lost after ready; a replacement is sought
    TERMINATING = "terminating"  # stop commands sent
    TERMINATED = "terminated"  # every node stopped or given up on; devices released
    FAILED = "failed"  # could not be built (or lost its head); devices released


ACTIVE_STATUSES = frozenset(
    {ClusterStatus.BUILDING, ClusterStatus.READY, ClusterStatus.DEGRADED, ClusterStatus.TERMINATING}
)


class MemberStatus(enum.StrEnum):
    """One device's part in a cluster; changes only in status.switch_member."""

    RESERVED = "reserved"  # placed; no start command yet
    STARTING = "starting"  # start command queued or sent
    RUNNING = "running"  # the agent says its Ray node is up
    LOST = "lost"  # its agent went away or its node died; released
    STOPPING = "stopping"  # stop command queued or sent
    STOPPED = "stopped"  # stopped (or never started); released


HOLDING = frozenset(
    {MemberStatus.RESERVED, MemberStatus.STARTING, MemberStatus.RUNNING, MemberStatus.STOPPING}
)


class ClusterRequest(Strict):
    """What a customer asks for. Every constraint is optional except the count."""

    count: int = Field(ge=1, le=MAX_NODES, strict=True)
    # A catalog profile key (`h100-sxm`, `cpu-dev`): what the devices proved to be.
    gpu_model: ProfileKey | None = None
    min_vram_mib: int | None = Field(default=None, ge=1, le=MAX_VRAM_MIB, strict=True)
    # Peak dense int8 throughput of the proven profile (catalog), in TOPS.
    min_int8_tops: float | None = Field(default=None, ge=0, le=1_000_000, strict=True)
    region: Region | None = None
    # Between any two nodes, as estimated from where they are (core.placement.LATENCY_MS).
    max_latency_ms: float | None = Field(default=None, gt=0, le=60_000, strict=True)
    # Verified without a break for at least this long.
    min_verified_hours: float = Field(default=0, ge=0, le=24 * 366, strict=True)
    duration_s: int = Field(default=3600, ge=MIN_DURATION_S, le=366 * 86400, strict=True)
    engine: Engine = Engine.RAY
    name: Label | None = None


# -- commands (coordinator -> agent over the control channel) ----------------------------

START, STOP, CHECK, STATUS = "cluster_start", "cluster_stop", "cluster_check", "cluster_status"
REPORT = "cluster_report"  # agent -> coordinator: a node stopped on its own


class BadCommand(ValueError):
    """A command's arguments are not what the protocol allows."""


def _text(args: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise BadCommand(f"{name} is missing or malformed")
    return value


def _count(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = args.get(name)
    if type(value) is not int or not low <= value <= high:
        raise BadCommand(f"{name} must be an integer in [{low}, {high}]")
    return value


@dataclass(frozen=True, slots=True)
class StartNode:
    """Start this device's Ray node for `cluster`: the head (no head_address) or a node
    joining the head at `head_address`. `token` is filled in by the replica that
    delivers the command, never stored in the outbox."""

    cluster: str
    device: str
    head_address: str | None = None
    num_gpus: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    token: str = ""

    @property
    def is_head(self) -> bool:
        return self.head_address is None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cluster": self.cluster,
            "device": self.device,
            "num_gpus": self.num_gpus,
            "resources": dict(self.resources),
        }
        if self.head_address is not None:
            out["head_address"] = self.head_address
        if self.token:
            out["token"] = self.token
        return out

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> StartNode:
        head = args.get("head_address")
        if head is not None and (not isinstance(head, str) or not _ADDRESS_RE.match(head)):
            raise BadCommand("head_address is not HOST:PORT")
        resources = args.get("resources", {})
        if not isinstance(resources, dict) or len(resources) > 8:
            raise BadCommand("resources is a map of at most 8 names")
        for key, amount in resources.items():
            if not isinstance(key, str) or not _RESOURCE_RE.match(key):
                raise BadCommand("a resource name is a short identifier")
            if type(amount) not in (int, float) or not 0 <= amount <= 1_000_000:
                raise BadCommand("a resource amount is a number in [0, 1e6]")
        return cls(
            cluster=_text(args, "cluster", _CLUSTER_ID_RE),
            device=_text(args, "device", _DEVICE_ID_RE),
            head_address=head,
            num_gpus=_count(args, "num_gpus", 0, 16),
            resources={k: float(v) for k, v in resources.items()},
            token=_text(args, "token", _TOKEN_RE),
        )


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """The agent's answer to StartNode: where its node is. The head also says where a
    driver connects (`address`, the GCS) and where jobs are submitted (`dashboard`)."""

    node_ip: str
    address: str | None = None
    dashboard: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"node_ip": self.node_ip, "address": self.address, "dashboard": self.dashboard}

    @classmethod
    def parse(cls, result: Any) -> NodeStarted:
        if not isinstance(result, dict):
            raise BadCommand("a start result is a map")
        ip = result.get("node_ip")
        if not isinstance(ip, str) or not 0 < len(ip) <= 64:
            raise BadCommand("node_ip is missing")
        address = result.get("address")
        if address is not None and (not isinstance(address, str) or not _ADDRESS_RE.match(address)):
            raise BadCommand("address is not HOST:PORT")
        dashboard = result.get("dashboard")
        if dashboard is not None and (
            not isinstance(dashboard, str) or not _ADDRESS_RE.match(dashboard)
        ):
            raise BadCommand("dashboard is not HOST:PORT")
        return cls(ip, address, dashboard)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """Arguments naming one node: StopNode, NodeStatus and REPORT take these."""

    cluster: str
    device: str

    def wire(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "device": self.device}

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> NodeRef:
        return cls(_text(args, "cluster", _CLUSTER_ID_RE), _text(args, "device", _DEVICE_ID_RE))


@dataclass(frozen=True, slots=True)
class CheckCluster:
    """Sent to the head once every node runs: the cluster is ready only if Ray reports
    `nodes` live nodes and a small task has run on each of them."""

    cluster: str
    device: str
    nodes: int

    def wire(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "device": self.device, "nodes": self.nodes}

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> CheckCluster:
        ref = NodeRef.parse(args)
        return cls(ref.cluster, ref.device, _count(args, "nodes", 1, MAX_NODES))


def check_passed(result: Any, nodes: int) -> bool:
    """A CheckCluster result proves readiness: `nodes` distinct live nodes, each of
    which returned its own node id from a task pinned to it."""
    if not isinstance(result, dict):
        return False
    alive, ran = result.get("alive"), result.get("ran")
    if not isinstance(alive, list) or not isinstance(ran, list):
        return False
    return len(set(map(str, alive))) == nodes and sorted(map(str, ran)) == sorted(map(str, alive))
