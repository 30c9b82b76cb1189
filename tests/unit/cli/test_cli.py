"""The command line: clear messages and exit codes, no tracebacks."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gpunet.cli.main import cli


def test_calibrate_cpu_dev_reports_a_budget() -> None:
    result = CliRunner().invoke(cli, ["calibrate", "cpu-dev", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["profile"] == "cpu-dev" and data["self_test_passed"] is True
    assert data["suggested_budget_s"] > data["commit_s"] > 0


def test_calibrate_unknown_profile_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["calibrate", "gtx-480"])
    assert result.exit_code == 2
    assert "unknown profile" in result.output and "h100-sxm" in result.output


def test_production_without_a_secret_refuses_to_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"GPUNET_ENVIRONMENT": "production", "GPUNET_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = CliRunner().invoke(cli, ["server", "migrate"], env=env)
    assert result.exit_code == 1
    assert "GPUNET_SECRET_KEY" in result.output


def test_revert_needs_a_known_actor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"GPUNET_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    runner = CliRunner()
    assert runner.invoke(cli, ["server", "migrate"], env=env).exit_code == 0
    result = runner.invoke(cli, ["admin", "revert", "--actor", "nobody", "--since", "1h"], env=env)
    assert result.exit_code == 2
    assert "an actor is" in result.output
