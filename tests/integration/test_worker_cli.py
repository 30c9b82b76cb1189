"""`gpunet worker` as a supplier meets it (issue 12): each message names its fix, and the
worker commands find their settings as every other command does (flags, GPUNET_*, then
the config file's [worker] table, then what enroll saved).

The commands run in-process (CliRunner) against a real coordinator on 127.0.0.1; an
interrupted rotation is the `rotation.on_step` hook ending the command at a step (the
process-level SIGKILL is tests/e2e/test_rotation_kill_processes.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from gpunet.agent import discovery, rotation
from gpunet.agent.config import AgentConfig
from gpunet.agent.discovery.base import DiscoveryResult
from gpunet.cli.main import cli
from gpunet.core import signing
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Device
from tests.integration.conftest import Live

PASSWORD = "worker cli password"


def _env(tmp_path: Path, **more: str) -> dict[str, str | None]:
    # Nothing of the developer's own set-up leaks in (None unsets a variable for the run).
    base: dict[str, str | None] = {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "GPUNET_CONFIG": None,
        "GPUNET_HOME": None,
        "GPUNET_COORDINATOR": None,
        "GPUNET_CONTROL": None,
        "GPUNET_DATABASE_URL": None,
    }
    return {**base, **more}


def _gpunet(tmp_path: Path, *args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=_env(tmp_path, **env))


def _code(url: str, email: str) -> tuple[str, dict[str, str]]:
    """A fresh enrollment code, asked for with no body at all (the defaults, as `{}`)."""
    httpx.post(f"{url}/api/v1/accounts", json={"email": email, "password": PASSWORD})
    t = httpx.post(f"{url}/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {t.json()['access_token']}"}
    r = httpx.post(f"{url}/api/v1/enrollment-codes", headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["code"]), headers


@pytest.fixture
def restore_hook() -> Iterator[None]:
    yield
    rotation.on_step = None


def _interrupt_rotation_at(step: str) -> None:
    def stop(at: str) -> None:
        if at == step:
            raise SystemExit(137)  # nothing after this step runs, as after a SIGKILL

    rotation.on_step = stop


def _status(tmp_path: Path, home: Path) -> dict[str, Any]:
    result = _gpunet(tmp_path, "worker", "status", "--home", str(home), "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    return dict(row)


def test_worker_commands_read_the_config_files_worker_table(
    live_coordinator: Live, tmp_path: Path
) -> None:
    home, other = tmp_path / "agent", tmp_path / "other"
    code, _ = _code(live_coordinator.url, "config@example.com")
    conf = tmp_path / "gpunet.toml"
    conf.write_text(
        f'database_url = "sqlite:///{tmp_path}/absent.db"\n'
        f'[worker]\nhome = "{home}"\ncoordinator = "{live_coordinator.url}"\n'
        'control = "127.0.0.1:notaport"\n'
    )
    enrolled = _gpunet(tmp_path, "--config", str(conf), "worker", "enroll", "--code", code,
                       "--cpu-dev", "1")
    assert enrolled.exit_code == 0, enrolled.output
    saved = AgentConfig.load(home)  # the home and the coordinator came from the file
    assert saved is not None and saved.coordinator_url == live_coordinator.url
    status = _gpunet(tmp_path, "--config", str(conf), "worker", "status")
    assert status.exit_code == 0 and "pending" in status.output, status.output
    # `worker run` dials the file's control address before the one saved at enrollment.
    run = _gpunet(tmp_path, "--config", str(conf), "worker", "run")
    assert run.exit_code == 2 and "'127.0.0.1:notaport' is not HOST:PORT" in run.output
    # A flag, then a GPUNET_* variable, outrank the file.
    for args, env in ((["--home", str(other)], {}), ([], {"GPUNET_HOME": str(other)})):
        elsewhere = _gpunet(tmp_path, "--config", str(conf), "worker", "status", *args, **env)
        assert elsewhere.exit_code == 1 and "no enrolled devices here" in elsewhere.output
    # The same file serves the operator commands: they read past its [worker] table.
    show = _gpunet(tmp_path, "--config", str(conf), "rewards", "show", "1")
    assert show.exit_code == 1 and "no database at" in show.output, show.output
    # A misspelt key is named, with the ones that exist.
    conf.write_text(f'[worker]\nhomedir = "{home}"\n')
    bad = _gpunet(tmp_path, "--config", str(conf), "worker", "status")
    assert bad.exit_code == 1
    assert "unknown [worker] settings homedir (known: home, coordinator, control)" in bad.output
    missing = _gpunet(tmp_path, "--config", str(tmp_path / "nope.toml"), "worker", "status")
    assert missing.exit_code == 1 and "no config file at" in missing.output


def test_enroll_on_a_host_without_a_gpu_names_cpu_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_gpu(**kw: Any) -> DiscoveryResult:
        assert kw["allow_cpu_dev"] is False
        return DiscoveryResult.nothing("auto", "no GPU found (nvidia: no driver)")

    monkeypatch.setattr(discovery, "auto_discover", no_gpu)
    result = _gpunet(tmp_path, "worker", "enroll", "--code", "gpn-enr-x",
                     "--home", str(tmp_path / "agent"))
    assert result.exit_code == 1
    assert "no GPU found" in result.output and "add `--cpu-dev 1`" in result.output
    assert not (tmp_path / "agent").exists()  # nothing made, nothing sent


def test_status_and_rotate_key_say_what_to_do(
    live_coordinator: Live, database: Database, tmp_path: Path, restore_hook: None
) -> None:
    home = tmp_path / "agent"
    code, _ = _code(live_coordinator.url, "hints@example.com")
    enrolled = _gpunet(tmp_path, "worker", "enroll", "--code", code, "--cpu-dev", "1",
                       "--coordinator", live_coordinator.url, "--home", str(home))
    assert enrolled.exit_code == 0, enrolled.output
    device_id = _status(tmp_path, home)["device_id"]
    assert _status(tmp_path, home)["last_heartbeat_at"] is None  # never heard: "never"

    # A clock five minutes off: the offset, its direction and NTP, and no re-enroll advice.
    live_coordinator.clock.offset = 300
    row = _status(tmp_path, home)
    assert row["status"].startswith("unknown (coordinator answered 401")
    assert re.search(r"this machine's clock is (299|300|301) s behind the coordinator's",
                     row["status"]) and "NTP" in row["status"]
    assert "note" not in row
    skewed = _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home))
    assert skewed.exit_code == 1 and "NTP" in skewed.output
    assert "the new key is kept pending" in skewed.output
    live_coordinator.clock.offset = 0

    # Interrupted before the coordinator saw the new key: the old key works, rerun.
    _interrupt_rotation_at("request_sent")
    assert _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home)).exit_code == 137
    rotation.on_step = None
    row = _status(tmp_path, home)
    assert row["status"] == "pending"
    assert "before the coordinator took the new key" in row["note"]
    assert "Run `gpunet worker rotate-key` to finish it" in row["note"]

    # Interrupted after the coordinator took it: status itself finishes the swap.
    _interrupt_rotation_at("answered")
    assert _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home)).exit_code == 137
    rotation.on_step = None
    row = _status(tmp_path, home)
    assert row["status"] == "pending" and "it is now finished here" in row["note"]
    assert "note" not in _status(tmp_path, home)  # and it stays finished

    # Neither key accepted (replaced from elsewhere, say): the 401 says what to check.
    _interrupt_rotation_at("pending_written")
    _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home))
    rotation.on_step = None
    stranger = signing.public_key_text(Ed25519PrivateKey.generate().public_key())
    with database.transaction() as s:
        s.execute(update(Device).where(Device.public_id == device_id)
                  .values(public_key=stranger))
    row = _status(tmp_path, home)
    assert row["status"].startswith("unknown (coordinator answered 401")
    assert "neither its current key nor its pending rotation key" in row["note"]
    assert "gpunet worker enroll --code" in row["note"]
    refused = _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home))
    assert refused.exit_code == 1 and "neither its current key nor" in refused.output


def test_rotate_key_of_a_retired_or_unreachable_device_says_why(
    live_coordinator: Live, tmp_path: Path
) -> None:
    home = tmp_path / "agent"
    code, owner = _code(live_coordinator.url, "retired@example.com")
    args = ["--cpu-dev", "1", "--coordinator", live_coordinator.url, "--home", str(home)]
    assert _gpunet(tmp_path, "worker", "enroll", "--code", code, *args).exit_code == 0
    device_id = _status(tmp_path, home)["device_id"]
    r = httpx.post(f"{live_coordinator.url}/api/v1/devices/{device_id}/retire", headers=owner)
    assert r.status_code == 200, r.text
    row = _status(tmp_path, home)
    assert "403: retired" in row["status"] and "gpunet worker enroll --code" in row["status"]
    retired = _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home))
    assert retired.exit_code == 1
    assert "rotation refused: coordinator answered 403: retired" in retired.output
    assert "kept pending" not in retired.output  # a rerun would not help

    saved = AgentConfig.load(home)
    assert saved is not None
    AgentConfig("http://127.0.0.1:9", saved.cpu_dev, saved.control).save(home)
    gone = _gpunet(tmp_path, "worker", "rotate-key", "--home", str(home))
    assert gone.exit_code == 1 and "cannot reach the coordinator" in gone.output
    assert "Rerun `gpunet worker rotate-key`" in gone.output
