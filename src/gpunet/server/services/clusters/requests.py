"""The customer's use cases: ask for a cluster, see one's clusters, end one.

Isolation: every read and write here is scoped to the calling owner; another owner's
cluster is "not found", never "forbidden", so its existence is not revealed either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from gpunet.core.clusters import ACTIVE_STATUSES, ClusterRequest, ClusterStatus
from gpunet.core.errors import Conflict, GpunetError, InvalidInput, NotFound
from gpunet.core.ids import new_public_id
from gpunet.core.placement import Placement
from gpunet.core.pog import Catalog
from gpunet.server.context import Ctx
from gpunet.server.db.cluster_tables import Cluster, ClusterEvent, ClusterMember
from gpunet.server.db.tables import Device
from gpunet.server.services import audit, writes
from gpunet.server.services.clusters import driver, reservation
from gpunet.server.services.clusters.settings import ClusterSettings
from gpunet.server.services.clusters.tokens import TokenBox


class NotPlaceable(GpunetError):
    """The request cannot be placed now; the message says which constraint and how many
    devices fit."""

    code = "not_placeable"
    status = 409


def create(
    ctx: Ctx,
    owner_id: int,
    request: ClusterRequest,
    *,
    catalog: Catalog,
    settings: ClusterSettings,
    tokens: TokenBox,
) -> Cluster:
    """Place and reserve the devices, make the cluster and its token, and queue the
    head's start (the driver takes it from there)."""
    if request.duration_s > settings.max_duration_s:
        raise InvalidInput(f"duration_s is at most {settings.max_duration_s}")
    active = ctx.session.execute(
        select(func.count()).select_from(Cluster).where(
            Cluster.owner_id == owner_id, Cluster.status.in_([s.value for s in ACTIVE_STATUSES])
        )
    ).scalar_one()
    if active >= settings.max_active_per_owner:
        raise Conflict(f"you already hold {active} clusters (at most "
                       f"{settings.max_active_per_owner}); terminate one first")
    placed = reservation.reserve(
        ctx.session, request, catalog, now=ctx.now, online_window_s=settings.online_window_s
    )
    if not isinstance(placed, Placement):
        raise NotPlaceable(
            f"cannot place: {placed.reason}", constraint=placed.constraint, fit=placed.fit
        )
    public_id = new_public_id("clu")
    cluster = Cluster(
        public_id=public_id,
        owner_id=owner_id,
        name=request.name,
        engine=request.engine.value,
        size=request.count,
        request=request.model_dump_json(),
        scope=placed.scope,
        status=ClusterStatus.BUILDING.value,
        detail=f"{request.count} device(s) reserved (within one {placed.scope})",
        token_sealed=tokens.seal(public_id, tokens.new_token()),
        created_at=ctx.now,
        status_changed_at=ctx.now,
        build_deadline=ctx.now + dt.timedelta(seconds=settings.build_timeout_s),
        expires_at=ctx.now + dt.timedelta(seconds=request.duration_s),
    )
    ctx.session.add(cluster)
    ctx.session.flush()
    reservation.hold(ctx.session, cluster, placed, ctx.now, head=True)
    ctx.session.add(ClusterEvent(cluster_id=cluster.id, at=ctx.now, kind="cluster",
                                 to_status=cluster.status, detail=cluster.detail))
    audit.append(
        ctx.session, actor=ctx.actor, action="cluster.create", entity_kind="cluster",
        entity_id=public_id, before=None,
        after={"size": request.count, "scope": placed.scope, "expires_at": cluster.expires_at},
        now=ctx.now, address=ctx.address,
    )
    writes.record_write(ctx, "cluster.create")
    driver.advance(driver.Drive(ctx.session, ctx.now, settings, catalog), cluster)
    return cluster


def owned(ctx: Ctx, owner_id: int, public_id: str) -> Cluster:
    cluster = ctx.session.execute(
        select(Cluster).where(Cluster.public_id == public_id, Cluster.owner_id == owner_id)
    ).scalar_one_or_none()
    if cluster is None:
        raise NotFound("no such cluster")
    return cluster


def list_owned(ctx: Ctx, owner_id: int, *, limit: int, after: str | None) -> Sequence[Cluster]:
    query = select(Cluster).where(Cluster.owner_id == owner_id)
    if after is not None:
        query = query.where(Cluster.public_id > after)
    return ctx.session.execute(query.order_by(Cluster.public_id).limit(limit)).scalars().all()


@dataclass(frozen=True)
class MemberView:
    member: ClusterMember
    device_public_id: str
    model: str
    profile: str | None


def members(ctx: Ctx, cluster: Cluster) -> list[MemberView]:
    rows = ctx.session.execute(
        select(ClusterMember, Device.public_id, Device.model, Device.profile)
        .join(Device, Device.id == ClusterMember.device_id)
        .where(ClusterMember.cluster_id == cluster.id)
        .order_by(ClusterMember.id)
    ).all()
    return [MemberView(m, pid, model, profile) for m, pid, model, profile in rows]


def events(ctx: Ctx, cluster: Cluster, limit: int = 200) -> Sequence[ClusterEvent]:
    return ctx.session.execute(
        select(ClusterEvent)
        .where(ClusterEvent.cluster_id == cluster.id)
        .order_by(ClusterEvent.id.desc())
        .limit(limit)
    ).scalars().all()[::-1]


def terminate(
    ctx: Ctx, owner_id: int, public_id: str, *, settings: ClusterSettings, catalog: Catalog
) -> Cluster:
    """Ask for the end: stop commands go out now; the cluster is `terminated` once
    every node has stopped (or its agent is gone). Terminating twice changes nothing."""
    cluster = owned(ctx, owner_id, public_id)
    cluster = driver.locked(ctx.session, cluster.id) or cluster
    if ClusterStatus(cluster.status) not in ACTIVE_STATUSES or cluster.terminate_requested_at:
        return cluster
    cluster.terminate_requested_at = ctx.now
    audit.append(
        ctx.session, actor=ctx.actor, action="cluster.terminate", entity_kind="cluster",
        entity_id=public_id, before={"status": cluster.status}, after={"status": "terminating"},
        now=ctx.now, address=ctx.address,
    )
    writes.record_write(ctx, "cluster.terminate")
    driver.advance(driver.Drive(ctx.session, ctx.now, settings, catalog), cluster)
    return cluster
