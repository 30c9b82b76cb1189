"""Reserving devices for a cluster: read the candidates, place them (core.placement),
and hold the chosen devices so no other cluster can.

Atomicity. Whatever happens, a device is held by at most one cluster: members not yet
released are unique per device (`uq_cluster_members_holding`). Requests avoid running
into that index as follows:

- PostgreSQL: the chosen devices' rows are locked with `SELECT ... FOR UPDATE SKIP
  LOCKED`. A device another request has locked is skipped (not waited for), and a
  device that became held since the candidates were read is seen once its row is
  locked (READ COMMITTED reads the other request's committed member). Either way the
  placement is made again without those devices, a few rounds at most, so concurrent
  requests spread over the free devices instead of queueing behind one another.
- SQLite: write transactions begin with BEGIN IMMEDIATE (db.engine), so one request
  reads, places and inserts its members while every other writer waits; the candidates
  it read cannot change underneath it. The same "still free once locked" check runs,
  and the unique index stands behind both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpunet.core.clusters import ClusterRequest, MemberStatus
from gpunet.core.models import DeviceStatus
from gpunet.core.placement import Candidate, Placement, Refusal, place
from gpunet.core.pog import Catalog
from gpunet.server.db.cluster_tables import Cluster, ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services.proof_schedule import network_of

ROUNDS = 4
_CHUNK = 500


def _profiles_with(catalog: Catalog, min_tops: float) -> list[str]:
    return [m.key for m in catalog.models if (m.peak_int8_tops or 0) >= min_tops]


def candidates(
    session: Session,
    request: ClusterRequest,
    catalog: Catalog,
    *,
    now: dt.datetime,
    online_window_s: float,
    exclude: Collection[int] = (),
) -> list[Candidate]:
    """Every device the request's hardware terms allow (in SQL), as placement sees it;
    the other constraints are placement's, so that a refusal can say how many fit."""
    holding = (
        select(ClusterMember.device_id).where(ClusterMember.released_at.is_(None)).subquery()
    )
    released = (
        select(ClusterMember.device_id, func.max(ClusterMember.released_at).label("at"))
        .group_by(ClusterMember.device_id)
        .subquery()
    )
    query = (
        select(Device, holding.c.device_id, released.c.at)
        .outerjoin(holding, holding.c.device_id == Device.id)
        .outerjoin(released, released.c.device_id == Device.id)
        .where(Device.status != DeviceStatus.RETIRED.value, Device.profile.is_not(None))
    )
    if request.gpu_model is not None:
        query = query.where(Device.profile == request.gpu_model)
    if request.min_vram_mib is not None:
        query = query.where(Device.vram_mib >= request.min_vram_mib)
    if request.min_int8_tops is not None:
        query = query.where(Device.profile.in_(_profiles_with(catalog, request.min_int8_tops)))
    if request.region is not None:
        query = query.where(Device.region == request.region)
    tops = {m.key: m.peak_int8_tops for m in catalog.models}
    online_since = now - dt.timedelta(seconds=online_window_s)
    out = []
    for device, held_by, released_at in session.execute(query):
        if device.id in exclude:
            continue
        verified = device.status == DeviceStatus.VERIFIED.value
        heard = device.last_heartbeat_at
        out.append(
            Candidate(
                id=device.id,
                profile=device.profile,
                vram_mib=device.vram_mib,
                int8_tops=tops.get(device.profile or ""),
                region=device.region,
                host=device.host_fingerprint,
                network=network_of(device.enrolled_from),
                verified=verified,
                verified_since=device.status_changed_at if verified else None,
                online=heard is not None and heard >= online_since,
                free=held_by is None,
                proof_clear=device.proof_owed_since is None
                and (
                    released_at is None
                    or (device.last_pass_at is not None and device.last_pass_at > released_at)
                ),
            )
        )
    return out


def _lock_free(session: Session, ids: Sequence[int]) -> set[int]:
    """Of `ids`, those this transaction now holds a row lock on and that no cluster
    holds. On SQLite the lock clause is not rendered (the writer lock does its work)."""
    locked = set(
        session.execute(
            select(Device.id).where(Device.id.in_(ids)).with_for_update(skip_locked=True)
        ).scalars()
    )
    held = set(
        session.execute(
            select(ClusterMember.device_id).where(
                ClusterMember.device_id.in_(list(locked)), ClusterMember.released_at.is_(None)
            )
        ).scalars()
    )
    return locked - held


def reserve(
    session: Session,
    request: ClusterRequest,
    catalog: Catalog,
    *,
    now: dt.datetime,
    online_window_s: float,
    exclude: Collection[int] = (),
) -> Placement | Refusal:
    """Place `request` and lock the chosen devices for this transaction. The caller
    inserts the members (`hold`) in the same transaction."""
    taken: set[int] = set(exclude)
    result: Placement | Refusal = Refusal("free", request.count, 0, "no placement tried")
    for _ in range(ROUNDS):
        found = candidates(
            session, request, catalog, now=now, online_window_s=online_window_s, exclude=taken
        )
        result = place(request, found, now)
        if not isinstance(result, Placement):
            return result
        chosen = [c.id for c in result.devices]
        usable = _lock_free(session, chosen)
        if len(usable) == len(chosen):
            return result
        taken.update(set(chosen) - usable)
    if isinstance(result, Placement):
        return Refusal(
            "free",
            request.count,
            0,
            "devices that fit were taken by concurrent requests; retry",
        )
    return result


def hold(
    session: Session, cluster: Cluster, placement: Placement, now: dt.datetime, *, head: bool
) -> list[ClusterMember]:
    """Members for the placed devices; the first is the head when `head`."""
    members = []
    for i, c in enumerate(placement.devices):
        member = ClusterMember(
            cluster_id=cluster.id,
            device_id=c.id,
            role="head" if head and i == 0 else "worker",
            status=MemberStatus.RESERVED.value,
            placed_at=now,
            status_changed_at=now,
        )
        session.add(member)
        members.append(member)
    session.flush()  # the holding index speaks here if anything got past the checks
    return members
