"""Finding 6: the coordinator never passed a roll_call_seed. Now every challenge of one
roll-call (and of one cohort batch) carries the same seed, and different roll-calls
carry different seeds."""

from __future__ import annotations

from gpunet.core.clock import FrozenClock
from gpunet.core.pog import Challenge
from gpunet.server.db.engine import Database
from tests.adversarial.world import CPU_DEV, answer_if_asked, challenges, coordinator, rounds


def test_rollcalls_share_one_seed_each_and_never_reuse_it(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with coordinator(database, database_url, clock) as net:
        devices = [
            net.enroll(net.register(), **CPU_DEV, host=f"host-{i:02d}-ffffffffffff")[0]
            for i in range(3)
        ]
        job = rounds(net, rollcall_gaps=[600, 600])
        job.run_once()
        for d in devices:
            assert answer_if_asked(net, d)
        for _ in range(2):
            clock.advance(600)
            assert job.run_once()[2] == 3
            for d in devices:
                assert answer_if_asked(net, d)
        rows = challenges(net)
    seeds: dict[str, set[bytes | None]] = {}
    for row in rows:
        seeds.setdefault(row.batch, set()).add(
            Challenge.model_validate_json(row.body).roll_call_seed
        )
    rollcall_batches = {r.batch for r in rows if r.kind == "rollcall"}
    assert len(rollcall_batches) == 2
    for batch in rollcall_batches:
        [seed] = seeds[batch]  # one seed for the whole roll-call
        assert seed is not None and len(seed) == 32
    assert len({next(iter(seeds[b])) for b in rollcall_batches}) == 2
    # Cohort batches (enrollment here: one per device, different owners) carry one too.
    assert all(None not in s and len(s) == 1 for s in seeds.values())
