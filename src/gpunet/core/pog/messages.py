"""Wire messages of the proof-of-GPU exchange (agent <-> coordinator).

    coordinator -> agent   Challenge(id, seed, profile, params, issued_at, deadline, ...)
    agent -> coordinator   Commitment(challenge_id, roots[T+1], elapsed_s)
    coordinator -> agent   OpeningRequest(challenge_id, rows)   (drawn AFTER the commitment)
    agent -> coordinator   OpeningResponse(challenge_id, rows with Merkle proofs)

All models are frozen, reject unknown fields and bound every size, because each of them
is parsed from hostile input on one side or the other. Bytes travel as base64 in JSON.
Timing is never taken from these messages: the coordinator measures it itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gpunet.core.merkle import MerkleProof
from gpunet.core.pog.params import MAX_N, MAX_STEPS, ChallengeParams

MAX_OPENED_ROWS = 4096
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
    """One committed row, and the Merkle path from its digest to the root of its step.

    `siblings` holds None where the tree promoted a node without a sibling.
    """

    step: int = Field(ge=0, le=MAX_STEPS)
    index: int = Field(ge=0, lt=MAX_N)
    data: bytes = Field(min_length=64, max_length=MAX_N)
    siblings: tuple[Hash32 | None, ...] = Field(max_length=MAX_PROOF_DEPTH)

    def proof(self, leaf_count: int) -> MerkleProof:
        return MerkleProof(index=self.index, leaf_count=leaf_count, siblings=self.siblings)


class OpeningResponse(_Msg):
    challenge_id: ChallengeId
    rows: tuple[OpenedRow, ...] = Field(min_length=1, max_length=MAX_OPENED_ROWS)

    @model_validator(mode="after")
    def _unique(self) -> OpeningResponse:
        keys = {(r.step, r.index) for r in self.rows}
        if len(keys) != len(self.rows):
            raise ValueError("a row is opened twice")
        return self
