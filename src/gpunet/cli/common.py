"""Helpers shared by command groups: settings, the database, and clean error exits."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from gpunet.core.errors import GpunetError

F = TypeVar("F", bound=Callable[..., Any])


def load_settings() -> Any:
    from gpunet.server.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise click.ClickException(f"bad configuration: {problems}") from exc


def open_database(settings: Any) -> Any:
    from gpunet.server.db.engine import Database

    return Database(settings.database_url, pool_size=2)


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
