"""Replays the April 2024 incident (DESIGN.md T2-T5) against the coordinator.

The attacker harvests the explorer for owner identifiers, tries the worker API with
forged, replayed and borrowed credentials, and finally uses a stolen owner token to
rewrite that owner's devices in a burst. Each step must fail, or be noticed and undone.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpunet.cli.main import cli
from gpunet.core.clock import FrozenClock, unix
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Alert, Device
from tests.integration.conftest import Net, make_settings


class Webhook:
    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hook.received.put(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def inet(
    database: Database, database_url: str, clock: FrozenClock, webhook: Webhook
) -> Iterator[Net]:
    settings = make_settings(
        database_url,
        alert_webhook_url=webhook.url,
        surge_principal_writes=20,
        principal_writes_per_window=500,
    )
    with TestClient(create_app(settings, database=database, clock=clock)) as client:
        yield Net(client, clock, database, settings)


def run_cli(database_url: str, *args: str) -> Any:
    result = CliRunner().invoke(
        cli, list(args), env={"GPUNET_DATABASE_URL": database_url}, catch_exceptions=False
    )
    return result


def test_incident_replay(inet: Net, database_url: str, webhook: Webhook) -> None:
    net = inet
    honest = net.register("honest.supplier@example.com")
    honest_devices = net.enroll(honest, count=3)
    for i, d in enumerate(honest_devices):
        r = net.client.patch(
            f"/api/v1/devices/{d.device_id}",
            headers=honest.headers,
            json={"label": f"rack-{i}", "region": "eu-west"},
        )
        assert r.status_code == 200
    attacker = net.register("mallory@example.com")
    [attacker_device] = net.enroll(attacker)

    # T2: harvesting the explorer yields no owner identifiers.
    listing = net.client.get("/api/v1/explorer/devices", params={"limit": 200})
    bodies = [listing.text] + [
        net.client.get(f"/api/v1/explorer/devices/{d['device_id']}").text
        for d in listing.json()["items"]
    ]
    assert len(listing.json()["items"]) == 4
    for body in bodies:
        for secret in (
            "honest.supplier",
            "mallory",
            "owner",
            "rack-",
            honest.token[:20],
            honest_devices[0].claim.gpu_uuid,
            honest_devices[0].claim.host_fingerprint,
        ):
            assert secret not in body

    victim = honest_devices[0]
    # T3: no universal token; the attacker's own credentials touch nothing of the victim.
    r = net.client.patch(
        f"/api/v1/devices/{victim.device_id}", headers=attacker.headers, json={"label": "pwned"}
    )
    assert r.status_code == 404
    forged = Ed25519PrivateKey.generate()
    r = net.signed(victim, "PATCH", "/api/v1/worker/device", {"os_name": "pwned"}, key=forged)
    assert r.status_code == 401
    r = net.signed(
        attacker_device,
        "PATCH",
        "/api/v1/worker/device",
        {"os_name": "pwned"},
        as_id=victim.device_id,
    )
    assert r.status_code == 401
    # A captured genuine request cannot be replayed.
    raw = json.dumps({"agent_version": "1.0.0"}).encode()
    auth = victim.signer.authorization("PATCH", "/api/v1/worker/device", raw, unix(net.clock.now()))
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    assert (
        net.client.patch("/api/v1/worker/device", content=raw, headers=headers).status_code == 200
    )
    assert (
        net.client.patch("/api/v1/worker/device", content=raw, headers=headers).status_code == 401
    )

    # T5: with a stolen owner token the attacker rewrites every device in a burst.
    net.clock.advance(1)
    burst_start = net.clock.now()
    for n in range(30):
        for d in honest_devices:
            r = net.client.patch(
                f"/api/v1/devices/{d.device_id}",
                headers=honest.headers,
                json={"label": f"evil-{n}", "region": "zz-evil"},
            )
            assert r.status_code in (200, 429)
    # The alert was raised by the coordinator itself, at once (the clock has not moved).
    with net.database.read() as s:
        alerts = s.execute(select(Alert)).scalars().all()
    assert [a.kind for a in alerts] == ["write_surge"]
    assert "owner:" in alerts[0].message
    delivered = webhook.received.get(timeout=10)
    assert delivered["kind"] == "write_surge"
    listed = run_cli(database_url, "admin", "alerts")
    assert "write_surge" in listed.output

    # Revert restores the metadata from before the burst; the audit chain verifies.
    since = burst_start.isoformat()
    result = run_cli(database_url, "admin", "revert", "--actor", honest.email, "--since", since)
    assert result.exit_code == 0, result.output
    with net.database.read() as s:
        rows = {d.public_id: d for d in s.execute(select(Device)).scalars()}
    for i, d in enumerate(honest_devices):
        assert rows[d.device_id].label == f"rack-{i}"
        assert rows[d.device_id].region == "eu-west"
    assert rows[victim.device_id].agent_version == "1.0.0"  # the device's own write stays
    verify = run_cli(database_url, "admin", "audit", "verify")
    assert verify.exit_code == 0, verify.output
    assert "intact" in verify.output
