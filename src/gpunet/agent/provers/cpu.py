"""NumPy prover: the reference backend for development, CI and the cpu-dev profile.

It runs the chain with float64 BLAS, which is exact for these sizes (all partial sums are
integers far below 2^53), and is therefore byte-identical to every other backend.
"""

from __future__ import annotations

import numpy as np

from gpunet.agent.provers.base import Prover, ProverError
from gpunet.core.pog.derive import (
    Derivation,
    add_refs,
    b_rows,
    initial_rows,
    row_refs,
    step_rows,
)
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.prf import I8
from gpunet.core.pog.rowtree import StepTree


def run_chain(d: Derivation) -> tuple[I8, list[StepTree]]:
    """X_0..X_T stacked (T+1, n, n), and their trees (reference; all in host memory)."""
    n, steps = d.params.n, d.params.steps
    rows = np.arange(n)
    x = np.empty((steps + 1, n, n), dtype=np.int8)
    x[0] = initial_rows(d.keys, rows, n)
    trees = [StepTree(row_digests(x[0], d.dt, d.leaf))]
    bt = b_rows(d.keys, rows, n)
    for t in range(steps):
        refs = row_refs(d.seed, t, trees[t].root, rows, d.params.refs_at(t))
        x[t + 1] = add_refs(step_rows(bt, x[t]), x, refs, rows)
        trees.append(StepTree(row_digests(x[t + 1], d.dt, d.leaf)))
    return x, trees


class CpuProver(Prover):
    name = "cpu"

    def __init__(self) -> None:
        super().__init__()
        self._x: list[I8] | I8 = []

    def release(self) -> None:
        super().release()
        self._x = []

    def _run(self, challenge: Challenge) -> list[StepTree]:
        self._x, trees = run_chain(Derivation.for_challenge(challenge))
        return trees

    def _row(self, step: int, index: int) -> bytes:
        if step >= len(self._x):
            raise ProverError("step not kept")
        return self._x[step][index].tobytes()
