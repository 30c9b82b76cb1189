"""`gpunet server`: migrate and run the coordinator."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import click

from gpunet.cli.common import load_settings, open_database

if TYPE_CHECKING:
    from gpunet.server.control.settings import ControlSettings
    from gpunet.server.settings import Settings


@click.group()
def server() -> None:
    """Run the coordinator."""


@server.command()
@click.option("--database-url", help="default: SQLite at ./var/gpunet.db (made absolute)")
@click.option("--public-url", help="the URL agents and users reach this coordinator at")
@click.option("--epoch-seconds", type=int, help="reward epoch length (default: the schedule's)")
@click.option("--force", is_flag=True, help="replace an existing config file")
def init(
    database_url: str | None, public_url: str | None, epoch_seconds: int | None, force: bool
) -> None:
    """Write the config file every `gpunet` command reads (see `gpunet --config`), with
    a fresh secret key, so operator commands find this coordinator's database and epoch
    settings from any directory."""
    import secrets
    from pathlib import Path

    from gpunet.cli.config import chosen_config_path, write_config

    path, _ = chosen_config_path()
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists: edit it, or pass --force to replace it")
    values: dict[str, object] = {
        "database_url": database_url or f"sqlite:///{Path('var/gpunet.db').resolve()}",
        "secret_key": secrets.token_urlsafe(48),
    }
    if public_url:
        values["public_url"] = public_url
    if epoch_seconds:
        values["rewards_epoch_seconds"] = epoch_seconds
    write_config(path, values)
    load_settings()  # refuse now, not at the next command, what Settings would refuse
    click.echo(f"wrote {path}; next: `gpunet server migrate`, then `gpunet server run`")


@server.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run repeatedly)."""
    from gpunet.server.db import migrate as m

    settings = load_settings()
    db = open_database(settings, create=True)
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
    import uvicorn

    settings = load_settings()
    _require_schema(settings)
    control = _control_settings(host, control_port)
    click.echo(
        f"gpunet coordinator on http://{host}:{port} ({settings.environment.value}, "
        f"{'SQLite' if settings.is_sqlite else 'PostgreSQL'})"
    )
    if control.enabled:
        click.echo(f"control channel for agents on tcp://{control.host}:{control.port}")
    uvicorn.run(
        _app_factory(settings, control, workers),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=False,
        # No `Server: uvicorn` banner: it tells a scanner what to try and no client
        # needs it (the app sets its own security headers, server.middleware).
        server_header=False,
    )


def _require_schema(settings: Settings) -> None:
    from gpunet.server.db import migrate as m

    db = open_database(settings)
    try:
        if m.current_revision(db.engine) is None:
            raise click.ClickException("the database has no schema: run `gpunet server migrate`")
    finally:
        db.dispose()


def _control_settings(host: str, port: int) -> ControlSettings:
    """GPUNET_CONTROL_* with this command's options on top; the channel listens on the
    API's host unless GPUNET_CONTROL_HOST names another."""
    from pydantic import ValidationError

    from gpunet.server.control.settings import ControlSettings

    try:
        from_env = ControlSettings()
        if "host" in from_env.model_fields_set:
            host = from_env.host
        return ControlSettings(host=host, port=port, enabled=bool(port))
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise click.ClickException(f"bad control-channel configuration: {problems}") from exc


def _app_factory(settings: Settings, control: ControlSettings, workers: int) -> Any:
    """What uvicorn calls to build the app: `create_app` with these very settings.

    uvicorn starts several workers each from an import string, so a worker can only
    read its settings from its environment; this command's control options are handed
    to them there, the one place they are written into the environment.
    """
    from gpunet.server.app import create_app

    if workers == 1:
        return functools.partial(create_app, settings, control=control)
    os.environ.update(
        GPUNET_CONTROL_HOST=control.host,
        GPUNET_CONTROL_PORT=str(control.port),
        GPUNET_CONTROL_ENABLED="1" if control.enabled else "0",
    )
    return "gpunet.server.asgi:coordinator"
