"""Moves each cluster towards what it should be, one step at a time.

`advance` looks at one cluster and its members and writes the next commands to the
outbox; `apply_result` records an agent's answer and advances at once, so a build
moves at the speed of the agents rather than of the driver's tick. Both run inside a
transaction that holds the cluster's row (FOR UPDATE on PostgreSQL; the writer lock on
SQLite), so two replicas never drive one cluster at the same moment.

What "should be": running with every node until its end (expiry or the customer's
terminate), then stopped on every node with every device released. Along the way:
- building: the head starts first; the others join its address; once all run, the head
  checks that Ray reports every node and that a task ran on each: then `ready`;
- a node lost (its agent gone for `lost_after_s`, its Ray node exited, a failed start)
  is replaced by a device that fits the same request, if there is one; until then the
  cluster is `degraded` (or still building). A lost head ends the cluster: Ray cannot
  move its control store elsewhere, so the cluster has failed;
- not ready by its build deadline: failed, devices released.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core import clusters as cc
from gpunet.core.clusters import ClusterRequest, ClusterStatus, MemberStatus
from gpunet.core.placement import Placement
from gpunet.core.pog import Catalog
from gpunet.server.db.cluster_tables import Cluster, ClusterCommand, ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services.clusters import outbox, reservation
from gpunet.server.services.clusters.settings import ClusterSettings
from gpunet.server.services.clusters.status import ENDED, RELEASED, switch_cluster, switch_member

log = logging.getLogger("gpunet.clusters")
C, M = ClusterStatus, MemberStatus
FAILED_PREFIX = "failed: "
RESOURCE = "gpunet_node"  # every node offers one, so a task can be pinned per node


@dataclass
class Drive:
    """What one step needs besides the session."""

    session: Session
    now: dt.datetime
    settings: ClusterSettings
    catalog: Catalog


def locked(session: Session, cluster_id: int) -> Cluster | None:
    return session.execute(
        select(Cluster).where(Cluster.id == cluster_id).with_for_update()
    ).scalar_one_or_none()


def _members(d: Drive, cluster: Cluster) -> list[tuple[ClusterMember, str]]:
    rows = d.session.execute(
        select(ClusterMember, Device.public_id)
        .join(Device, Device.id == ClusterMember.device_id)
        .where(ClusterMember.cluster_id == cluster.id)
        .order_by(ClusterMember.id)
    ).all()
    return [(m, pid) for m, pid in rows]


def _set(d: Drive, m: ClusterMember, pid: str, to: MemberStatus, detail: str) -> None:
    switch_member(d.session, m, to, d.now, detail, device_public_id=pid)


def _start_args(d: Drive, cluster: Cluster, m: ClusterMember, pid: str) -> dict[str, Any]:
    device = d.session.get(Device, m.device_id)
    cpu_only = device is not None and device.vendor == "cpu"
    head = None if m.role == "head" else cluster.head_address
    start = cc.StartNode(
        cluster.public_id, pid, head, 0 if cpu_only else 1, {RESOURCE: 1.0}
    )
    return start.wire()


def advance(d: Drive, cluster: Cluster) -> None:
    """One step towards the cluster's wanted state (see the module's docstring)."""
    if ClusterStatus(cluster.status) in ENDED:
        return
    members = _members(d, cluster)
    open_cmds = outbox.pending(d.session, cluster.id)
    if cluster.status != C.TERMINATING:
        ending = _ending_reason(d, cluster)
        if ending is not None:
            switch_cluster(d.session, cluster, C.TERMINATING, d.now, ending)
    if cluster.status == C.TERMINATING:
        _terminate(d, cluster, members, open_cmds)
        return
    _lose_unreachable(d, members)
    head = next((m for m, _ in members if m.role == "head"), None)
    if head is None or head.status in RELEASED:
        why = head.detail if head is not None and head.detail else "no head"
        _fail(d, cluster, members, f"the head node was lost ({why})")
        return
    if cluster.status == C.BUILDING and d.now >= cluster.build_deadline:
        _fail(d, cluster, members, "not ready before the build deadline")
        return
    holding = [(m, pid) for m, pid in members if m.status not in RELEASED]
    if len(holding) < cluster.size:
        _replace(d, cluster, members, cluster.size - len(holding))
        holding = [(m, pid) for m, pid in _members(d, cluster) if m.status not in RELEASED]
    _start_nodes(d, cluster, holding, open_cmds)
    _check_when_complete(d, cluster, holding, open_cmds)


def _ending_reason(d: Drive, cluster: Cluster) -> str | None:
    if cluster.terminate_requested_at is not None:
        return "terminated by its customer"
    if d.now >= cluster.expires_at:
        return "its duration ran out"
    return None


def _lose_unreachable(d: Drive, members: list[tuple[ClusterMember, str]]) -> None:
    """Nodes whose agent left its session (on any replica) `lost_after_s` ago and has
    not been heard from since, or was not heard from within the online window (a
    replica that died could not say). A heartbeat heard after the mark means the host
    is back, on this replica or another: the mark goes. (The last heartbeat is written
    at most every 30 s plus a flush: `lost_after_s` must be longer, docs/clusters.md.)"""
    limit = dt.timedelta(seconds=d.settings.lost_after_s)
    silent = d.now - dt.timedelta(seconds=d.settings.online_window_s)
    for m, pid in members:
        if m.status not in (M.STARTING, M.RUNNING):
            continue
        device = d.session.get(Device, m.device_id)
        heard = device.last_heartbeat_at if device is not None else None
        gone = m.unreachable_since
        if gone is not None and heard is not None and heard > gone:
            m.unreachable_since = gone = None
        if gone is not None and d.now - gone >= limit:
            _set(d, m, pid, M.LOST, f"its agent has been gone since {gone.isoformat()}")
        elif heard is not None and heard < silent and m.placed_at < silent:
            m.unreachable_since = m.unreachable_since or heard
            _set(d, m, pid, M.LOST, f"its agent was last heard at {heard.isoformat()}")


def _start_nodes(
    d: Drive,
    cluster: Cluster,
    holding: list[tuple[ClusterMember, str]],
    open_cmds: list[ClusterCommand],
) -> None:
    for m, pid in holding:
        if m.status != M.RESERVED:
            continue
        if m.role != "head" and cluster.head_address is None:
            continue  # workers join once the head says where it is
        outbox.enqueue(d.session, cluster, m.device_id, cc.START,
                       _start_args(d, cluster, m, pid), d.now)
        _set(d, m, pid, M.STARTING, "start command queued")


def _check_when_complete(
    d: Drive,
    cluster: Cluster,
    holding: list[tuple[ClusterMember, str]],
    open_cmds: list[ClusterCommand],
) -> None:
    running = [(m, pid) for m, pid in holding if m.status == M.RUNNING]
    if len(running) < cluster.size:
        if cluster.status == C.READY:
            switch_cluster(d.session, cluster, C.DEGRADED, d.now, "a node was lost")
        return
    if cluster.status == C.READY or any(c.name == cc.CHECK for c in open_cmds):
        return
    head, head_pid = next((m, pid) for m, pid in running if m.role == "head")
    check = cc.CheckCluster(cluster.public_id, head_pid, cluster.size)
    outbox.enqueue(d.session, cluster, head.device_id, cc.CHECK, check.wire(), d.now)


def _replace(
    d: Drive, cluster: Cluster, members: list[tuple[ClusterMember, str]], missing: int
) -> None:
    request = ClusterRequest.model_validate_json(cluster.request)
    ever = {m.device_id for m, _ in members}
    wanted = request.model_copy(update={"count": missing})
    placed = reservation.reserve(
        d.session,
        wanted,
        d.catalog,
        now=d.now,
        online_window_s=d.settings.online_window_s,
        exclude=ever,
    )
    if not isinstance(placed, Placement):
        if cluster.status == C.READY:
            switch_cluster(d.session, cluster, C.DEGRADED, d.now,
                           f"a node was lost; no replacement yet: {placed.reason}")
        return
    reservation.hold(d.session, cluster, placed, d.now, head=False)
    if cluster.status == C.READY:
        switch_cluster(d.session, cluster, C.DEGRADED, d.now,
                       f"a node was lost; replacing it with {missing} device(s)")


def _fail(
    d: Drive, cluster: Cluster, members: list[tuple[ClusterMember, str]], why: str
) -> None:
    log.info("cluster %s failed: %s", cluster.public_id, why)
    # The nodes still holding stop like a termination's, then the cluster is failed.
    cluster.terminate_requested_at = cluster.terminate_requested_at or d.now
    switch_cluster(d.session, cluster, C.TERMINATING, d.now, FAILED_PREFIX + why)
    _terminate(d, cluster, members, outbox.pending(d.session, cluster.id))


def _terminate(
    d: Drive,
    cluster: Cluster,
    members: list[tuple[ClusterMember, str]],
    open_cmds: list[ClusterCommand],
) -> None:
    outbox.cancel_pending(d.session, cluster.id, d.now, keep=cc.STOP)
    asked = {c.device_id: c.created_at for c in open_cmds if c.name == cc.STOP}
    lost = dt.timedelta(seconds=d.settings.lost_after_s)
    # A stop is waited for through one redelivery; an agent that answers none by then
    # has its device released anyway (its node also stops itself at the cluster's end).
    patience = dt.timedelta(seconds=2 * d.settings.command_timeout_s) + lost
    for m, pid in members:
        if m.status in RELEASED:
            continue
        if m.status == M.RESERVED:
            _set(d, m, pid, M.STOPPED, "released before it started")
        elif m.status in (M.STARTING, M.RUNNING):
            outbox.enqueue(d.session, cluster, m.device_id, cc.STOP,
                           cc.NodeRef(cluster.public_id, pid).wire(), d.now)
            _set(d, m, pid, M.STOPPING, "stop command queued")
        elif (
            m.device_id not in asked
            or d.now - asked[m.device_id] >= patience
            or (m.unreachable_since is not None and d.now - m.unreachable_since >= lost)
        ):
            # Its agent is gone or silent: a node goes down with its agent (its Ray
            # node dies with its parent), so the device is released without an answer.
            _set(d, m, pid, M.STOPPED, "stopped without an answer from its agent")
    if all(m.status in RELEASED for m, _ in members):
        # A cluster that stopped because it failed ends as failed, with its reason.
        why = cluster.detail or ""
        if why.startswith(FAILED_PREFIX):
            switch_cluster(d.session, cluster, C.FAILED, d.now, why[len(FAILED_PREFIX):])
        else:
            switch_cluster(d.session, cluster, C.TERMINATED, d.now, "every node stopped")


def apply_result(d: Drive, command: ClusterCommand) -> None:
    """Record the agent's answer to `command` (already settled) and advance."""
    cluster = locked(d.session, command.cluster_id)
    if cluster is None:
        return
    member, pid = next(
        ((m, pid) for m, pid in _members(d, cluster)
         if m.device_id == command.device_id and m.status not in RELEASED),
        (None, ""),
    )
    result = json.loads(command.result or "null")
    if member is not None:
        _apply(d, cluster, member, pid, command, result)
    advance(d, cluster)


def _apply(
    d: Drive, cluster: Cluster, m: ClusterMember, pid: str, command: ClusterCommand, result: Any
) -> None:
    ok = bool(command.ok)
    if command.name == cc.START and m.status == M.STARTING:
        if not ok:
            _set(d, m, pid, M.LOST, f"its node did not start: {str(result)[:200]}")
            return
        try:
            started = cc.NodeStarted.parse(result)
        except cc.BadCommand as exc:
            _set(d, m, pid, M.LOST, f"its agent answered the start badly: {exc}")
            return
        m.node_ip = started.node_ip
        if m.role == "head":
            cluster.head_address = started.address
            cluster.dashboard = started.dashboard
        _set(d, m, pid, M.RUNNING, "its Ray node is up")
    elif command.name == cc.STOP and m.status == M.STOPPING:
        _set(d, m, pid, M.STOPPED, "its Ray node stopped" if ok else f"stop: {result}")
    elif command.name == cc.STATUS and m.status in (M.STARTING, M.RUNNING):
        if ok and isinstance(result, dict) and result.get("running") is True:
            m.unreachable_since = None
        elif m.status == M.RUNNING:
            _set(d, m, pid, M.LOST, "its Ray node is gone (its agent restarted)")
    elif command.name == cc.CHECK and cluster.status in (C.BUILDING, C.DEGRADED):
        if ok and cc.check_passed(result, cluster.size):
            switch_cluster(d.session, cluster, C.READY, d.now,
                           f"Ray reports {cluster.size} node(s); a task ran on each")
        else:
            cluster.detail = f"readiness check not passed yet: {str(result)[:200]}"


def node_gone(d: Drive, device_id: int, cluster_public_id: str, detail: str) -> None:
    """The agent says this device's node for the cluster exited on its own."""
    row = d.session.execute(
        select(ClusterMember, Cluster)
        .join(Cluster, Cluster.id == ClusterMember.cluster_id)
        .where(
            ClusterMember.device_id == device_id,
            ClusterMember.released_at.is_(None),
            Cluster.public_id == cluster_public_id,
        )
    ).first()
    if row is None:
        return
    member, cluster = row
    cluster = locked(d.session, cluster.id) or cluster
    if member.status in (M.STARTING, M.RUNNING):
        device = d.session.get(Device, device_id)
        _set(d, member, device.public_id if device else "", M.LOST,
             f"its Ray node exited: {detail[:200]}")
    advance(d, cluster)
