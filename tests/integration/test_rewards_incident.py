"""T6 replayed through the coordinator: a fix cuts honest GPUs off right at a reward
snapshot. The operator declares an incident window; devices verified and online just
before it are credited as if online, and devices never verified before it get nothing."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from gpunet.cli.main import cli
from gpunet.core.rewards import emission_for_epoch
from tests.integration.conftest import Net
from tests.integration.rewards_world import (
    at,
    clock_of,
    close,
    flush,
    headers,
    heartbeat,
    move_to,
    payouts,
    set_wallet,
    state,
    verdict,
)


def _admin(database_url: str, *args: str) -> Any:
    env = {"GPUNET_DATABASE_URL": database_url}
    result = CliRunner().invoke(cli, ["admin", "incident", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def test_incident_at_the_snapshot_costs_honest_devices_nothing(
    net: Net, database_url: str
) -> None:
    honest, steady, late, fake = (net.register() for _ in range(4))
    set_wallet(net, honest, "wallet-honest-01")
    set_wallet(net, steady, "wallet-steady-01")
    set_wallet(net, late, "wallet-late-0001")
    set_wallet(net, fake, "wallet-fake-0001")
    h1, h2 = net.enroll(honest, 2)
    (s1,) = net.enroll(steady, 1)  # another region: never cut off
    (l1,) = net.enroll(late, 1)  # passes its first proof only during the incident
    (f1,) = net.enroll(fake, 1)  # never passes a proof
    for d in (h1, h2, s1):
        verdict(net, d, True, net.clock.now())
    epoch = clock_of(net).epoch_index(net.clock.now().timestamp()) + 1
    start, end = at(net, epoch, 30), at(net, epoch + 1, 0)  # the fix lands at slot 30
    _admin(database_url, "declare", "--from", start.isoformat(), "--to", end.isoformat(),
           "--reason", "firewall change cut off workers at the snapshot")
    for slot in range(60):
        move_to(net, at(net, epoch, slot, 20))
        if slot == 35:
            verdict(net, l1, True, net.clock.now())
        online = [s1, f1, l1] if slot >= 30 else [h1, h2, s1, f1, l1]
        if slot >= 30:
            online.remove(l1)  # the late device is cut off too, but was never verified
        for d in online:
            heartbeat(net, d)
    flush(net)
    move_to(net, at(net, epoch + 1, 0, int(state(net).rewards.settle_s)))
    row = close(net, epoch).row
    assert row.incidents == 1
    paid = payouts(net, epoch)
    emission = emission_for_epoch(state(net).rewards.schedule, epoch)
    assert sum(paid.values()) == emission
    # honest: 2 devices x (30 online + 30 credited); steady: 60 online. Without the
    # window honest would have had half of steady's score.
    assert set(paid) == {"wallet-honest-01", "wallet-steady-01"}
    assert paid["wallet-honest-01"] in (emission * 2 // 3, emission * 2 // 3 + 1)
    assert row.counted_slots == 180 and row.devices == 3
    # The owner sees the credit in the device's uptime.
    r = net.client.get(f"/api/v1/devices/{h1.device_id}/uptime?epoch={epoch}",
                       headers=headers(net, honest))
    assert r.json()["online_slots"] == 30 and r.json()["counted_slots"] == 60
    r = net.client.get(f"/api/v1/devices/{l1.device_id}/uptime?epoch={epoch}",
                       headers=headers(net, late))
    # Its heartbeats while pending were not even recorded: they could never count.
    assert r.json()["online_slots"] == 0 and r.json()["counted_slots"] == 0
    # The window and its effect are public; who declared it is not.
    public = net.client.get("/api/v1/explorer/incidents").json()["items"]
    assert [w["reason"] for w in public] == ["firewall change cut off workers at the snapshot"]
    assert "declared_by" not in public[0]
    assert net.client.get(f"/api/v1/explorer/epochs/{epoch}").json()["incidents"] == 1
    listed = _admin(database_url, "list")
    assert "firewall change" in listed.output


def test_declaring_is_validated_and_audited(net: Net, database_url: str) -> None:
    env = {"GPUNET_DATABASE_URL": database_url}
    runner = CliRunner()
    too_long = runner.invoke(cli, ["admin", "incident", "declare", "--from",
                                   "2026-11-01T00:00:00Z", "--to", "2026-11-09T00:00:00Z",
                                   "--reason", "x"], env=env)
    assert too_long.exit_code == 2 and "at most 7 days" in too_long.output
    backwards = runner.invoke(cli, ["admin", "incident", "declare", "--from",
                                    "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z",
                                    "--reason", "x"], env=env)
    assert backwards.exit_code == 2
    _admin(database_url, "declare", "--from", "2026-11-01T00:00:00Z", "--to",
           "2026-11-01T02:00:00Z", "--reason", "forced client restart")
    audit = runner.invoke(cli, ["admin", "audit", "verify"], env=env)
    assert audit.exit_code == 0, audit.output
    from sqlalchemy import select

    from gpunet.server.db.tables import AuditRecord

    with net.database.read() as s:
        actions = s.execute(select(AuditRecord.action)).scalars().all()
    assert "incident.declare" in actions
