"""Every cheater fails, with the reason in the verdict (a value, never an exception).

Simulated devices: a device "exactly as fast as the claimed model" runs one chain step
in STEP_S = budget / (steps * 1.25), i.e. an honest run uses 80% of the budget. Work
that a cheater really performs is counted and converted to elapsed time this way, so no
test sleeps or depends on the speed of the machine running it.
"""

from __future__ import annotations

import time

import pytest
from tests.unit.pog.cheaters import (
    GarbageProver,
    ReplayProver,
    SkippingProver,
)
from tests.unit.pog.conftest import exchange, make_challenge, seed_of

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.pog import Failure, FailureReason, plan_openings


def step_s(challenge) -> float:
    return challenge.budget_s / (challenge.params.steps * 1.25)


def assert_fails(verdict, *reasons: FailureReason) -> None:
    assert isinstance(verdict, Failure), verdict
    assert not verdict
    assert verdict.reason in reasons, verdict


@pytest.mark.parametrize("label", [f"skip-{i}" for i in range(5)])
def test_prover_skipping_ten_percent_of_rows_fails(dev_profile, label):
    cheat = SkippingProver(0.10, rng_seed=int(label.split("-")[1]))
    ch = make_challenge(dev_profile, label)
    ex = exchange(cheat, ch)
    p = ch.params
    assert cheat.rows_computed < 0.95 * p.steps * p.n  # it really saved work
    # ...and ran faster than an honest device would, which is its only gain:
    elapsed = cheat.rows_computed / p.n * step_s(ch)
    assert_fails(ex.verdict(commit_elapsed_s=elapsed), FailureReason.WRONG_RESULT)


def test_prover_answering_garbage_fast_fails(dev_profile):
    ch = make_challenge(dev_profile, "garbage")
    ex = exchange(GarbageProver(), ch)
    assert_fails(ex.verdict(commit_elapsed_s=0.0, open_elapsed_s=0.0),
                 FailureReason.WRONG_INITIAL)


def test_replayed_answer_is_bound_to_its_challenge(dev_profile):
    honest = CpuProver()
    old = exchange(honest, make_challenge(dev_profile, "replay-old"))
    assert old.verdict()
    new = make_challenge(dev_profile, "replay-new")
    plan = plan_openings(new, seed_of("replay-secret"), old.commitment)

    # Sent verbatim: names the old challenge.
    from gpunet.core.pog import verify

    v = verify(new, old.commitment, plan, old.response, commit_elapsed_s=0.0, open_elapsed_s=0.0)
    assert_fails(v, FailureReason.WRONG_CHALLENGE)

    # Re-labelled with the new id and re-opened from the old matrices: X_0 comes from
    # the new seed, so the old work does not fit.
    replay = ReplayProver(honest)
    commitment = replay.commit(new)
    plan = plan_openings(new, seed_of("replay-secret"), commitment)
    response = replay.open(plan.request())
    v = verify(new, commitment, plan, response, commit_elapsed_s=0.0, open_elapsed_s=0.0)
    assert_fails(v, FailureReason.WRONG_INITIAL)


def test_backend_too_slow_for_its_claimed_model_fails(dev_profile):
    # Measure this backend honestly, then claim a model whose budget it misses by 1.5x.
    prover = CpuProver()
    probe = make_challenge(dev_profile, "slow-probe")
    t0 = time.perf_counter()
    prover.commit(probe)
    measured = time.perf_counter() - t0
    ch = make_challenge(dev_profile, "slow", budget_s=measured / 1.5)
    ex = exchange(prover, ch)
    assert ex.verdict(commit_elapsed_s=measured / 2)  # within budget it would pass
    assert_fails(ex.verdict(commit_elapsed_s=measured), FailureReason.TOO_SLOW)


def test_openings_after_their_budget_fail(dev_profile):
    ch = make_challenge(dev_profile, "late-open", open_budget_s=0.5)
    ex = exchange(CpuProver(), ch)
    assert_fails(ex.verdict(open_elapsed_s=0.75), FailureReason.OPENING_LATE)


class TestOneBackendForTwoDevices:
    """Two devices challenged at the same instant with distinct seeds, one real backend
    whose throughput covers one challenge in its budget."""

    def challenges(self, profile):
        return (make_challenge(profile, "twin-a"), make_challenge(profile, "twin-b"))

    def test_serial_answers_make_the_second_late(self, dev_profile):
        a, b = self.challenges(dev_profile)
        backend = CpuProver()
        ex_a = exchange(backend, a)
        done_a = a.params.steps * step_s(a)
        ex_b = exchange(backend, b)
        done_b = done_a + b.params.steps * step_s(b)  # same device, after A
        assert ex_a.verdict(commit_elapsed_s=done_a)
        assert_fails(ex_b.verdict(commit_elapsed_s=done_b), FailureReason.TOO_SLOW)

    def test_interleaved_answers_make_both_late(self, dev_profile):
        a, b = self.challenges(dev_profile)
        both = (a.params.steps + b.params.steps) * step_s(a)  # step by step, alternating
        for ch in (a, b):
            ex = exchange(CpuProver(), ch)
            assert_fails(ex.verdict(commit_elapsed_s=both), FailureReason.TOO_SLOW)

    def test_halving_the_work_to_fit_fails_the_check(self, dev_profile):
        a, b = self.challenges(dev_profile)
        for i, ch in enumerate((a, b)):
            cheat = SkippingProver(0.5, rng_seed=100 + i)
            ex = exchange(cheat, ch)
            assert_fails(ex.verdict(commit_elapsed_s=a.params.steps * step_s(a)),
                         FailureReason.WRONG_RESULT)

    def test_one_computation_for_both_fails(self, dev_profile):
        a, b = self.challenges(dev_profile)
        backend = CpuProver()
        assert exchange(backend, a).verdict()
        ex_b = exchange(ReplayProver(backend), b)
        assert_fails(ex_b.verdict(), FailureReason.WRONG_INITIAL)
