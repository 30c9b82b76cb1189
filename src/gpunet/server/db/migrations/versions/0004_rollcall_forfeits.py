"""proof of GPU: forfeits reach back to the last roll-call pass; owed proofs

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable and left empty: a device never roll-called forfeits back to its last
    # pass (services.proofs), and nobody owes a proof until a challenge lapses.
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("last_rollcall_pass_at", UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("proof_owed_since", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("proof_owed_since")
        batch.drop_column("last_rollcall_pass_at")
