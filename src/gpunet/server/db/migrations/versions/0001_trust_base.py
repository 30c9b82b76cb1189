"""trust base: accounts, devices, audit, limits, alerts

Revision ID: 0001
Revises:
Create Date: 2026-11-21 22:08:52.861774
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gpunet.server.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "acknowledged_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_created_at"), ["created_at"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_kind", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_actor_at", ["actor_kind", "actor_id", "at"], unique=False)

    op.create_table(
        "blocks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("lifted_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blocks_lifted_at"), ["lifted_at"], unique=False)

    op.create_table(
        "owners",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("display_name", sa.String(length=64), nullable=True),
        sa.Column("wallet_address", sa.String(length=128), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column(
            "window_start", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_refresh_hash", sa.String(length=64), nullable=True),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("refresh_hash"),
    )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_sessions_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_auth_sessions_previous_refresh_hash"),
            ["previous_refresh_hash"],
            unique=False,
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("vram_mib", sa.Integer(), nullable=False),
        sa.Column("gpu_uuid", sa.String(length=64), nullable=False),
        sa.Column("pci_bus_id", sa.String(length=32), nullable=False),
        sa.Column("host_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("driver_version", sa.String(length=32), nullable=False),
        sa.Column("agent_version", sa.String(length=32), nullable=True),
        sa.Column("cuda_version", sa.String(length=32), nullable=True),
        sa.Column("os_name", sa.String(length=64), nullable=True),
        sa.Column("label", sa.String(length=48), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("enrolled_from", sa.String(length=64), nullable=True),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "status_changed_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("last_seen_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gpu_uuid"),
        sa.UniqueConstraint("public_id"),
        sa.UniqueConstraint("public_key"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_host", ["host_fingerprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_region"), ["region"], unique=False)
        batch_op.create_index("ix_devices_status_model", ["status", "model"], unique=False)

    op.create_table(
        "enrollment_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("enrollment_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollment_codes_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "external_identities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "subject"),
    )
    with op.batch_alter_table("external_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_external_identities_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "device_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_events_device_id"), ["device_id"], unique=False)

    op.create_table(
        "device_nonces",
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("expires_at", gpunet.server.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "nonce"),
    )
    with op.batch_alter_table("device_nonces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_nonces_expires_at"), ["expires_at"], unique=False
        )

    # The audit chain starts from a fixed genesis tip; appenders lock this one row.
    audit_head = sa.table("audit_head", sa.column("id"), sa.column("last_hash"), sa.column("count"))
    op.bulk_insert(audit_head, [{"id": 1, "last_hash": "0" * 64, "count": 0}])


def downgrade() -> None:
    with op.batch_alter_table("device_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_nonces_expires_at"))

    op.drop_table("device_nonces")
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_events_device_id"))

    op.drop_table("device_events")
    with op.batch_alter_table("external_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_external_identities_owner_id"))

    op.drop_table("external_identities")
    with op.batch_alter_table("enrollment_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_codes_owner_id"))

    op.drop_table("enrollment_codes")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_status_model")
        batch_op.drop_index(batch_op.f("ix_devices_region"))
        batch_op.drop_index(batch_op.f("ix_devices_owner_id"))
        batch_op.drop_index("ix_devices_host")

    op.drop_table("devices")
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_sessions_previous_refresh_hash"))
        batch_op.drop_index(batch_op.f("ix_auth_sessions_owner_id"))

    op.drop_table("auth_sessions")
    op.drop_table("rate_counters")
    op.drop_table("owners")
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blocks_lifted_at"))

    op.drop_table("blocks")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_actor_at")

    op.drop_table("audit_log")
    op.drop_table("audit_head")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_created_at"))

    op.drop_table("alerts")
