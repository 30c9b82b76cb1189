"""The owner's CLI against a real coordinator on 127.0.0.1: login -> a 0600 token file ->
codes create -> devices list/show -> retire, with a refreshed token and one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gpunet.cli.main import cli
from tests.integration.conftest import Live, Net, hardware

PASSWORD = "owner cli password"


@pytest.fixture
def live(live_coordinator: Live) -> str:
    return live_coordinator.url


def _run(args: list[str], creds: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env={"GPUNET_CREDENTIALS": str(creds)})
    return result.exit_code, result.output


def test_login_codes_devices_retire(live: str, tmp_path: Path) -> None:
    creds = tmp_path / "conf" / "credentials.json"
    email = "cli-owner@example.com"
    r = httpx.post(f"{live}/api/v1/accounts", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text

    code, out = _run(["devices", "list"], creds)
    assert code == 1 and "not logged in: run `gpunet login`" in out

    code, out = _run(
        ["login", "--coordinator", live, "--email", email, "--password", PASSWORD], creds
    )
    assert code == 0, out
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["coordinator"] == live

    code, out = _run(["codes", "create", "--max-devices", "1"], creds)
    assert code == 0, out
    enrollment_code = out.splitlines()[0]
    assert enrollment_code.startswith("gpn-enr-")
    body, _ = Net.enroll_body(enrollment_code, [hardware()])
    enrolled = httpx.post(f"{live}/api/v1/enroll", json=body)
    assert enrolled.status_code == 201, enrolled.text
    device_id = enrolled.json()["devices"][0]["device_id"]

    code, out = _run(["devices", "list"], creds)
    assert code == 0 and device_id in out and "pending" in out
    code, out = _run(["devices", "show", device_id], creds)
    assert code == 0 and json.loads(out)["device_id"] == device_id

    # An access token that no longer works is renewed with the refresh token, once.
    stale = json.loads(creds.read_text())
    creds.write_text(json.dumps({**stale, "access_token": "expired"}))
    code, out = _run(["devices", "retire", device_id, "--yes"], creds)
    assert code == 0 and f"retired {device_id}" in out, out
    renewed = json.loads(creds.read_text())
    # Renewed: the refresh token rotates (an access token minted in the same second
    # as the last one can be byte-identical to it, so that is not the test).
    assert renewed["access_token"] != "expired"
    assert renewed["refresh_token"] != stale["refresh_token"]
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    code, out = _run(["devices", "show", device_id], creds)
    assert json.loads(out)["status"] == "retired"

    # A session that cannot be renewed says so, in one line.
    creds.write_text(json.dumps({**renewed, "access_token": "x", "refresh_token": "y"}))
    code, out = _run(["devices", "list"], creds)
    assert code == 1 and "expired or was revoked: run `gpunet login` again" in out
    assert len(out.strip().splitlines()) == 1

    # A bad device id is refused before any request.
    code, out = _run(["devices", "show", "nonsense"], creds)
    assert code == 2 and "not a device id" in out


def test_login_names_a_wrong_coordinator_url(live: str, tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    args = ["--email", "a@example.com", "--password", PASSWORD]
    code, out = _run(["login", "--coordinator", "http://127.0.0.1:9", *args], creds)
    assert code == 1 and "cannot reach the coordinator at http://127.0.0.1:9" in out
    code, out = _run(["login", "--coordinator", f"{live}/nowhere", *args], creds)
    assert code == 1 and "not a gpunet coordinator" in out
    code, out = _run(["login", "--coordinator", live, *args], creds)
    assert code == 1 and "login refused (401)" in out
    assert not creds.exists()
