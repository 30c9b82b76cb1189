"""The one place a cluster's or a member's status changes, each change recorded as an
event the customer reads (GET /api/v1/clusters/{id}).

Releasing a member (lost or stopped) ends its serving interval, frees its device for
placement and makes the device due for a proof at once: the light check between jobs
(docs/clusters.md). Until it passes one, placement does not choose it again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gpunet.core.clusters import ClusterStatus, MemberStatus
from gpunet.server.db.cluster_tables import Cluster, ClusterEvent, ClusterMember
from gpunet.server.db.tables import Device

C, M = ClusterStatus, MemberStatus
_CLUSTER_MOVES: dict[ClusterStatus, frozenset[ClusterStatus]] = {
    C.BUILDING: frozenset({C.READY, C.TERMINATING, C.FAILED}),
    C.READY: frozenset({C.DEGRADED, C.TERMINATING, C.FAILED}),
    C.DEGRADED: frozenset({C.READY, C.TERMINATING, C.FAILED}),
    C.TERMINATING: frozenset({C.TERMINATED, C.FAILED}),
    C.TERMINATED: frozenset(),
    C.FAILED: frozenset(),
}
_MEMBER_MOVES: dict[MemberStatus, frozenset[MemberStatus]] = {
    M.RESERVED: frozenset({M.STARTING, M.STOPPED, M.LOST}),
    M.STARTING: frozenset({M.RUNNING, M.LOST, M.STOPPING, M.STOPPED}),
    M.RUNNING: frozenset({M.LOST, M.STOPPING, M.STOPPED}),
    M.STOPPING: frozenset({M.STOPPED, M.LOST}),
    M.LOST: frozenset(),
    M.STOPPED: frozenset(),
}
RELEASED = frozenset({M.LOST, M.STOPPED})
ENDED = frozenset({C.TERMINATED, C.FAILED})


def switch_cluster(
    session: Session, cluster: Cluster, to: ClusterStatus, now: dt.datetime, detail: str
) -> None:
    before = ClusterStatus(cluster.status)
    if to == before:
        return
    if to not in _CLUSTER_MOVES[before]:
        raise ValueError(f"cluster {cluster.public_id}: {before} -> {to} is not a move")
    cluster.status = to.value
    cluster.status_changed_at = now
    cluster.detail = detail[:255]
    if to == C.READY and cluster.ready_at is None:
        cluster.ready_at = now
    if to in ENDED:
        cluster.ended_at = now
    session.add(
        ClusterEvent(
            cluster_id=cluster.id,
            at=now,
            kind="cluster",
            from_status=before.value,
            to_status=to.value,
            detail=detail[:255],
        )
    )


def switch_member(
    session: Session,
    member: ClusterMember,
    to: MemberStatus,
    now: dt.datetime,
    detail: str,
    *,
    device_public_id: str,
) -> None:
    before = MemberStatus(member.status)
    if to == before:
        return
    if to not in _MEMBER_MOVES[before]:
        raise ValueError(f"member {member.id}: {before} -> {to} is not a move")
    member.status = to.value
    member.status_changed_at = now
    member.detail = detail[:255]
    if to == M.RUNNING:
        member.running_from = member.running_from or now
        member.unreachable_since = None
    if to in RELEASED:
        if member.running_from is not None and member.running_until is None:
            # A lost node stopped serving when its agent was last known to be there.
            member.running_until = member.unreachable_since or now
        member.released_at = now
        device = session.get(Device, member.device_id)
        if device is not None:
            device.next_check_at = now  # the light check between jobs
    session.add(
        ClusterEvent(
            cluster_id=member.cluster_id,
            at=now,
            kind="member",
            device_public_id=device_public_id,
            from_status=before.value,
            to_status=to.value,
            detail=detail[:255],
        )
    )
