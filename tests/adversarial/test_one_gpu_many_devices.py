"""Economics of one GPU serving two devices (issue 13, finding 4 and "one GPU, one
device").

The backend passes each device's spot checks because they are staggered (different
owners and hosts: it chose cohorts that never meet). A roll-call challenges both at
once; the device answered second runs out of time, and its failure forfeits uptime
back to its last passed roll-call, not just its last pass. Epochs close only once a
later roll-call has resolved, so no closed epoch pays what a roll-call forfeits.
Across a simulated day, with heartbeats every slot and the real scheduler, the pair is
paid no more than one honest device.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from fractions import Fraction

from sqlalchemy import select

from gpunet.core.clock import FrozenClock
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import DeviceEvent
from gpunet.server.services import rewards
from tests.adversarial.world import (
    CPU_DEV,
    answer_waiting,
    challenges,
    coordinator,
    fetch,
    heartbeat,
    pk,
    prove,
    rounds,
    state,
)
from tests.integration.conftest import DeviceHandle, Net
from tests.integration.rewards_world import flush, payouts, set_wallet

SLOT = 300
ROLLCALL_EVERY = 6 * 3600


def serve_pair(net: Net, pair: Sequence[DeviceHandle], first: int) -> None:
    """The shared backend: it fetches each device's challenge only when free, and each
    chain takes 60% of what a deadline allows."""
    order = [pair[first], pair[1 - first]]
    for dev in order:
        challenge = fetch(net, dev)
        if challenge is None:
            continue
        work = (challenge.budget_s + state(net).proof_policy.delivery_allowance_s) * 0.6
        prove(net, dev, challenge, work_s=work)


def test_two_devices_on_one_gpu_are_paid_no_more_than_one_honest_device(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    settings = {
        "spot_check_mean_s": 3600,
        "rewards_slot_seconds": SLOT,
        "rewards_await_rollcall": True,
    }
    with coordinator(database, database_url, clock, **settings) as net:
        owners = [net.register() for _ in range(3)]
        for i, owner in enumerate(owners):
            set_wallet(net, owner, f"wallet-econ-{i:02d}")
        a, b, honest = (
            net.enroll(owner, **CPU_DEV, host=f"host-econ{i}-444444444")[0]
            for i, owner in enumerate(owners)
        )
        pair = [a, b]
        job = rounds(net, rollcall_gaps=[ROLLCALL_EVERY] * 4)
        start = clock.now()
        rollcalls_seen = 0
        for i in range(86400 // SLOT):
            rollcalls_seen += job.run_once()[2] > 0
            answer_waiting(net, [honest])
            # The attacker takes turns over which device it answers first.
            serve_pair(net, pair, first=rollcalls_seen % 2)
            for dev in (a, b, honest):
                heartbeat(net, dev)
            clock.advance((start + dt.timedelta(seconds=(i + 1) * SLOT) - clock.now()).seconds)
        flush(net)
        # cpu-dev weighs nothing (it is never rewarded for real); weigh it 1 to see the split.
        config = state(net).rewards
        config = dataclasses.replace(config, weights={**config.weights, "cpu-dev": Fraction(1)})
        closed = rewards.close_due(net.database, config, now=clock.now())
        paid = {0: 0, 1: 0, 2: 0}
        for c in closed:
            got = payouts(net, c.row.epoch)
            for k in paid:
                paid[k] += got.get(f"wallet-econ-{k:02d}", 0)
        rows = challenges(net)
        with net.database.read() as s:
            forfeits = list(
                s.execute(
                    select(DeviceEvent.device_id, DeviceEvent.at, DeviceEvent.forfeit_from)
                    .where(DeviceEvent.kind == "proof_failed")
                    .order_by(DeviceEvent.at)
                )
            )
        pair_pks = {pk(net, a), pk(net, b)}

    assert rollcalls_seen == 3  # at 6, 12 and 18 h (the fourth would be at 24 h)
    first_rollcall = min(r.issued_at for r in rows if r.kind == "rollcall")
    pair_rows = [r for r in rows if r.device_id in pair_pks]
    spot_before = [r for r in pair_rows if r.kind == "spot" and r.issued_at < first_rollcall]
    # Spot checks that came alone all passed; only coinciding ones could catch it.
    issued = [r.issued_at for r in pair_rows]
    alone = [r for r in spot_before if issued.count(r.issued_at) == 1]
    assert alone and all(r.outcome == "passed" for r in alone)
    in_first = [r for r in pair_rows if r.kind == "rollcall" and r.issued_at == first_rollcall]
    assert sorted(r.outcome for r in in_first) == ["failed", "passed"]
    # The roll-call failure's forfeit reaches back past the device's spot passes, to its
    # last roll-call pass: with none yet, its enrollment pass.
    [loser] = [r.device_id for r in in_first if r.outcome == "failed"]
    at_rollcall = [f for f in forfeits if f.device_id == loser and f.at >= first_rollcall]
    forfeit_from = at_rollcall[0].forfeit_from
    enrolled = next(r for r in rows if r.device_id == loser and r.kind == "enrollment")
    assert forfeit_from == enrolled.completed_at
    spot_passes = [
        r.completed_at for r in spot_before if r.device_id == loser and r.outcome == "passed"
    ]
    assert all(forfeit_from < p for p in spot_passes)
    # Paid only up to the last resolved roll-call; the pair earns at most one device.
    assert closed and max(c.row.ends_at for c in closed) <= max(
        r.issued_at for r in rows if r.kind == "rollcall"
    )
    assert paid[2] > 0
    assert paid[0] + paid[1] <= paid[2], paid
