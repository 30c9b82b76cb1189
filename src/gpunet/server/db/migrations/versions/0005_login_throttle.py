"""accounts: per-account back-off on failed sign-ins, lock-out, known addresses

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both tables start empty: every account begins with no failures and no known
    # address, so the first sign-in after the upgrade is throttled as from a stranger
    # only once it has failed enough (services.login_throttle).
    op.create_table(
        "login_throttle",
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("unlock_hash", sa.String(length=64), nullable=True),
        sa.Column("unlock_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("owner_id"),
        sa.UniqueConstraint("unlock_hash"),
    )
    op.create_table(
        "login_addresses",
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("last_success_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("owner_id", "address_key"),
    )


def downgrade() -> None:
    op.drop_table("login_addresses")
    op.drop_table("login_throttle")
