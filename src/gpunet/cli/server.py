"""`gpunet server`: migrate and run the coordinator."""

from __future__ import annotations

import click

from gpunet.cli.common import load_settings, open_database


@click.group()
def server() -> None:
    """Run the coordinator."""


@server.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run repeatedly)."""
    from gpunet.server.db import migrate as m

    settings = load_settings()
    db = open_database(settings)
    before = m.current_revision(db.engine)
    m.upgrade(db.engine)
    after = m.current_revision(db.engine)
    click.echo(f"database at revision {after}" + ("" if before == after else f" (was {before})"))


@server.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option(
    "--control-port", envvar="GPUNET_CONTROL_PORT", default=8001, show_default=True, type=int,
    help="agents' control channel (TCP); 0 switches it off",
)
def run(host: str, port: int, workers: int, control_port: int) -> None:
    """Serve the coordinator API and the agents' control channel (run `gpunet server
    migrate` first)."""
    import os

    import uvicorn

    from gpunet.server.db import migrate as m

    settings = load_settings()
    db = open_database(settings)
    if m.current_revision(db.engine) is None:
        raise click.ClickException("the database has no schema: run `gpunet server migrate`")
    db.dispose()
    click.echo(
        f"gpunet coordinator on http://{host}:{port} ({settings.environment.value}, "
        f"{'SQLite' if settings.is_sqlite else 'PostgreSQL'})"
    )
    # The control server starts in the app's lifespan, on uvicorn's event loop.
    os.environ["GPUNET_CONTROL_PORT"] = str(control_port)
    os.environ["GPUNET_CONTROL_ENABLED"] = "1" if control_port else "0"
    os.environ.setdefault("GPUNET_CONTROL_HOST", host)
    if control_port:
        click.echo(f"control channel for agents on tcp://{host}:{control_port}")
    uvicorn.run(
        "gpunet.server.control.asgi:app",
        host=host,
        port=port,
        workers=workers,
        factory=False,
        log_level="info",
        proxy_headers=False,
    )
