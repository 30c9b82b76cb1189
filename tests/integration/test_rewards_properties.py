"""Properties of the coordinator's close over arbitrary uptime (hypothesis), and the
offline check a supplier runs on a published proof (`gpunet rewards verify`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from gpunet.cli.main import cli
from gpunet.core.rewards import emission_for_epoch
from gpunet.server.db.tables import Device, Owner
from tests.integration.conftest import Net
from tests.integration.rewards_world import (
    at,
    clock_of,
    close,
    device_id,
    flush,
    move_to,
    payouts,
    record,
    state,
    verdict,
)

PROFILES = ["h100-sxm", "rtx-4090", "rtx-3090", "cpu-dev", "a100-40gb"]


@pytest.fixture
def fleet(net: Net) -> dict[str, Any]:
    owners = [net.register() for _ in range(3)]
    devices = [d for o in owners for d in net.enroll(o, 2)]
    verified = devices[:4]
    for d in verified:
        verdict(net, d, True, net.clock.now())
    return {"owners": owners, "devices": devices, "verified": verified,
            "ids": [device_id(net, d) for d in devices], "next": [0]}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bits=st.lists(st.integers(0, (1 << 60) - 1), min_size=6, max_size=6),
    profiles=st.lists(st.sampled_from(PROFILES), min_size=6, max_size=6),
    wallets=st.lists(st.sampled_from([None, "wallet-shared-01", "wallet-other-02", "-bad"]),
                     min_size=3, max_size=3),
)
def test_close_pays_exactly_the_emission_and_only_verified_uptime(
    net: Net, fleet: dict[str, Any], bits: list[int], profiles: list[str],
    wallets: list[str | None],
) -> None:
    fleet["next"][0] += 1
    epoch = clock_of(net).epoch_index(net.clock.now().timestamp()) + 1
    with net.database.transaction() as s:
        for i, prof in zip(fleet["ids"], profiles, strict=True):
            s.execute(update(Device).where(Device.id == i).values(profile=prof))
        owner_ids = s.execute(select(Owner.id).order_by(Owner.id)).scalars().all()
        for oid, w in zip(owner_ids, wallets, strict=True):
            s.execute(update(Owner).where(Owner.id == oid).values(wallet_address=w))
    for handle, b in zip(fleet["devices"], bits, strict=True):
        for slot in range(60):
            if b >> slot & 1:
                record(net, handle, at(net, epoch, slot, 30))
    flush(net)
    move_to(net, at(net, epoch + 1, 0, int(state(net).rewards.settle_s)))
    done = close(net, epoch)
    row = done.row
    emission = emission_for_epoch(state(net).rewards.schedule, epoch)
    paid = payouts(net, epoch)
    assert sum(paid.values()) + row.unallocated == emission == row.emission
    assert row.counted_slots <= 60 * len(fleet["devices"])
    weights = state(net).rewards.weights
    scored = [b for d, b, p in zip(fleet["devices"], bits, profiles, strict=True)
              if d in fleet["verified"] and b and weights[p] > 0]
    assert row.counted_slots == sum(b.bit_count() for b in scored)
    assert (row.unallocated == 0) == bool(scored)
    # The two devices that never passed a proof are paid nothing, under any name.
    for d in fleet["devices"][4:]:
        assert "unset." + d.device_id not in paid
    assert all(w == "wallet-shared-01" or w == "wallet-other-02" or w.startswith("unset.dev_")
               for w in paid)
    again = close(net, epoch)
    assert not again.created and again.row.root == row.root and payouts(net, epoch) == paid


def test_verify_a_published_proof_offline(
    net: Net, fleet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epoch = clock_of(net).epoch_index(net.clock.now().timestamp()) + 1
    for slot in range(60):
        record(net, fleet["verified"][0], at(net, epoch, slot))
    flush(net)
    move_to(net, at(net, epoch + 1, 0, int(state(net).rewards.settle_s)))
    row = close(net, epoch).row
    wallet = "unset." + fleet["verified"][0].device_id
    url = f"/api/v1/explorer/epochs/{epoch}/proofs/{wallet}"
    proof = net.client.get(url).json()["proof"]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    base = ["rewards", "verify", "--root", row.root, "--epoch", str(epoch), "--wallet", wallet]
    runner = CliRunner()
    ok = runner.invoke(cli, [*base, "--amount", str(row.emission), "--proof", str(path)])
    assert ok.exit_code == 0 and ok.output.startswith("OK"), ok.output
    wrong = runner.invoke(cli, [*base, "--amount", str(row.emission - 1), "--proof", "-"],
                          input=json.dumps(proof))
    assert wrong.exit_code == 1 and "FAILED" in wrong.output
    other_root = runner.invoke(cli, ["rewards", "verify", "--root", "00" * 32, "--epoch",
                                     str(epoch), "--wallet", wallet, "--amount",
                                     str(row.emission), "--proof", str(path)])
    assert other_root.exit_code == 1
    monkeypatch.setattr(httpx, "get", lambda u, **_: net.client.get(u))
    fetched = runner.invoke(cli, [*base, "--amount", str(row.emission), "--from-url",
                                  "http://testserver" + url])
    assert fetched.exit_code == 0, fetched.output
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{\"not\": \"a proof\"}")
    bad = runner.invoke(cli, [*base, "--amount", "1", "--proof", str(garbage)])
    assert bad.exit_code == 1 and "not a payout proof" in bad.output
