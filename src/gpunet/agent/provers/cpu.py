"""NumPy prover: the reference backend for development, CI and the cpu-dev profile.

It runs the chain with float64 BLAS, which is exact for these sizes (all partial sums are
integers far below 2^53), and is therefore byte-identical to every other backend.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gpunet.agent.provers.base import Prover, ProverError
from gpunet.core.pog.derive import Derivation, b_rows, initial_rows, step_rows
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.prf import I8


def run_chain(d: Derivation) -> list[I8]:
    """X_0..X_T for a challenge (reference; holds everything in host memory)."""
    n, steps = d.params.n, d.params.steps
    rows = np.arange(n)
    x = [initial_rows(d.keys, rows, n)]
    bt = b_rows(d.keys, rows, n)
    for t in range(steps):
        nxt = step_rows(bt, x[t])
        for p in d.refs[t]:
            nxt ^= x[p]
        x.append(nxt)
    return x


class CpuProver(Prover):
    name = "cpu"

    def __init__(self) -> None:
        super().__init__()
        self._x: list[I8] = []

    def release(self) -> None:
        super().release()
        self._x = []

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        d = Derivation.for_challenge(challenge)
        self._x = run_chain(d)
        return np.stack([row_digests(x, d.dt, d.leaf) for x in self._x])

    def _row(self, step: int, index: int) -> bytes:
        if step >= len(self._x):
            raise ProverError("step not kept")
        return self._x[step][index].tobytes()
