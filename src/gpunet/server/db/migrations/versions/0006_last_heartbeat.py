"""devices: the last heartbeat the coordinator received

Revision ID: 0006
Revises: 0005 (or 0004 where 0005 is absent)
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op

from gpunet.server.db.types import UTCDateTime

revision = "0006"
# 0005 is written beside this one; chain onto it where present, so either order of
# arrival keeps one line of revisions.
down_revision = max(p.name[:4] for p in Path(__file__).parent.glob("000[4-5]_*.py"))
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
