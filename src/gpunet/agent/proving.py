"""Answering one proof-of-GPU challenge, start to finish, for one device."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpunet.agent.client import WorkerClient
from gpunet.agent.provers.base import Prover
from gpunet.core.pog import HardwareReport, OpeningRequest
from gpunet.core.pog.messages import VerdictMessage

log = logging.getLogger("gpunet.agent.proving")


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    challenge_id: str
    passed: bool
    reason: str | None
    status: str


def outcome_of(verdict: VerdictMessage | Mapping[str, Any]) -> ProofOutcome:
    """The agent's one reading of a verdict, from either transport: the HTTP body, or
    the fields of a control-channel verdict frame (its framing keys are ignored)."""
    if not isinstance(verdict, VerdictMessage):
        fields = {k: v for k, v in verdict.items() if k in VerdictMessage.model_fields}
        verdict = VerdictMessage.model_validate(fields)
    return ProofOutcome(verdict.challenge, verdict.passed, verdict.reason, verdict.status)


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
            return outcome_of(answer)
        verdict = client.open(prover.open(answer))
    finally:
        prover.release()
    outcome = outcome_of(verdict)
    log.info(
        "challenge %s: %s (device is %s)",
        challenge.id,
        "passed" if outcome.passed else f"failed: {outcome.reason}",
        outcome.status,
    )
    return outcome
