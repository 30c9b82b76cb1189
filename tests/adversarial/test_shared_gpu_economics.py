"""One GPU behind N devices, over 14 simulated days of the real schedule, for every
catalog profile (issue 13, item 4): it fails at the first roll-call, and it is paid no
more than one honest device on its own GPU. The model and its expected-value argument
are in tests/adversarial/economics.py.

Seeds: each seed is one network (the honest device and the N devices see the same
roll-calls; every device draws its spot checks from its own stream of the seed).

Tolerance: the N devices may exceed the honest device only by the roll-call intervals
one of them escaped because a spot check of its was outstanding when the roll-call
came (`proofs.issue` skips such a device; economics.py, "the one exception"). Per seed
the test allows exactly those intervals (`Run.escaped_slots`, 0 in most seeds); on
average over the seeds it allows the expected value of escaping,
(N - 1) x w / mean spot gap <= 0.34 % (w: the longest a challenge stays outstanding).
"""

from __future__ import annotations

from functools import cache

import pytest

from gpunet.core.pog import default_catalog
from tests.adversarial.economics import Answer, Order, Rules, Run, Work, mean, simulate

RULES = Rules.defaults(slot_s=60)
PROFILES = [Work.of(m) for m in default_catalog().models if not m.dev_only]
NS = (2, 3, 4)
SEEDS = range(5)
DAYS = 14
CASES = [pytest.param(w, n, id=f"{w.key}-N{n}") for w in PROFILES for n in NS]


@cache
def run(key: str, n: int, order: Order, answer: Answer, seed: int) -> Run:
    work = next(w for w in PROFILES if w.key == key)
    return simulate(work, n, seed=seed, days=DAYS, order=order, answer=answer, rules=RULES)


def runs(work: Work, n: int, order: Order, answer: Answer = Answer.LATE) -> list[Run]:
    return [run(work.key, n, order, answer, seed) for seed in SEEDS]


def expected_escape(work: Work, n: int) -> float:
    """What escaping roll-calls adds in expectation, as a share of one device's pay."""
    return (n - 1) * work.outstanding_at_most(RULES) / RULES.mean_spot_gap()


def test_the_schedule_is_the_coordinators() -> None:
    assert RULES.spot_check_mean_s == 6 * 3600
    assert RULES.min_challenge_gap_s == 900
    assert RULES.rollcall_mean_s == 86400
    assert RULES.delivery_allowance_s == 0.25
    assert RULES.epoch_s % RULES.slot_s == 0
    assert len(PROFILES) >= 10 and all(w.weight > 0 for w in PROFILES)


@pytest.mark.parametrize("work", [pytest.param(w, id=w.key) for w in PROFILES])
def test_a_second_chain_misses_every_budget(work: Work) -> None:
    """The premise: the second device answered at a roll-call is late, whatever the
    profile (2e > 1.2e + allowance, i.e. e > 0.3125 s), and the first is in time."""
    assert work.expected_s <= work.budget_s + RULES.delivery_allowance_s
    assert 2 * work.expected_s > work.budget_s + RULES.delivery_allowance_s
    # A check open at a roll-call (budget + opening window) in a model without the
    # coordinator's quiet window: under 0.5% of a device's pay at N = 4, every profile.
    assert expected_escape(work, 4) < 0.005


@pytest.mark.parametrize(("work", "n"), CASES)
def test_first_rollcall_fails_all_but_one_device(work: Work, n: int) -> None:
    for order in Order:
        for answer in Answer:
            for r in runs(work, n, order, answer):
                outcomes = sorted(r.first_rollcall().values())
                lost = "missed" if answer is Answer.LAZY else "failed"
                assert outcomes == sorted(["passed"] + [lost] * (n - 1)), (order, answer)
                assert r.rollcalls[0].at < DAYS * 86400


@pytest.mark.parametrize(("work", "n"), CASES)
def test_n_devices_on_one_gpu_are_paid_no_more_than_one_honest_device(work: Work, n: int) -> None:
    for order in Order:
        rs = runs(work, n, order)
        for r in rs:
            assert r.honest_paid > 0
            allowed = r.honest_paid + r.escaped_slots(RULES) * work.weight
            assert r.shared_paid <= allowed, (order, r.ratio)
            # at every roll-call at most one of the N passes: the argument's premise
            for rc in r.rollcalls:
                mine = [c for c in rc.checks if c.device.name in r.shared_names]
                assert sum(c.outcome == "passed" for c in mine) <= 1
        assert mean(r.ratio for r in rs) <= 1 + expected_escape(work, n), order


@pytest.mark.parametrize("work", [pytest.param(w, id=w.key) for w in PROFILES])
def test_the_honest_device_passes_every_check(work: Work) -> None:
    for seed in SEEDS:
        r = run(work.key, 2, Order.FIRST_COME, Answer.LATE, seed)
        h = r.honest
        assert (h.failures, h.lapses, h.suspended) == (0, 0, False)
        assert h.passes >= sum(1 for rc in r.rollcalls if rc.checks)
        # it is paid for nearly all of the time the closed epochs cover
        assert h.slots > 0.5 * DAYS * 1440


@pytest.mark.parametrize(("work", "n"), CASES)
def test_letting_rollcalls_lapse_earns_no_more(work: Work, n: int) -> None:
    """The lazy backend never answers a chain it cannot finish in time: lapsed
    roll-calls fail like late ones, and lapsed spot checks leave a proof owed. It earns
    no more than one honest device; against answering late it may earn more where
    chains are long (H200, A100 80GB: a late chain holds the GPU into the next device's
    check), never more than the bound."""
    for order in Order:
        lazy = runs(work, n, order, Answer.LAZY)
        late = runs(work, n, order, Answer.LATE)
        for lz, lt in zip(lazy, late, strict=True):
            assert lz.honest_paid == lt.honest_paid  # the same network otherwise
            allowed = lz.honest_paid + lz.escaped_slots(RULES) * work.weight
            assert lz.shared_paid <= allowed, (order, lz.ratio)
        assert mean(r.ratio for r in lazy) <= 1 + expected_escape(work, n), order
        assert mean(r.ratio for r in late) <= 1 + expected_escape(work, n), order
