"""Dishonest provers, each modelling one attack honestly (they really skip or fake work)."""

from __future__ import annotations

import numpy as np

from gpunet.agent.provers.base import Prover
from gpunet.agent.provers.cpu import CpuProver, run_chain
from gpunet.core.pog.derive import Derivation, add_refs, b_rows, initial_rows, row_refs
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.prf import I8, f_round
from gpunet.core.pog.rowtree import StepTree


class SkippingProver(CpuProver):
    """Computes only (1 - fraction) of the rows of every step; the rest are random bytes.

    Later steps are computed honestly from the faked matrices, so every skipped row is
    the *only* inconsistency: the cheapest possible way to save that much work.
    """

    def __init__(self, fraction: float, rng_seed: int = 7) -> None:
        super().__init__()
        self.fraction = fraction
        self.rng = np.random.default_rng(rng_seed)
        self.rows_computed = 0

    def _run(self, challenge: Challenge) -> list[StepTree]:
        p = challenge.params
        d = Derivation.for_challenge(challenge)
        n, rows = p.n, np.arange(p.n)
        x = np.empty((p.steps + 1, n, n), dtype=np.int8)
        x[0] = initial_rows(d.keys, rows, n)
        trees = [StepTree(row_digests(x[0], d.dt, d.leaf))]
        bt = b_rows(d.keys, rows, n)
        for t in range(p.steps):
            skipped = self.rng.random(n) < self.fraction
            fresh = self.rng.integers(-128, 128, (n, n), dtype=np.int8)
            keep = np.flatnonzero(~skipped)
            fresh[keep] = f_round(exact_products(bt[keep], x[t]))
            self.rows_computed += keep.size
            refs = row_refs(d.seed, t, trees[t].root, rows, p.refs_at(t))
            x[t + 1] = add_refs(fresh, x, refs, rows)
            trees.append(StepTree(row_digests(x[t + 1], d.dt, d.leaf)))
        self._x = x
        return trees


class GarbageProver(CpuProver):
    """Answers at once with random matrices, committed consistently (its tree is honest
    about its garbage, the best a garbage answer can do)."""

    def _run(self, challenge: Challenge) -> list[StepTree]:
        p = challenge.params
        d = Derivation.for_challenge(challenge)
        rng = np.random.default_rng(1)
        self._x = [rng.integers(-128, 128, (p.n, p.n), dtype=np.int8) for _ in range(p.steps + 1)]
        return [StepTree(row_digests(m, d.dt, d.leaf)) for m in self._x]


class ReplayProver(Prover):
    """Keeps the matrices of an earlier honest answer and serves them for a new challenge."""

    name = "replay"

    def __init__(self, earlier: CpuProver) -> None:
        super().__init__()
        self._earlier = earlier

    def _run(self, challenge: Challenge) -> list[StepTree]:
        d = Derivation.for_challenge(challenge)
        return [StepTree(row_digests(m, d.dt, d.leaf)) for m in self._earlier._x]

    def _row(self, step: int, index: int) -> bytes:
        return self._earlier._row(step, index)


def honest_matrices(challenge: Challenge) -> list[I8]:
    return run_chain(Derivation.for_challenge(challenge))[0]
