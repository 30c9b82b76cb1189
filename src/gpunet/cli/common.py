"""Helpers shared by command groups: settings, the database, and clean error exits."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from gpunet.core.errors import GpunetError

F = TypeVar("F", bound=Callable[..., Any])


def load_settings(**flags: Any) -> Any:
    """Settings from flags, then the environment, then the config file (cli.config)."""
    from gpunet.cli.config import file_values
    from gpunet.server.settings import Settings

    try:
        values = file_values(set(Settings.model_fields))
        values.update({k: v for k, v in flags.items() if v is not None})
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise click.ClickException(f"bad configuration: {problems}") from exc


def open_database(settings: Any, *, create: bool = False) -> Any:
    """The coordinator's database. Only `create` (server migrate) may make a new one:
    any other command pointed at a missing or empty database says so and creates
    nothing (SQLite would otherwise make an empty file wherever it was run)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from gpunet.server.db import migrate
    from gpunet.server.db.engine import Database

    hint = "point --config or GPUNET_DATABASE_URL at the coordinator's database"
    if not create and settings.is_sqlite:
        path = make_url(settings.database_url).database
        if path and path != ":memory:" and not Path(path).exists():
            raise click.ClickException(f"no database at {Path(path).resolve()}: {hint}")
    db = Database(settings.database_url, pool_size=2)
    if create:
        return db
    try:
        revision = migrate.current_revision(db.engine)
    except SQLAlchemyError as exc:
        db.dispose()
        raise click.ClickException(f"cannot open the database: {exc.__class__.__name__}: "
                                   f"{str(exc.orig if hasattr(exc, 'orig') else exc)[:200]}; "
                                   f"{hint}") from exc
    if revision is None:
        db.dispose()
        raise click.ClickException(
            "the database has no schema (a new, empty database?): "
            f"{hint}, or run `gpunet server migrate` to create one"
        )
    return db


def friendly_errors(fn: F) -> F:
    """Turn domain errors into one clear line and a non-zero exit, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GpunetError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
