"""An honest prover passes every time, on every backend, byte for byte the same."""

from __future__ import annotations

import datetime as dt
import time

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.pog import (
    Success,
    issue_challenge,
    new_opening_secret,
    plan_openings,
    verify,
)


def test_honest_cpu_prover_passes_200_of_200(dev_profile):
    prover = CpuProver()
    now = dt.datetime.now(dt.UTC)
    passed = 0
    for _ in range(200):
        challenge = issue_challenge(dev_profile, now=now)  # fresh random seed each time
        t0 = time.perf_counter()
        commitment = prover.commit(challenge)
        t1 = time.perf_counter()
        plan = plan_openings(challenge, new_opening_secret(), commitment)
        response = prover.open(plan.request())
        t2 = time.perf_counter()
        verdict = verify(challenge, commitment, plan, response,
                         commit_elapsed_s=t1 - t0, open_elapsed_s=t2 - t1)
        assert isinstance(verdict, Success), verdict
        passed += bool(verdict)
    assert passed == 200


def test_success_is_truthy_and_reports_what_was_checked(dev_profile):
    from tests.unit.pog.conftest import exchange, make_challenge

    ex = exchange(CpuProver(), make_challenge(dev_profile, "truthy"))
    v = ex.verdict()
    assert v and v.ok and "entries checked" in v.detail
