"""Where `gpunet` commands find their settings, the same way for every command:

1. command-line flags (passed to Settings directly),
2. GPUNET_* environment variables,
3. a config file: `gpunet --config PATH`, else $GPUNET_CONFIG, else the default file
   that `gpunet server init` writes (`$XDG_CONFIG_HOME/gpunet/coordinator.toml`),
4. the Settings class's defaults.

The file is TOML with the settings' own names (`database_url = "..."`), so README's
table names every key it may hold. Worker commands read the same file's `[worker]` table
(`WORKER_KEYS`), after their flags and GPUNET_* variables; after that, what `gpunet
worker enroll` saved in the agent's home (`agent.json`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

CONFIG_NAME = "coordinator.toml"
# The `[worker]` table: the agent's home, the coordinator it enrolls with, the control
# channel it dials; each with its flag and variable (README: suppliers).
WORKER_KEYS = {"home": "GPUNET_HOME", "coordinator": "GPUNET_COORDINATOR",
               "control": "GPUNET_CONTROL"}


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpunet" / CONFIG_NAME


def chosen_config_path() -> tuple[Path, bool]:
    """The config file in force and whether it was named explicitly (--config or
    $GPUNET_CONFIG): a named file must exist, the default one may not."""
    ctx = click.get_current_context(silent=True)
    named = ctx.find_root().params.get("config") if ctx is not None else None
    named = named or os.environ.get("GPUNET_CONFIG")
    if named:
        return Path(named), True
    return default_config_path(), False


def _read_config() -> tuple[Path, dict[str, Any]]:
    """The config file in force and its contents ({} when the default one is absent)."""
    path, named = chosen_config_path()
    if not path.exists():
        if named:
            raise click.ClickException(f"no config file at {path}")
        return path, {}
    try:
        return path, tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read the config file {path}: {exc}") from exc


def file_values(fields: set[str]) -> dict[str, Any]:
    """Settings from the config file that the environment does not already set."""
    path, data = _read_config()
    data.pop("worker", None)  # the worker commands' table (worker_setting)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise click.ClickException(f"{path}: unknown settings {', '.join(unknown)}")
    # The environment outranks the file: drop what a GPUNET_* variable sets.
    return {k: v for k, v in data.items() if f"GPUNET_{k.upper()}" not in os.environ}


def worker_setting(key: str, flag: str | None) -> str | None:
    """A worker command's setting: its flag, else its GPUNET_* variable, else the
    config file's `[worker]` table; None if none of them sets it."""
    if flag:
        return flag
    variable = WORKER_KEYS[key]
    if os.environ.get(variable):
        return os.environ[variable]
    path, data = _read_config()
    table = data.get("worker", {})
    if not isinstance(table, dict):
        raise click.ClickException(f"{path}: `worker` must be a table ([worker])")
    unknown = sorted(set(table) - set(WORKER_KEYS))
    if unknown:
        raise click.ClickException(
            f"{path}: unknown [worker] settings {', '.join(unknown)} "
            f"(known: {', '.join(WORKER_KEYS)})"
        )
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise click.ClickException(f"{path}: [worker] {key} must be a string")
    return value or None


def write_config(path: Path, values: Mapping[str, Any]) -> None:
    """Write `values` as TOML, private to this user (it holds the secret key)."""
    lines = ["# gpunet coordinator settings (README: settings); GPUNET_* variables override."]
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{key} = {text}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
