"""verified uptime and rewards: uptime slots, closed epochs, payouts, incident windows

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.amount import Amount
from gpunet.server.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uptime_slots",
        sa.Column("chunk", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("device_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("bits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chunk", "device_id"),
    )
    op.create_table(
        "reward_epochs",
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("emission", Amount(), nullable=False),
        sa.Column("paid", Amount(), nullable=False),
        sa.Column("unallocated", Amount(), nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("wallets", sa.Integer(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("counted_slots", sa.BigInteger(), nullable=False),
        sa.Column("incidents", sa.Integer(), nullable=False),
        sa.Column("schedule_sha256", sa.String(64), nullable=False),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    op.create_table(
        "reward_payouts",
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("wallet", sa.String(128), nullable=False),
        sa.Column("amount", Amount(), nullable=False),
        sa.PrimaryKeyConstraint("epoch", "wallet"),
    )
    op.create_table(
        "incident_windows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("declared_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("declared_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_windows_starts_at", "incident_windows", ["starts_at"])
    op.create_index("ix_device_events_kind_at", "device_events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_device_events_kind_at", table_name="device_events")
    op.drop_index("ix_incident_windows_starts_at", table_name="incident_windows")
    op.drop_table("incident_windows")
    op.drop_table("reward_payouts")
    op.drop_table("reward_epochs")
    op.drop_table("uptime_slots")
