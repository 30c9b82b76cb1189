"""proof of GPU: challenges, device proof bookkeeping, forfeits

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "challenges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "device_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(48), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("issued_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deadline", UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("committed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("commitment", sa.Text(), nullable=True),
        sa.Column("hardware", sa.Text(), nullable=True),
        sa.Column("opening_secret", sa.String(64), nullable=True),
        sa.Column("completed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
        sa.Column("commit_elapsed_s", sa.Float(), nullable=True),
        sa.Column("verify_cpu_ms", sa.Float(), nullable=True),
    )
    op.create_index("ix_challenges_batch", "challenges", ["batch"])
    op.create_index("ix_challenges_device_outcome", "challenges", ["device_id", "outcome"])
    op.create_index("ix_challenges_outcome_deadline", "challenges", ["outcome", "deadline"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("profile", sa.String(48), nullable=True))
        batch.add_column(sa.Column("last_pass_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_check_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("attested_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attestation_ueid", sa.String(128), nullable=True))
        batch.create_index("ix_devices_next_check_at", ["next_check_at"])
        batch.create_unique_constraint("uq_devices_attestation_ueid", ["attestation_ueid"])
    with op.batch_alter_table("device_events") as batch:
        batch.add_column(sa.Column("forfeit_from", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_events") as batch:
        batch.drop_column("forfeit_from")
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("uq_devices_attestation_ueid", type_="unique")
        batch.drop_index("ix_devices_next_check_at")
        batch.drop_column("attestation_ueid")
        batch.drop_column("attested_at")
        batch.drop_column("failures")
        batch.drop_column("next_check_at")
        batch.drop_column("last_pass_at")
        batch.drop_column("profile")
    op.drop_table("challenges")
