"""devices: the last heartbeat the coordinator received

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and left empty: "never" until the device's next heartbeat is flushed. It
    # is not filled from last_seen_at, which status requests used to move (issue 12).
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("last_heartbeat_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_heartbeat_at")
