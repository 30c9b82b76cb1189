"""Proof of GPU: challenge derivation, catalog, verification (pure; no torch, web or db).

Coordinator flow (see docs/proof-of-gpu.md):

    profile   = default_catalog().for_claim(claim)          # or .get(key)
    challenge = issue_challenge(profile, now=clock.now(),   # send to the agent
                                roll_call_seed=shared)      # optional: one per roll-call
    ... Commitment arrives; coordinator measures commit_elapsed_s ...
    secret    = new_opening_secret()                         # store with the challenge
    plan      = plan_openings(challenge, secret)
    request   = plan.request()                               # send to the agent
    ... OpeningResponse arrives; coordinator measures open_elapsed_s ...
    verdict   = verify(challenge, commitment, plan, response,
                       commit_elapsed_s=..., open_elapsed_s=...,
                       derivation=None)  # or roll_call_derivation.with_seed(challenge.seed)
    if verdict and reward_eligible(profile, development=settings.development): ...
"""

from gpunet.core.pog.catalog import (
    DEV_PROFILE,
    Budget,
    Catalog,
    ModelProfile,
    check_eligible,
    default_catalog,
    load_catalog,
    reward_eligible,
)
from gpunet.core.pog.derive import Derivation
from gpunet.core.pog.hardware import (
    HardwareReport,
    KernelGpu,
    ReportedGpu,
    check_hardware,
    kernel_gpu_from_information,
)
from gpunet.core.pog.issue import (
    issue_challenge,
    new_challenge_id,
    new_opening_secret,
    new_roll_call_seed,
)
from gpunet.core.pog.messages import (
    Challenge,
    Commitment,
    OpenedRow,
    OpeningRequest,
    OpeningResponse,
    RowRef,
)
from gpunet.core.pog.openings import Check, OpeningPlan, plan_openings
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.verdict import Failure, FailureReason, Success, Verdict
from gpunet.core.pog.verify import check_commitment_shape, check_timing, verify

__all__ = [
    "DEV_PROFILE",
    "Budget",
    "Catalog",
    "Challenge",
    "ChallengeParams",
    "Check",
    "Commitment",
    "Derivation",
    "Failure",
    "FailureReason",
    "HardwareReport",
    "KernelGpu",
    "ModelProfile",
    "OpenedRow",
    "OpeningPlan",
    "OpeningRequest",
    "OpeningResponse",
    "ReportedGpu",
    "RowRef",
    "Success",
    "Verdict",
    "check_commitment_shape",
    "check_eligible",
    "check_hardware",
    "check_timing",
    "default_catalog",
    "issue_challenge",
    "kernel_gpu_from_information",
    "load_catalog",
    "new_challenge_id",
    "new_opening_secret",
    "new_roll_call_seed",
    "plan_openings",
    "reward_eligible",
    "verify",
]
