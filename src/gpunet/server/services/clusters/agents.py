"""What the control channel tells the clusters: a host's session ended or came back, a
command was answered, a node exited on its own. Each function is one transaction's work
(the caller, server.control.clusters, owns the transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core import clusters as cc
from gpunet.core.clusters import MemberStatus
from gpunet.server.db.cluster_tables import Cluster, ClusterCommand, ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services.clusters import driver, outbox

M = MemberStatus
_LIVE = (M.STARTING.value, M.RUNNING.value, M.STOPPING.value)


def _holding(session: Session, device_ids: Collection[int]) -> list[ClusterMember]:
    return list(
        session.execute(
            select(ClusterMember).where(
                ClusterMember.device_id.in_(list(device_ids)),
                ClusterMember.released_at.is_(None),
                ClusterMember.status.in_(_LIVE),
            )
        ).scalars()
    )


def sessions_gone(session: Session, device_ids: Collection[int], now: dt.datetime) -> int:
    """Devices whose session ended here: their nodes are unreachable from now. If the
    host has joined another replica meanwhile, its heartbeats say so (the driver clears
    the mark when one is heard after it, services.clusters.driver)."""
    marked = 0
    for member in _holding(session, device_ids):
        if member.unreachable_since is None:
            member.unreachable_since = now
            marked += 1
    return marked


def sessions_back(session: Session, device_ids: Collection[int], now: dt.datetime) -> int:
    """Hosts that joined a session: their pending commands go out at once, and a node
    that was unreachable is asked whether it still runs (an agent that restarted lost
    it: its Ray node dies with it)."""
    if not device_ids:
        return 0
    pending = list(
        session.execute(
            select(ClusterCommand).where(
                ClusterCommand.device_id.in_(list(device_ids)), ClusterCommand.done_at.is_(None)
            )
        ).scalars()
    )
    asked = {c.device_id for c in pending if c.name == cc.STATUS}
    for command in pending:
        command.delivered_at = None
    count = 0
    for member in _holding(session, device_ids):
        if member.unreachable_since is None or member.device_id in asked:
            continue
        if member.status != M.RUNNING.value:
            member.unreachable_since = None
            continue
        cluster = session.get(Cluster, member.cluster_id)
        device = session.get(Device, member.device_id)
        if cluster is None or device is None:
            continue
        ref = cc.NodeRef(cluster.public_id, device.public_id)
        outbox.enqueue(session, cluster, member.device_id, cc.STATUS, ref.wire(), now)
        count += 1
    return count


def answered(
    session: Session, d: driver.Drive, command_id: str, *, ok: bool, result: Any
) -> None:
    command = outbox.settle(session, command_id, ok=ok, result=result, now=d.now)
    if command is not None:
        driver.apply_result(d, command)


def node_exited(d: driver.Drive, device_id: int, args: dict[str, Any]) -> None:
    ref = cc.NodeRef.parse(args)
    detail = args.get("detail")
    driver.node_gone(d, device_id, ref.cluster, str(detail)[:200] if detail else "no detail")
