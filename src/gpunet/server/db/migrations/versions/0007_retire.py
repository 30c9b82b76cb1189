"""retired devices: one GPU may have one device in service and any number retired

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

IN_SERVICE = "status <> 'retired'"
# SQLite reflects the first migration's unique constraints without names; this names
# them so that batch mode can drop the one on gpu_uuid.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _unique_on(column: str) -> str:
    """The name of the single-column unique constraint on devices.`column`."""
    for uc in sa.inspect(op.get_bind()).get_unique_constraints("devices"):
        if uc["column_names"] == [column] and uc["name"]:
            return str(uc["name"])
    return f"uq_devices_{column}"


def upgrade() -> None:
    gpu, ueid = _unique_on("gpu_uuid"), _unique_on("attestation_ueid")
    with op.batch_alter_table("devices", naming_convention=_NAMES) as batch:
        batch.drop_constraint(gpu, type_="unique")
        batch.drop_constraint(ueid, type_="unique")
    for name, column in (
        ("uq_devices_gpu_uuid_in_service", "gpu_uuid"),
        ("uq_devices_attestation_ueid_in_service", "attestation_ueid"),
    ):
        op.create_index(
            name,
            "devices",
            [column],
            unique=True,
            postgresql_where=sa.text(IN_SERVICE),
            sqlite_where=sa.text(IN_SERVICE),
        )


def downgrade() -> None:
    # Fails while a retired device shares its GPU with another device: going back would
    # lose one of them, and that is the operator's call, not a migration's.
    op.drop_index("uq_devices_attestation_ueid_in_service", table_name="devices")
    op.drop_index("uq_devices_gpu_uuid_in_service", table_name="devices")
    with op.batch_alter_table("devices") as batch:
        batch.create_unique_constraint("uq_devices_attestation_ueid", ["attestation_ueid"])
        batch.create_unique_constraint("devices_gpu_uuid_key", ["gpu_uuid"])
