"""customers' clusters: clusters, members (one holding cluster per device), events and
the outbox of commands to agents

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

HOLDING = "released_at IS NULL"
PENDING = "done_at IS NULL"


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, UTCDateTime(timezone=True), nullable=nullable)


def _ref(name: str, target: str) -> sa.Column[int]:
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey(target, ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "clusters",
        _id(),
        sa.Column("public_id", sa.String(32), nullable=False, unique=True),
        _ref("owner_id", "owners.id"),
        sa.Column("name", sa.String(48)),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(255)),
        sa.Column("token_sealed", sa.String(255), nullable=False),
        sa.Column("head_address", sa.String(300)),
        sa.Column("dashboard", sa.String(300)),
        _when("created_at", False),
        _when("status_changed_at", False),
        _when("build_deadline", False),
        _when("ready_at"),
        _when("expires_at", False),
        _when("terminate_requested_at"),
        _when("ended_at"),
    )
    # Placement reads a window of verified devices of one proven profile in host order.
    op.create_index(
        "ix_devices_status_profile_host", "devices", ["status", "profile", "host_fingerprint"]
    )
    op.create_index("ix_clusters_status", "clusters", ["status"])
    op.create_index("ix_clusters_owner_id", "clusters", ["owner_id"])
    _members_and_events()
    _outbox()


def _members_and_events() -> None:
    op.create_table(
        "cluster_members",
        _id(),
        _ref("cluster_id", "clusters.id"),
        _ref("device_id", "devices.id"),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(255)),
        sa.Column("node_ip", sa.String(64)),
        _when("placed_at", False),
        _when("status_changed_at", False),
        _when("running_from"),
        _when("running_until"),
        _when("released_at"),
        _when("unreachable_since"),
    )
    op.create_index("ix_cluster_members_cluster_id", "cluster_members", ["cluster_id"])
    op.create_index("ix_cluster_members_device_id", "cluster_members", ["device_id"])
    op.create_index(
        "uq_cluster_members_holding",
        "cluster_members",
        ["device_id"],
        unique=True,
        postgresql_where=sa.text(HOLDING),
        sqlite_where=sa.text(HOLDING),
    )
    op.create_table(
        "cluster_events",
        _id(),
        _ref("cluster_id", "clusters.id"),
        _when("at", False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("device_public_id", sa.String(32)),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(255)),
    )
    op.create_index("ix_cluster_events_cluster_id", "cluster_events", ["cluster_id"])


def _outbox() -> None:
    op.create_table(
        "cluster_commands",
        sa.Column("id", sa.String(32), primary_key=True),
        _ref("cluster_id", "clusters.id"),
        _ref("device_id", "devices.id"),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        _when("created_at", False),
        _when("delivered_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("done_at"),
        sa.Column("ok", sa.Boolean()),
        sa.Column("result", sa.Text()),
    )
    op.create_index("ix_cluster_commands_cluster_id", "cluster_commands", ["cluster_id"])
    op.create_index(
        "ix_cluster_commands_pending",
        "cluster_commands",
        ["device_id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_devices_status_profile_host", table_name="devices")
    op.drop_table("cluster_commands")
    op.drop_table("cluster_events")
    op.drop_table("cluster_members")
    op.drop_table("clusters")
