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
import secrets
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from gpunet.core.clusters import ClusterRequest, MemberStatus
from gpunet.core.models import DeviceStatus
from gpunet.core.placement import Candidate, Placement, Refusal, place
from gpunet.core.pog import Catalog
from gpunet.server.db.cluster_tables import Cluster, ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services.proof_schedule import network_of

ROUNDS = 4
WINDOW = 4096  # usable devices the fast path looks at
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")  # any SELECT, kept as it is
_CHUNK = 500


def _profiles_with(catalog: Catalog, min_tops: float) -> list[str]:
    return [m.key for m in catalog.models if (m.peak_int8_tops or 0) >= min_tops]


_COLUMNS = (
    Device.id, Device.profile, Device.vram_mib, Device.region, Device.host_fingerprint,
    Device.enrolled_from, Device.status, Device.status_changed_at, Device.last_heartbeat_at,
    Device.proof_owed_since, Device.last_pass_at,
)


def _hardware(query: Q, request: ClusterRequest, catalog: Catalog) -> Q:
    """The request's hardware terms (and never a retired or unproven device), in SQL."""
    query = query.where(Device.status != DeviceStatus.RETIRED.value, Device.profile.is_not(None))
    if request.gpu_model is not None:
        query = query.where(Device.profile == request.gpu_model)
    if request.min_vram_mib is not None:
        query = query.where(Device.vram_mib >= request.min_vram_mib)
    if request.min_int8_tops is not None:
        query = query.where(Device.profile.in_(_profiles_with(catalog, request.min_int8_tops)))
    if request.region is not None:
        query = query.where(Device.region == request.region)
    return query


def _usable(
    query: Q, request: ClusterRequest, now: dt.datetime, online_window_s: float,
    exclude: Collection[int],
) -> Q:
    """Placement's other checks in SQL (verified long enough, online, free, proof clear):
    the same conditions as core.placement, for the fast path."""
    # Held by a cluster, or released from one without a pass since: not usable.
    held_or_unchecked = exists().where(
        ClusterMember.device_id == Device.id,
        or_(
            ClusterMember.released_at.is_(None),
            Device.last_pass_at.is_(None),
            ClusterMember.released_at >= Device.last_pass_at,
        ),
    )
    query = query.where(
        Device.status == DeviceStatus.VERIFIED.value,
        Device.last_heartbeat_at >= now - dt.timedelta(seconds=online_window_s),
        Device.proof_owed_since.is_(None),
        ~held_or_unchecked,
    )
    if request.min_verified_hours > 0:
        since = now - dt.timedelta(hours=request.min_verified_hours)
        query = query.where(Device.status_changed_at <= since)
    if exclude:
        query = query.where(Device.id.not_in(list(exclude)))
    return query


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
    query = _hardware(
        select(*_COLUMNS, holding.c.device_id, released.c.at)
        .outerjoin(holding, holding.c.device_id == Device.id)
        .outerjoin(released, released.c.device_id == Device.id),
        request,
        catalog,
    )
    tops = {m.key: m.peak_int8_tops for m in catalog.models}
    online_since = now - dt.timedelta(seconds=online_window_s)
    out = []
    for row in session.execute(query):
        (pk, profile, vram, region, host, enrolled_from, status, changed_at, heard, owed,
         passed, held_by, released_at) = row
        if pk in exclude:
            continue
        verified = status == DeviceStatus.VERIFIED.value
        out.append(
            Candidate(
                id=pk,
                profile=profile,
                vram_mib=vram,
                int8_tops=tops.get(profile or ""),
                region=region,
                host=host,
                network=network_of(enrolled_from),
                verified=verified,
                verified_since=changed_at if verified else None,
                online=heard is not None and heard >= online_since,
                free=held_by is None,
                proof_clear=owed is None
                and (released_at is None or (passed is not None and passed > released_at)),
            )
        )
    return out


def on_best_host(
    session: Session,
    request: ClusterRequest,
    catalog: Catalog,
    *,
    now: dt.datetime,
    online_window_s: float,
    exclude: Collection[int] = (),
    start: str = "",
) -> list[Candidate] | None:
    """The fast path: the usable devices of the host placement chooses for `request`
    within one host, among the first WINDOW usable devices from host `start` on (in
    host order, wrapping around), or None if no host there has enough.

    Placement prefers one host and, among hosts with enough usable devices, the one with
    the fewest (then the lowest device id): the same rule is applied to the hosts of the
    window, and `place` then runs on the chosen host's devices. On a network whose usable
    devices fit in the window this is exactly the whole network's choice (tested in
    tests/integration/test_clusters.py); on a larger one it is the best fit within a
    window of WINDOW devices that `reserve` starts at a random host, so no supplier's
    hosts are always first, and the request reads a few thousand rows by an index, not
    every device of the model (bench/clusters.py)."""
    base = _usable(
        _hardware(select(Device.host_fingerprint, Device.id), request, catalog),
        request, now, online_window_s, exclude,
    )
    seen = list(session.execute(
        base.where(Device.host_fingerprint >= start)
        .order_by(Device.host_fingerprint, Device.id).limit(WINDOW)
    ))
    if len(seen) < WINDOW and start:
        seen += session.execute(
            base.where(Device.host_fingerprint < start)
            .order_by(Device.host_fingerprint, Device.id).limit(WINDOW - len(seen))
        ).all()
    hosts: dict[str, list[int]] = {}
    for host, pk in seen:
        hosts.setdefault(host, []).append(pk)
    fitting = [(len(ids), min(ids), host) for host, ids in hosts.items()
               if len(ids) >= request.count]
    if not fitting:
        return None
    best = min(fitting)[2]
    rows = session.execute(
        _usable(_hardware(select(*_COLUMNS), request, catalog), request, now, online_window_s,
                exclude).where(Device.host_fingerprint == best)
    )
    tops = {m.key: m.peak_int8_tops for m in catalog.models}
    return [
        Candidate(id=pk, profile=profile, vram_mib=vram, int8_tops=tops.get(profile or ""),
                  region=region, host=host, network=network_of(enrolled_from), verified=True,
                  verified_since=changed_at, online=True, free=True, proof_clear=True)
        for (pk, profile, vram, region, host, enrolled_from, _status, changed_at, _heard,
             _owed, _passed) in rows
    ]


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
        found = on_best_host(
            session, request, catalog, now=now, online_window_s=online_window_s, exclude=taken,
            start=secrets.token_hex(4),
        )
        if found is None:  # no one host will do: the whole network, and the reasons
            found = candidates(
                session, request, catalog, now=now, online_window_s=online_window_s,
                exclude=taken,
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
