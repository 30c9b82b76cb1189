"""The customers' clusters (issue 9): clusters, their members, their events, and the
outbox of commands to agents. Mapped on the same `Base` as db.tables (and made by the
Alembic migration 0009); kept in their own module so the cluster code reads as one part.

Reservation: a device is held by at most one cluster because of
`uq_cluster_members_holding`, a unique index on the device over members not yet
released. Whatever the placement code does, two clusters can never hold one device at
once; services.clusters.reservation explains how requests avoid running into it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from gpunet.server.db.tables import Base, Device
from gpunet.server.db.types import BigId, UTCDateTime

HOLDING = "released_at IS NULL"
PENDING = "done_at IS NULL"


class Cluster(Base):
    """One customer's cluster. `status` changes only in
    services.clusters.status.switch_cluster, which records a ClusterEvent."""

    __tablename__ = "clusters"
    __table_args__ = (Index("ix_clusters_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(48))
    engine: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)  # nodes asked for
    request: Mapped[str] = mapped_column(Text)  # the ClusterRequest as accepted (JSON)
    scope: Mapped[str] = mapped_column(String(16))  # what placement kept together
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(255))  # why the last change
    # The Ray token, sealed with a key derived from the coordinator's secret
    # (services.clusters.tokens): a copy of the database does not give the clusters away.
    token_sealed: Mapped[str] = mapped_column(String(255))
    head_address: Mapped[str | None] = mapped_column(String(300))  # GCS host:port
    dashboard: Mapped[str | None] = mapped_column(String(300))  # jobs API host:port
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    build_deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    terminate_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ClusterMember(Base):
    """One device's place in one cluster, from reservation to release. `status` changes
    only in services.clusters.status.switch_member."""

    __tablename__ = "cluster_members"
    __table_args__ = (
        Index(
            "uq_cluster_members_holding",
            "device_id",
            unique=True,
            postgresql_where=text(HOLDING),
            sqlite_where=text(HOLDING),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # head | worker
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(255))
    node_ip: Mapped[str | None] = mapped_column(String(64))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Serving: from the node's start to its stop or loss. Accounting credits only the
    # slots in here in which the device's heartbeats counted (services.clusters.usage).
    running_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    running_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when the host's control session ended (on whichever replica held it), cleared
    # when it is back; the driver declares the node lost once this is old enough.
    unreachable_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ClusterEvent(Base):
    """What happened to a cluster, in order; its customer reads these."""

    __tablename__ = "cluster_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # cluster | member
    device_public_id: Mapped[str | None] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(255))


class ClusterCommand(Base):
    """The outbox: a command for the agent of one device. Whichever replica holds that
    host's control session delivers it (server.control.clusters) and writes the result
    back; the result moves the cluster on (services.clusters.driver). The Ray token is
    never in `args`: the delivering replica adds it."""

    __tablename__ = "cluster_commands"
    __table_args__ = (
        Index(
            "ix_cluster_commands_pending",
            "device_id",
            postgresql_where=text(PENDING),
            sqlite_where=text(PENDING),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ok: Mapped[bool | None] = mapped_column(Boolean)
    result: Mapped[str | None] = mapped_column(Text)


# Placement reads a window of verified devices of one proven profile in host order
# (services.clusters.reservation.on_best_host).
Index("ix_devices_status_profile_host", Device.status, Device.profile, Device.host_fingerprint)
