"""The one interface every proof-of-GPU backend implements, and the host-side plumbing
they share (Merkle trees over device digests, assembling openings).

A prover answers one challenge at a time: `commit` runs the whole chain on the device and
returns the roots; `open` answers the coordinator's row request from what it kept. The
matrices stay on the device between the two calls: keeping them is the memory phase.
The root of each step is needed while the chain runs (it chooses the next step's
reference rows), so backends build each step's tree (core.pog.rowtree) as they go.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from gpunet.core.pog.messages import (
    Challenge,
    Commitment,
    OpenedRow,
    OpeningRequest,
    OpeningResponse,
)
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.rowtree import StepTree


class ProverError(RuntimeError):
    """The prover cannot answer (no challenge in progress, wrong id, backend missing)."""


class Prover(ABC):
    """A proof-of-GPU backend. Subclasses implement `_run` and `_row`."""

    name: str = "abstract"

    def __init__(self) -> None:
        self._challenge: Challenge | None = None
        self._trees: list[StepTree] = []

    # -- backend hooks ------------------------------------------------------------------
    @abstractmethod
    def _run(self, challenge: Challenge) -> list[StepTree]:
        """Compute X_0..X_T on the device, keep them, return the tree of every step."""

    @abstractmethod
    def _row(self, step: int, index: int) -> bytes:
        """Row `index` of the kept matrix X_step, as n bytes."""

    def warm_up(self, params: ChallengeParams) -> None:
        """Pay one-time costs for challenges of this size now, not inside a budget
        (backends with nothing to prepare keep this default)."""
        return None

    def release(self) -> None:
        """Free device memory held for the last challenge."""
        self._challenge = None
        self._trees = []

    # -- protocol -----------------------------------------------------------------------
    def commit(self, challenge: Challenge) -> Commitment:
        self.release()
        start = time.perf_counter()
        self._trees = self._run(challenge)
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


def assemble_opening(
    request: OpeningRequest, row: Callable[[int, int], bytes], trees: list[StepTree]
) -> OpeningResponse:
    rows = []
    for ref in request.rows:
        if ref.step >= len(trees) or ref.index >= trees[ref.step].rows:
            raise ProverError(f"row {ref.index} of step {ref.step} does not exist")
        chunk, siblings = trees[ref.step].opening(ref.index)
        rows.append(
            OpenedRow(step=ref.step, index=ref.index, data=row(ref.step, ref.index),
                      chunk=chunk, siblings=siblings)
        )
    return OpeningResponse(challenge_id=request.challenge_id, rows=tuple(rows))
