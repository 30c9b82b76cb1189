"""One configuration story: flags, then GPUNET_*, then the config file; a command
pointed at a missing or empty database says so in one line and creates nothing; an
epoch is never closed under another schedule than the network's."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from gpunet.cli.main import cli


def _env(tmp_path: Path, **more: str) -> dict[str, str | None]:
    # A private XDG_CONFIG_HOME: the developer's own config file must not leak in; nor
    # must the database URL `make` exports for the suite (None unsets it for the run).
    base: dict[str, str | None] = {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "GPUNET_DATABASE_URL": None,
        "GPUNET_CONFIG": None,
    }
    return {**base, **more}


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def test_a_missing_database_is_one_line_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "gpunet.db"
    env = _env(tmp_path, GPUNET_DATABASE_URL=f"sqlite:///{db}")
    result = CliRunner().invoke(cli, ["rewards", "show", "1"], env=env)
    assert result.exit_code == 1
    line = _one_line_error(result.output)
    assert f"no database at {db}" in line and "--config" in line
    assert not db.exists()


def test_an_empty_database_says_it_has_no_schema(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    env = _env(tmp_path, GPUNET_DATABASE_URL=f"sqlite:///{db}")
    result = CliRunner().invoke(cli, ["rewards", "show", "1"], env=env)
    assert result.exit_code == 1
    assert "no schema" in _one_line_error(result.output)
    with sqlite3.connect(db) as conn:  # still no tables in it
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_server_init_writes_the_file_every_command_then_reads(tmp_path: Path) -> None:
    runner = CliRunner()
    env = _env(tmp_path)
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(cli, ["server", "init", "--epoch-seconds", "60"], env=env)
        assert result.exit_code == 0, result.output
        written = tmp_path / "xdg" / "gpunet" / "coordinator.toml"
        assert written.stat().st_mode & 0o777 == 0o600
        assert "rewards_epoch_seconds = 60" in written.read_text()
        assert runner.invoke(cli, ["server", "migrate"], env=env).exit_code == 0
        again = runner.invoke(cli, ["server", "init"], env=env)
        assert again.exit_code == 1 and "--force" in again.output
    # From another directory the same database is found through the file.
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(cli, ["rewards", "show", "1"], env=env)
        assert result.exit_code == 1 and "epoch 1 is not closed" in result.output
        assert not Path("var").exists()


def test_flags_and_environment_outrank_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/from-file.db"\n')
    runner = CliRunner()
    env = _env(tmp_path, GPUNET_DATABASE_URL=f"sqlite:///{tmp_path}/from-env.db")
    result = runner.invoke(cli, ["--config", str(config), "rewards", "show", "1"], env=env)
    assert "from-env.db" in result.output
    result = runner.invoke(cli, ["--config", str(config), "rewards", "show", "1"],
                           env=_env(tmp_path))
    assert "from-file.db" in result.output
    missing = runner.invoke(cli, ["--config", str(tmp_path / "nope.toml"), "rewards", "show",
                                  "1"], env=_env(tmp_path))
    assert "no config file at" in _one_line_error(missing.output)


def test_close_refuses_another_schedule_than_the_closed_epochs(tmp_path: Path) -> None:
    from gpunet.core.pog import load_catalog
    from gpunet.server.db.engine import Database
    from gpunet.server.services import rewards as svc
    from gpunet.server.services.reward_config import load_config
    from gpunet.server.settings import Settings

    url = f"sqlite:///{tmp_path}/net.db"
    runner = CliRunner()
    network = _env(tmp_path, GPUNET_DATABASE_URL=url, GPUNET_REWARDS_EPOCH_SECONDS="60")
    assert runner.invoke(cli, ["server", "migrate"], env=network).exit_code == 0
    # The network closes an epoch with 60-second epochs...
    settings = Settings(database_url=url, rewards_epoch_seconds=60)
    db = Database(url, pool_size=2)
    svc.close_epoch(db, load_config(settings, load_catalog(None)), 5,
                    now=dt.datetime.now(dt.UTC))
    db.dispose()
    # ...and an operator without its settings would close hour-long ones beside them.
    result = runner.invoke(cli, ["rewards", "close", "--epoch", "6"],
                           env=_env(tmp_path, GPUNET_DATABASE_URL=url))
    assert result.exit_code == 1
    assert "epochs of 3600 s" in _one_line_error(result.output)
    assert runner.invoke(cli, ["rewards", "close", "--epoch", "6"], env=network).exit_code == 0
