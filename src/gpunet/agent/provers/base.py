"""The one interface every proof-of-GPU backend implements, and the host-side plumbing
they share (Merkle trees over device digests, assembling openings).

A prover answers one challenge at a time: `commit` runs the whole chain on the device and
returns the roots; `open` answers the coordinator's row request from what it kept. The
matrices stay on the device between the two calls: keeping them is the memory phase.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from gpunet.core.merkle import MerkleTree, hash_leaf
from gpunet.core.pog.messages import (
    Challenge,
    Commitment,
    OpenedRow,
    OpeningRequest,
    OpeningResponse,
)


class ProverError(RuntimeError):
    """The prover cannot answer (no challenge in progress, wrong id, backend missing)."""


class Prover(ABC):
    """A proof-of-GPU backend. Subclasses implement `_run` and `_row`."""

    name: str = "abstract"

    def __init__(self) -> None:
        self._challenge: Challenge | None = None
        self._trees: list[MerkleTree] = []

    # -- backend hooks ------------------------------------------------------------------
    @abstractmethod
    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        """Compute X_0..X_T on the device, keep them, return (T+1, n, 16) row digests."""

    @abstractmethod
    def _row(self, step: int, index: int) -> bytes:
        """Row `index` of the kept matrix X_step, as n bytes."""

    def release(self) -> None:
        """Free device memory held for the last challenge."""
        self._challenge = None
        self._trees = []

    # -- protocol -----------------------------------------------------------------------
    def commit(self, challenge: Challenge) -> Commitment:
        self.release()
        start = time.perf_counter()
        digests = self._run(challenge)
        self._trees = build_trees(digests)
        self._challenge = challenge
        return Commitment(
            challenge_id=challenge.id,
            roots=tuple(t.root for t in self._trees),
            elapsed_s=round(time.perf_counter() - start, 6),
            backend=self.name,
        )

    def open(self, request: OpeningRequest) -> OpeningResponse:
        if self._challenge is None or request.challenge_id != self._challenge.id:
            raise ProverError("no committed challenge with this id")
        return assemble_opening(request, self._row, self._trees)


def build_trees(digests: npt.NDArray[np.uint8]) -> list[MerkleTree]:
    """One Merkle tree per committed matrix, over SHA-256 leaf hashes of row digests."""
    return [
        MerkleTree([hash_leaf(d.tobytes()) for d in step_digests]) for step_digests in digests
    ]


def assemble_opening(
    request: OpeningRequest, row: Callable[[int, int], bytes], trees: list[MerkleTree]
) -> OpeningResponse:
    rows = []
    for ref in request.rows:
        if ref.step >= len(trees) or ref.index >= trees[ref.step].leaf_count:
            raise ProverError(f"row {ref.index} of step {ref.step} does not exist")
        proof = trees[ref.step].proof(ref.index)
        rows.append(
            OpenedRow(step=ref.step, index=ref.index, data=row(ref.step, ref.index),
                      siblings=proof.siblings)
        )
    return OpeningResponse(challenge_id=request.challenge_id, rows=tuple(rows))
