"""Finding 7: challenge storms. A lapsed challenge used to make the device due again at
once, with its whole cohort; a neighbouring host answered 23 challenges in 120 s, and a
12-device development network ran 3,025 proofs in 35 minutes.

The bound (services.proof_schedule): spot checks and cohort co-challenges reach one
device at most 1 + T / min_challenge_gap_s times in T seconds, whatever its neighbours
do; roll-calls, its own failure retries and its own lapse re-issues come on top.
"""

from __future__ import annotations

import math
from collections import Counter

from gpunet.core.clock import FrozenClock
from gpunet.server.db.engine import Database
from tests.adversarial.world import (
    CPU_DEV,
    answer_if_asked,
    answer_waiting,
    challenges,
    coordinator,
    rounds,
)


def test_an_offline_host_does_not_make_its_neighbours_re_prove(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    hours, tick = 4, 120
    # Frequent own spot checks, to press the bound from both sides.
    with coordinator(database, database_url, clock, spot_check_mean_s=600) as net:
        owner = net.register()
        offline = net.enroll(owner, count=2, **CPU_DEV, host="host-off-111111111111")
        online = net.enroll(owner, count=2, **CPU_DEV, host="host-on-2222222222222")
        job = rounds(net)  # no roll-call in these hours
        job.run_once()
        for d in offline + online:
            assert answer_if_asked(net, d)  # all four passed once, then one host goes dark
        start = clock.now()
        for _ in range(hours * 3600 // tick):
            clock.advance(tick)
            job.run_once()
            assert all(answer_waiting(net, online))
        gap = net.settings.min_challenge_gap_s
        reissue = net.settings.reissue_interval_s
        per_device = {
            d.device_id: [r for r in challenges(net, d) if r.issued_at > start]
            for d in offline + online
        }
    bound = 1 + math.floor(hours * 3600 / gap)
    for d in online:
        rows = per_device[d.device_id]
        assert len(rows) <= bound, f"{len(rows)} challenges in {hours} h (bound {bound})"
        assert all(r.outcome == "passed" for r in rows)
    for d in offline:
        rows = per_device[d.device_id]
        # Re-issued alone, once per interval, and never in a neighbour's batch storm.
        assert len(rows) <= 1 + math.ceil(hours * 3600 / reissue)
        assert all(r.outcome == "missed" for r in rows)


def test_a_development_network_issues_a_bounded_number_of_challenges(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    minutes, tick = 35, 5
    # `gpunet dev up`'s network: one owner, 12 cpu-dev devices on 3 hosts, spot checks
    # every 5 minutes on average, the scheduler ticking every few seconds.
    with coordinator(database, database_url, clock, spot_check_mean_s=300) as net:
        owner = net.register()
        devices = []
        for h in range(3):
            devices += net.enroll(owner, count=4, **CPU_DEV, host=f"host-dev{h}-33333333333")
        job = rounds(net)
        for _ in range(minutes * 60 // tick):
            job.run_once()
            assert all(answer_waiting(net, devices))
            clock.advance(tick)
        rows = challenges(net)
        gap = net.settings.min_challenge_gap_s
    per_device = Counter(r.device_id for r in rows)
    # One enrollment each, then at most 1 + T / gap spot or cohort checks each.
    bound = 1 + 1 + math.floor(minutes * 60 / gap)
    assert max(per_device.values()) <= bound
    assert len(rows) <= 12 * bound  # 48 here; 3,025 before
    assert all(r.outcome == "passed" for r in rows)
