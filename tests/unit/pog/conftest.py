"""Shared helpers for the proof-of-GPU tests: fixed seeds, explicit budgets, no sleeping.

Time is never waited for: provers run for real, and the verifier is given elapsed times
(measured, or derived from a work count for simulated devices).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest

from gpunet.agent.provers.base import Prover
from gpunet.core.pog import (
    Challenge,
    Commitment,
    ModelProfile,
    OpeningPlan,
    OpeningResponse,
    Verdict,
    default_catalog,
    plan_openings,
    verify,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def seed_of(label: str) -> bytes:
    return hashlib.sha256(b"test-seed/" + label.encode()).digest()


def make_challenge(
    profile: ModelProfile,
    label: str,
    *,
    budget_s: float | None = None,
    open_budget_s: float | None = None,
    issued_at: dt.datetime = T0,
) -> Challenge:
    b = profile.budget
    return Challenge(
        id=f"pog_{hashlib.sha256(label.encode()).hexdigest()[:24]}",
        seed=seed_of(label),
        profile=profile.key,
        params=profile.params,
        issued_at=issued_at,
        deadline=issued_at + dt.timedelta(seconds=budget_s or b.budget_s),
        open_budget_s=open_budget_s or b.open_budget_s,
    )


@dataclass
class Exchange:
    challenge: Challenge
    commitment: Commitment
    plan: OpeningPlan
    response: OpeningResponse

    def verdict(self, commit_elapsed_s: float = 0.01, open_elapsed_s: float = 0.01) -> Verdict:
        return verify(
            self.challenge, self.commitment, self.plan, self.response,
            commit_elapsed_s=commit_elapsed_s, open_elapsed_s=open_elapsed_s,
        )


def exchange(prover: Prover, challenge: Challenge, secret_label: str = "open") -> Exchange:
    """Commit, then draw the openings (after the commitment), then open."""
    commitment = prover.commit(challenge)
    plan = plan_openings(challenge, seed_of(secret_label + challenge.id), commitment)
    return Exchange(challenge, commitment, plan, prover.open(plan.request()))


@pytest.fixture(scope="session")
def dev_profile() -> ModelProfile:
    p = default_catalog().get("cpu-dev")
    assert p is not None
    return p
