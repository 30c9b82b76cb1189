"""the explorer's kept history: hourly network snapshots, epoch scores, proof indexes

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.amount import Amount
from gpunet.server.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_snapshots",
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("taken_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("suspect", sa.Integer(), nullable=False),
        sa.Column("suspended", sa.Integer(), nullable=False),
        sa.Column("verified_vram_mib", sa.BigInteger(), nullable=False),
        sa.Column("verified_int8_tops", sa.Float(), nullable=False),
        sa.Column("online_devices", sa.Integer(), nullable=False),
        sa.Column("online_slots", sa.BigInteger(), nullable=False),
        sa.Column("proofs_passed", sa.Integer(), nullable=False),
        sa.Column("proofs_failed", sa.Integer(), nullable=False),
        sa.Column("proofs_missed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    op.create_table(
        "epoch_scores",
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("total_score", Amount(), nullable=False),
        sa.Column("scale", Amount(), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    # A device page reads its newest proofs; the hourly snapshot counts verdicts by time.
    op.create_index("ix_challenges_device_issued", "challenges", ["device_id", "issued_at"])
    op.create_index("ix_challenges_completed_at", "challenges", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_challenges_completed_at", table_name="challenges")
    op.drop_index("ix_challenges_device_issued", table_name="challenges")
    op.drop_table("epoch_scores")
    op.drop_table("network_snapshots")
