"""HTTP bodies of the customers' cluster routes. The request body is the core model
(core.clusters.ClusterRequest: strict, unknown fields refused); responses are built
from explicit fields, and the Ray token appears only in ClusterCredentials."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from gpunet.core.clusters import CLUSTER_ID

PublicClusterId = Annotated[str, StringConstraints(pattern=CLUSTER_ID)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MemberOut(_Out):
    device_id: str
    model: str
    profile: str | None
    role: str
    status: str
    detail: str | None
    node_ip: str | None
    running_from: dt.datetime | None
    running_until: dt.datetime | None


class EventOut(_Out):
    at: dt.datetime
    kind: str
    device_id: str | None
    from_status: str | None
    to_status: str
    detail: str | None


class ClusterOut(_Out):
    cluster_id: str
    name: str | None
    engine: str
    status: str
    detail: str | None
    size: int
    scope: str
    request: dict[str, Any]
    # The head's Ray GCS address (a driver's `ray.init(address=...)`) and the jobs API,
    # once the head runs. Neither works without the token (ClusterCredentials).
    address: str | None
    dashboard: str | None
    created_at: dt.datetime
    ready_at: dt.datetime | None
    expires_at: dt.datetime
    ended_at: dt.datetime | None
    members: list[MemberOut]
    events: list[EventOut]


class ClusterSummary(_Out):
    cluster_id: str
    name: str | None
    status: str
    size: int
    created_at: dt.datetime
    expires_at: dt.datetime


class ClusterList(BaseModel):
    items: list[ClusterSummary]
    next_cursor: str | None


class ClusterCredentials(BaseModel):
    """What a Ray client needs: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN=token, then
    `ray.init(address=address)`; jobs go to http://<dashboard> with the same token."""

    cluster_id: str
    status: str
    address: str | None
    dashboard: str | None
    token: str


class MemberUsageOut(BaseModel):
    device_id: str
    role: str
    running_from: dt.datetime | None
    running_until: dt.datetime | None
    serving_s: float
    credited_s: int


class UsageOut(BaseModel):
    """The usage statement: per device, the time it served, and of that the time the
    coordinator saw it alive (whole slots of `slot_seconds`), which is what is billed
    and what the device's supplier is credited."""

    cluster_id: str
    slot_seconds: int
    credited_s: int
    members: list[MemberUsageOut]
