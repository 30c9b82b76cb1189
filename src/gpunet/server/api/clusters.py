"""Customers' clusters: ask for one, watch it build, use it, end it (docs/clusters.md).

A customer is any account with the clusters scopes; every route is scoped to the
caller's own clusters (another owner's cluster is 404, T3).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gpunet.core.clusters import ClusterRequest, ClusterStatus
from gpunet.core.errors import Conflict
from gpunet.server.api import cluster_schemas as s
from gpunet.server.api.deps import OwnerCtx, State, owner
from gpunet.server.api.paging import page_of
from gpunet.server.db.cluster_tables import Cluster
from gpunet.server.security.principal import Scope
from gpunet.server.services.clusters import requests, usage

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])
ReadCtx = Annotated[OwnerCtx, Depends(owner(Scope.CLUSTERS_READ))]
WriteCtx = Annotated[OwnerCtx, Depends(owner(Scope.CLUSTERS_WRITE))]
Cursor = Annotated[str | None, Query(pattern=s.CLUSTER_ID)]
Limit = Annotated[int, Query(ge=1, le=200)]
_USABLE = (ClusterStatus.READY.value, ClusterStatus.DEGRADED.value)


def _out(ctx: OwnerCtx, cluster: Cluster) -> s.ClusterOut:
    members = [
        s.MemberOut(
            device_id=v.device_public_id,
            model=v.model,
            profile=v.profile,
            role=v.member.role,
            status=v.member.status,
            detail=v.member.detail,
            node_ip=v.member.node_ip,
            running_from=v.member.running_from,
            running_until=v.member.running_until,
        )
        for v in requests.members(ctx, cluster)
    ]
    events = [
        s.EventOut(
            at=e.at,
            kind=e.kind,
            device_id=e.device_public_id,
            from_status=e.from_status,
            to_status=e.to_status,
            detail=e.detail,
        )
        for e in requests.events(ctx, cluster)
    ]
    return s.ClusterOut(
        cluster_id=cluster.public_id,
        name=cluster.name,
        engine=cluster.engine,
        status=cluster.status,
        detail=cluster.detail,
        size=cluster.size,
        scope=cluster.scope,
        request=ClusterRequest.model_validate_json(cluster.request).model_dump(mode="json"),
        address=cluster.head_address,
        dashboard=cluster.dashboard,
        created_at=cluster.created_at,
        ready_at=cluster.ready_at,
        expires_at=cluster.expires_at,
        ended_at=cluster.ended_at,
        members=members,
        events=events,
    )


@router.post("", status_code=201, response_model=s.ClusterOut)
def create_cluster(body: ClusterRequest, ctx: WriteCtx, st: State) -> s.ClusterOut:
    """Reserve devices and start building; 409 `not_placeable` says why not."""
    cluster = requests.create(
        ctx,
        ctx.owner_id,
        body,
        catalog=st.catalog,
        settings=st.clusters,
        tokens=st.cluster_tokens,
    )
    return _out(ctx, cluster)


@router.get("", response_model=s.ClusterList)
def list_clusters(ctx: ReadCtx, limit: Limit = 50, cursor: Cursor = None) -> s.ClusterList:
    rows = requests.list_owned(ctx, ctx.owner_id, limit=limit + 1, after=cursor)
    page, next_cursor = page_of(rows, limit, lambda c: c.public_id)
    return s.ClusterList(
        items=[
            s.ClusterSummary(
                cluster_id=c.public_id,
                name=c.name,
                status=c.status,
                size=c.size,
                created_at=c.created_at,
                expires_at=c.expires_at,
            )
            for c in page
        ],
        next_cursor=next_cursor,
    )


@router.get("/{cluster_id}", response_model=s.ClusterOut)
def get_cluster(cluster_id: s.PublicClusterId, ctx: ReadCtx) -> s.ClusterOut:
    return _out(ctx, requests.owned(ctx, ctx.owner_id, cluster_id))


@router.get("/{cluster_id}/credentials", response_model=s.ClusterCredentials)
def get_credentials(
    cluster_id: s.PublicClusterId, ctx: WriteCtx, st: State
) -> s.ClusterCredentials:
    """The cluster's address and Ray token, once it is ready (the token runs code on
    the cluster, so it takes the clusters:write scope)."""
    cluster = requests.owned(ctx, ctx.owner_id, cluster_id)
    if cluster.status not in _USABLE:
        raise Conflict(f"the cluster is {cluster.status}: credentials are given once it is ready")
    return s.ClusterCredentials(
        cluster_id=cluster.public_id,
        status=cluster.status,
        address=cluster.head_address,
        dashboard=cluster.dashboard,
        token=st.cluster_tokens.open(cluster.public_id, cluster.token_sealed),
    )


@router.post("/{cluster_id}/terminate", response_model=s.ClusterOut)
def terminate_cluster(cluster_id: s.PublicClusterId, ctx: WriteCtx, st: State) -> s.ClusterOut:
    cluster = requests.terminate(
        ctx, ctx.owner_id, cluster_id, settings=st.clusters, catalog=st.catalog
    )
    return _out(ctx, cluster)


@router.get("/{cluster_id}/usage", response_model=s.UsageOut)
def get_usage(cluster_id: s.PublicClusterId, ctx: ReadCtx, st: State) -> s.UsageOut:
    cluster = requests.owned(ctx, ctx.owner_id, cluster_id)
    clock = st.rewards.schedule.clock
    rows = [
        usage.member_usage(ctx.session, clock, v.member, v.device_public_id, ctx.now)
        for v in requests.members(ctx, cluster)
    ]
    return s.UsageOut(
        cluster_id=cluster.public_id,
        slot_seconds=clock.slot_seconds,
        credited_s=sum(r.credited_s for r in rows),
        members=[
            s.MemberUsageOut(
                device_id=r.device_public_id,
                role=r.role,
                running_from=r.running_from,
                running_until=r.running_until,
                serving_s=r.serving_s,
                credited_s=r.credited_s,
            )
            for r in rows
        ],
    )
