"""Wire messages of the proof-of-GPU exchange (agent <-> coordinator).

    coordinator -> agent   Challenge(id, seed, profile, params, issued_at, deadline, ...)
    agent -> coordinator   CommitmentEnvelope(Commitment(challenge_id, roots[T+1], ...),
                                              hardware report, attestation?)
    coordinator -> agent   OpeningRequest(challenge_id, rows)   (drawn AFTER the commitment)
    agent -> coordinator   OpeningResponse(challenge_id, rows with Merkle paths)
    coordinator -> agent   VerdictMessage(challenge, passed, reason, detail, status)

One set of messages for both transports (HTTP and the control channel) and the agent.
All models are frozen, reject unknown fields and bound every size, because each of them
is parsed from hostile input on one side or the other. Small messages travel as JSON
(bytes as base64); the opening response, megabytes of rows, travels as binary
(`core.pog.wire`). Timing is never taken from these messages: the coordinator measures
it itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gpunet.core.pog.hardware import HardwareReport
from gpunet.core.pog.params import CHUNK_ROWS, MAX_N, MAX_STEPS, ChallengeParams
from gpunet.core.pog.verdict import Failure, Verdict

MAX_OPENED_ROWS = 8192
CHUNK_BYTES = CHUNK_ROWS * 16  # one Merkle leaf: CHUNK_ROWS row digests
MAX_PROOF_DEPTH = 32

ChallengeId = Annotated[
    str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
ProfileKey = Annotated[
    str, StringConstraints(min_length=2, max_length=48, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
Hash32 = Annotated[bytes, Field(min_length=32, max_length=32)]


class _Msg(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )


class Challenge(_Msg):
    """Work for one device. `seed` is fresh server randomness: nothing is precomputable."""

    id: ChallengeId
    seed: bytes = Field(min_length=32, max_length=32)
    profile: ProfileKey
    params: ChallengeParams
    issued_at: dt.datetime
    deadline: dt.datetime
    open_budget_s: float = Field(gt=0, le=600)
    # Shared by the devices of one roll-call (B and D derive from it; X_0 never does).
    roll_call_seed: bytes | None = Field(default=None, min_length=32, max_length=32)

    @property
    def budget_s(self) -> float:
        return (self.deadline - self.issued_at).total_seconds()


class Commitment(_Msg):
    """One Merkle root per committed matrix X_0..X_T, over per-row 16-byte digests."""

    challenge_id: ChallengeId
    roots: tuple[Hash32, ...] = Field(min_length=2, max_length=MAX_STEPS + 1)
    elapsed_s: float = Field(ge=0, le=86400, description="prover's own figure; informative")
    backend: str = Field(default="", max_length=32, pattern=r"^[A-Za-z0-9_.:-]*$")


class RowRef(_Msg):
    step: int = Field(ge=0, le=MAX_STEPS)
    index: int = Field(ge=0, lt=MAX_N)


class OpeningRequest(_Msg):
    challenge_id: ChallengeId
    rows: tuple[RowRef, ...] = Field(min_length=1, max_length=MAX_OPENED_ROWS)


class OpenedRow(_Msg):
    """One committed row, the chunk of row digests it belongs to (one Merkle leaf), and
    the path from that leaf to the root of its step (core.pog.rowtree).

    `siblings` holds None where the tree promoted a node without a sibling.
    """

    step: int = Field(ge=0, le=MAX_STEPS)
    index: int = Field(ge=0, lt=MAX_N)
    data: bytes = Field(min_length=64, max_length=MAX_N)
    chunk: bytes = Field(min_length=CHUNK_BYTES, max_length=CHUNK_BYTES)
    siblings: tuple[Hash32 | None, ...] = Field(max_length=MAX_PROOF_DEPTH)


class OpeningResponse(_Msg):
    challenge_id: ChallengeId
    rows: tuple[OpenedRow, ...] = Field(min_length=1, max_length=MAX_OPENED_ROWS)

    @model_validator(mode="after")
    def _unique(self) -> OpeningResponse:
        keys = {(r.step, r.index) for r in self.rows}
        if len(keys) != len(self.rows):
            raise ValueError("a row is opened twice")
        return self


class CommitmentEnvelope(_Msg):
    """What a device sends with its roots: the hardware it runs on, and optionally a
    confidential-computing report over the challenge's attestation nonce."""

    commitment: Commitment
    hardware: HardwareReport
    attestation: bytes | None = Field(default=None, max_length=64 * 1024)


class VerdictMessage(_Msg):
    """The coordinator's answer to a finished exchange, on both transports."""

    challenge: ChallengeId
    passed: bool
    reason: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=300)
    status: str = Field(max_length=32)

    @classmethod
    def of(cls, challenge_id: str, verdict: Verdict, status: str) -> VerdictMessage:
        if isinstance(verdict, Failure):
            return cls(challenge=challenge_id, passed=False, reason=verdict.reason.value,
                       detail=verdict.detail[:300], status=status)
        return cls(challenge=challenge_id, passed=True, status=status)


class CommitmentAnswer(_Msg):
    """The coordinator's answer to a commitment: rows to open, or already a verdict."""

    openings: OpeningRequest | None = None
    verdict: VerdictMessage | None = None
