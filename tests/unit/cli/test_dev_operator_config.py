"""`gpunet dev up` writes the settings its network runs with as a config file, so that
operator commands run from anywhere see that network (its database, its short epochs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gpunet.cli.dev import _operator_config, dev_environment


def test_the_operator_config_is_the_networks_settings_with_an_absolute_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # What `make run` exports: a database named relative to the checkout.
    monkeypatch.setenv("GPUNET_DATABASE_URL", "sqlite:///var/gpunet.db")
    monkeypatch.setenv("GPUNET_SOMETHING_ELSE", "not a setting")
    env = dev_environment(tmp_path / "var", 8100)
    path = _operator_config(tmp_path / "var", env)
    values = tomllib.loads(path.read_text())
    assert values["database_url"] == f"sqlite:///{tmp_path}/var/gpunet.db"
    assert values["rewards_epoch_seconds"] == env["GPUNET_REWARDS_EPOCH_SECONDS"]
    assert values["public_url"] == "http://127.0.0.1:8100"
    assert "something_else" not in values
    assert path.stat().st_mode & 0o077 == 0
