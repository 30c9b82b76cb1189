"""Answering one proof-of-GPU challenge, start to finish, for one device."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gpunet.agent.client import WorkerClient
from gpunet.agent.provers.base import Prover
from gpunet.core.pog import HardwareReport, OpeningRequest

log = logging.getLogger("gpunet.agent.proving")


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    challenge_id: str
    passed: bool
    reason: str | None
    status: str


def answer_next(
    client: WorkerClient, prover: Prover, hardware: HardwareReport, attestation: bytes | None = None
) -> ProofOutcome | None:
    """Fetch the device's challenge if there is one, prove, open, and report the verdict."""
    challenge = client.fetch_challenge()
    if challenge is None:
        return None
    log.info(
        "challenge %s (%s): n=%d, %d steps, budget %.1fs",
        challenge.id,
        challenge.profile,
        challenge.params.n,
        challenge.params.steps,
        challenge.budget_s,
    )
    try:
        commitment = prover.commit(challenge)
        answer = client.commit(commitment, hardware, attestation)
        if not isinstance(answer, OpeningRequest):
            return _outcome(challenge.id, answer)
        verdict = client.open(prover.open(answer))
    finally:
        prover.release()
    outcome = _outcome(challenge.id, verdict)
    log.info(
        "challenge %s: %s (device is %s)",
        challenge.id,
        "passed" if outcome.passed else f"failed: {outcome.reason}",
        outcome.status,
    )
    return outcome


def _outcome(challenge_id: str, verdict: dict[str, Any]) -> ProofOutcome:
    return ProofOutcome(
        challenge_id, bool(verdict["passed"]), verdict.get("reason"), str(verdict["status"])
    )
