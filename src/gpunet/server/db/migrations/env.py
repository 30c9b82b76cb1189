"""Alembic environment: runs against the connection gpunet hands it."""

from __future__ import annotations

from alembic import context

from gpunet.server.db.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - gpunet always passes its own connection
    raise RuntimeError("run migrations through `gpunet server migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
