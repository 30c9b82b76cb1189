"""Dishonest provers, each modelling one attack honestly (they really skip or fake work)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gpunet.agent.provers.base import Prover, ProverError
from gpunet.agent.provers.cpu import CpuProver, run_chain
from gpunet.core.pog.derive import Derivation, b_rows, initial_rows
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.prf import I8, f_round


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

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        p = challenge.params
        d = Derivation.for_challenge(challenge)
        n = p.n
        x = [initial_rows(d.keys, np.arange(n), n)]
        bt = b_rows(d.keys, np.arange(n), n)
        for t in range(p.steps):
            skipped = self.rng.random(n) < self.fraction
            nxt = self.rng.integers(-128, 128, (n, n), dtype=np.int8)
            keep = np.flatnonzero(~skipped)
            nxt[keep] = f_round(exact_products(bt[keep], x[t]))
            self.rows_computed += keep.size
            for q in d.refs[t]:
                nxt ^= x[q]
            x.append(nxt)
        self._x = x
        return np.stack([row_digests(m, d.dt, d.leaf) for m in x])


class GarbageProver(CpuProver):
    """Answers at once with random matrices, committed consistently (its tree is honest
    about its garbage, the best a garbage answer can do)."""

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        p = challenge.params
        d = Derivation.for_challenge(challenge)
        rng = np.random.default_rng(1)
        self._x = [rng.integers(-128, 128, (p.n, p.n), dtype=np.int8) for _ in range(p.steps + 1)]
        return np.stack([row_digests(m, d.dt, d.leaf) for m in self._x])


class ReplayProver(Prover):
    """Keeps the matrices of an earlier honest answer and serves them for a new challenge."""

    name = "replay"

    def __init__(self, earlier: CpuProver) -> None:
        super().__init__()
        self._earlier = earlier

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        old = self._earlier._x
        d = Derivation.for_challenge(challenge)
        return np.stack([row_digests(m, d.dt, d.leaf) for m in old])

    def _row(self, step: int, index: int) -> bytes:
        return self._earlier._row(step, index)


class MemoryLimitedProver(CpuProver):
    """A device holding only `capacity` matrices (the claimed model needs T + 2).

    It computes the honest chain, recomputing from X_0 any evicted matrix a step refers
    to (each recomputed step counted in `steps_run`), and keeps only the newest matrices.
    At opening time it cannot produce evicted rows without recomputing; `recompute_on_open`
    chooses between recomputing (counted) and answering zeros.
    """

    def __init__(self, capacity: int, recompute_on_open: bool = False) -> None:
        super().__init__()
        self.capacity = capacity
        self.recompute_on_open = recompute_on_open
        self.steps_run = 0
        self.open_steps_run = 0
        self._kept: dict[int, I8] = {}
        self._d: Derivation | None = None

    def _rebuild(self, d: Derivation, upto: int) -> I8:
        """X_upto from scratch (what a device without the memory must do)."""
        p = d.params
        n = p.n
        x = [initial_rows(d.keys, np.arange(n), n)]
        bt = b_rows(d.keys, np.arange(n), n)
        for t in range(upto):
            nxt = f_round(exact_products(bt, x[t]))
            for q in d.refs[t]:
                nxt ^= x[q]
            x.append(nxt)
        return x[upto]

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        p = challenge.params
        d = self._d = Derivation.for_challenge(challenge)
        n = p.n
        bt = b_rows(d.keys, np.arange(n), n)
        self._kept = {0: initial_rows(d.keys, np.arange(n), n)}
        digests = [row_digests(self._kept[0], d.dt, d.leaf)]
        for t in range(p.steps):
            nxt = f_round(exact_products(bt, self._kept[t]))
            self.steps_run += 1
            for q in d.refs[t]:
                if q in self._kept:
                    ref = self._kept[q]
                else:
                    ref = self._rebuild(d, q)
                    self.steps_run += q
                nxt ^= ref
            self._kept[t + 1] = nxt
            digests.append(row_digests(nxt, d.dt, d.leaf))
            # capacity counts B as well: keep capacity - 1 matrices
            while len(self._kept) > self.capacity - 1:
                del self._kept[min(self._kept)]
        return np.stack(digests)

    def _row(self, step: int, index: int) -> bytes:
        if step in self._kept:
            return self._kept[step][index].tobytes()
        if not self.recompute_on_open:
            return bytes(len(next(iter(self._kept.values()))[index]))
        if self._d is None:
            raise ProverError("no challenge")
        self.open_steps_run += step
        return self._rebuild(self._d, step)[index].tobytes()


def honest_matrices(challenge: Challenge) -> list[I8]:
    return run_chain(Derivation.for_challenge(challenge))
