"""Closing epochs through the coordinator: exact sums, idempotence, one payer among
concurrent closers, crashes mid-close, forfeits, and what owners and the public see."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from gpunet.core.rewards import PayoutProof, emission_for_epoch, verify_payout
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import RewardEpoch, RewardPayout
from gpunet.server.services import rewards
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


def _next_epoch(net: Net) -> int:
    return clock_of(net).epoch_index(net.clock.now().timestamp()) + 1


def _settle(net: Net, epoch: int) -> None:
    move_to(net, at(net, epoch + 1, 0, int(state(net).rewards.settle_s)))


@pytest.fixture
def closed_world(net: Net) -> dict[str, Any]:
    """Alice (wallet, two H100s, one online half the epoch), Bob (no wallet, one H100),
    Carol (one H100 that never passed a proof, online all along)."""
    alice, bob, carol = net.register(), net.register(), net.register()
    set_wallet(net, alice, "wallet-alice-0001")
    a1, a2 = net.enroll(alice, 2)
    (b1,) = net.enroll(bob, 1)
    (c1,) = net.enroll(carol, 1)
    for d in (a1, a2, b1):
        verdict(net, d, True, net.clock.now())
    epoch = _next_epoch(net)
    for slot in range(60):
        move_to(net, at(net, epoch, slot, 7))
        for d in (a1, b1, c1) if slot % 2 else (a1, a2, b1, c1):
            heartbeat(net, d)
        if slot % 17 == 0:
            flush(net)
    flush(net)
    _settle(net, epoch)
    return {"epoch": epoch, "alice": alice, "bob": bob, "carol": carol,
            "a1": a1, "a2": a2, "b1": b1, "c1": c1}


def test_close_sums_exactly_and_reclosing_changes_nothing(
    net: Net, closed_world: dict[str, Any]
) -> None:
    epoch = closed_world["epoch"]
    first = close(net, epoch)
    assert first.created
    emission = emission_for_epoch(state(net).rewards.schedule, epoch)
    paid = payouts(net, epoch)
    assert sum(paid.values()) == emission == first.row.emission
    unset_bob = "unset." + closed_world["b1"].device_id
    # alice: 10 * (60 + 30) = 900, bob: 10 * 60 = 600; carol never passed a proof.
    assert set(paid) == {"wallet-alice-0001", unset_bob}
    assert paid["wallet-alice-0001"] * 600 == paid[unset_bob] * 900
    assert first.row.devices == 3 and first.row.counted_slots == 150
    again = close(net, epoch)
    assert not again.created
    assert again.row.root == first.row.root
    assert payouts(net, epoch) == paid
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(RewardEpoch)).scalar_one() == 1


def test_public_proof_verifies_offline(net: Net, closed_world: dict[str, Any]) -> None:
    epoch = closed_world["epoch"]
    close(net, epoch)
    r = net.client.get(f"/api/v1/explorer/epochs/{epoch}")
    assert r.status_code == 200, r.text
    root = r.json()["root"]
    p = net.client.get(f"/api/v1/explorer/epochs/{epoch}/proofs/wallet-alice-0001")
    assert p.status_code == 200, p.text
    assert p.json()["root"] == root
    proof = PayoutProof.from_dict(p.json()["proof"])
    assert verify_payout(root, epoch, "wallet-alice-0001", proof.amount, proof)
    assert not verify_payout(root, epoch, "wallet-alice-0001", proof.amount + 1, proof)
    missing = net.client.get(f"/api/v1/explorer/epochs/{epoch}/proofs/nobody-here")
    assert missing.status_code == 404
    listed = net.client.get(f"/api/v1/explorer/epochs/{epoch}/payouts?limit=1").json()
    assert len(listed["items"]) == 1 and listed["next_after"]
    assert net.client.get("/api/v1/explorer/epochs").json()["items"][0]["epoch"] == epoch
    sched = net.client.get("/api/v1/explorer/rewards/schedule").json()
    assert sched["weights"]["h100-sxm"] == "10" and sched["schedule"]["epoch_seconds"] == 3600


def test_owner_sees_own_uptime_and_payouts_only(net: Net, closed_world: dict[str, Any]) -> None:
    epoch = closed_world["epoch"]
    alice, bob = closed_world["alice"], closed_world["bob"]
    a2 = closed_world["a2"]
    close(net, epoch)
    r = net.client.get(f"/api/v1/devices/{a2.device_id}/uptime?epoch={epoch}",
                       headers=headers(net, alice))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["online_slots"] == 30 and body["counted_slots"] == 30 and body["closed"]
    assert int(body["counted_bitmap"], 16) == sum(1 << i for i in range(0, 60, 2))
    # Bob may not even learn that Alice's device exists.
    denied = net.client.get(f"/api/v1/devices/{a2.device_id}/uptime?epoch={epoch}",
                            headers=headers(net, bob))
    assert denied.status_code == 404
    mine = net.client.get(f"/api/v1/rewards/epochs/{epoch}/mine", headers=headers(net, bob)).json()
    assert [p["wallet"] for p in mine["payouts"]] == ["unset." + closed_world["b1"].device_id]
    mine_a = net.client.get(
        f"/api/v1/rewards/epochs/{epoch}/mine", headers=headers(net, alice)
    ).json()
    assert [p["wallet"] for p in mine_a["payouts"]] == ["wallet-alice-0001"]
    assert net.client.get(f"/api/v1/rewards/epochs/{epoch}/mine").status_code == 401


def test_an_epoch_closes_only_after_it_settled(net: Net) -> None:
    epoch = _next_epoch(net)
    move_to(net, at(net, epoch + 1, 0, 5))
    with pytest.raises(Exception, match="can be closed from"):
        close(net, epoch)
    _settle(net, epoch)
    assert close(net, epoch).created


def test_two_concurrent_closers_pay_once(
    net: Net, closed_world: dict[str, Any], database_url: str
) -> None:
    epoch = closed_world["epoch"]
    config = state(net).rewards
    now = net.clock.now()
    barrier = threading.Barrier(4)
    results: list[rewards.Closed] = []
    errors: list[BaseException] = []

    def closer() -> None:
        db = Database(database_url)
        try:
            barrier.wait()
            results.append(rewards.close_epoch(db, config, epoch, now=now))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=closer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(r.created for r in results) == 1
    assert len({r.row.root for r in results}) == 1
    emission = emission_for_epoch(config.schedule, epoch)
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(RewardEpoch)).scalar_one() == 1
        assert s.execute(select(func.count()).select_from(RewardPayout)).scalar_one() == 2
    assert sum(payouts(net, epoch).values()) == emission


def test_a_crash_mid_close_leaves_nothing_and_a_rerun_pays_once(
    net: Net, closed_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    epoch = closed_world["epoch"]
    real = rewards._insert_payouts

    def half_then_die(session: Any, e: int, snap: Any) -> None:
        real(session, e, snap)  # the rows are written...
        raise KeyboardInterrupt("killed mid-transaction")  # ...and the process dies

    monkeypatch.setattr(rewards, "_insert_payouts", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        close(net, epoch)
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(RewardEpoch)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(RewardPayout)).scalar_one() == 0
    monkeypatch.setattr(rewards, "_insert_payouts", real)
    done = close(net, epoch)
    assert done.created
    assert sum(payouts(net, epoch).values()) == done.row.emission


def test_failed_spot_check_forfeits_since_last_rollcall_pass(net: Net) -> None:
    owner = net.register()
    set_wallet(net, owner, "wallet-forfeit-01")
    (d,) = net.enroll(owner, 1)
    verdict(net, d, True, net.clock.now())
    epoch = _next_epoch(net)
    for slot in range(60):
        move_to(net, at(net, epoch, slot, 3))
        if slot == 5:
            verdict(net, d, True, net.clock.now())  # a spot pass confirms nothing
        if slot == 10:
            verdict(net, d, True, net.clock.now(), rollcall=True)  # a roll-call pass in slot 10
        if slot == 40:
            verdict(net, d, False, net.clock.now())  # fails in slot 40: 11..40 forfeited
        if slot == 45:
            verdict(net, d, True, net.clock.now())  # suspect -> verified again in slot 45
        heartbeat(net, d)
    flush(net)
    r = net.client.get(f"/api/v1/devices/{d.device_id}/uptime?epoch={epoch}",
                       headers=headers(net, owner))
    assert r.status_code == 200, r.text
    bits = int(r.json()["counted_bitmap"], 16)
    # 0..10 counted; 11..40 forfeited; 41..45 suspect (45 changed mid-slot); 46..59 counted.
    assert bits == sum(1 << i for i in [*range(0, 11), *range(46, 60)])
    _settle(net, epoch)
    row = close(net, epoch).row
    assert row.counted_slots == 25 and row.devices == 1


def test_background_pass_closes_due_epochs(net: Net, closed_world: dict[str, Any]) -> None:
    from gpunet.server.background.rewards import close_once

    epoch = closed_world["epoch"]
    closed = close_once(net.database, state(net).rewards, net.clock, keep_days=90)
    assert closed == [epoch]
    assert close_once(net.database, state(net).rewards, net.clock, keep_days=90) == []


def test_public_reward_responses_name_no_owner(net: Net, closed_world: dict[str, Any]) -> None:
    import json
    import re

    from tests.integration.rewards_world import owner_id

    epoch = closed_world["epoch"]
    close(net, epoch)
    owners = [closed_world[k] for k in ("alice", "bob", "carol")]
    urls = [
        "/api/v1/explorer/epochs",
        f"/api/v1/explorer/epochs/{epoch}",
        f"/api/v1/explorer/epochs/{epoch}/payouts",
        f"/api/v1/explorer/epochs/{epoch}/proofs/wallet-alice-0001",
        f"/api/v1/explorer/epochs/{epoch}/proofs/unset.{closed_world['b1'].device_id}",
        "/api/v1/explorer/rewards/schedule",
        "/api/v1/explorer/incidents",
    ]
    for url in urls:
        r = net.client.get(url)
        assert r.status_code == 200, (url, r.text)
        body = r.text
        for o in owners:
            assert o.email not in body, url
        assert not re.search(r'"(id|owner|owner_id|email|declared_by)"\s*:', body), url
        keys = json.dumps(r.json())
        for o in owners:
            assert f'"owner_id": {owner_id(net, o)}' not in keys
