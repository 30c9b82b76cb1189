"""Deterministic derivation of a challenge's matrices and reference steps from its seed.

This module is the single definition of *what* a prover computes; backends only choose
*how* (NumPy, torch on CUDA/MPS/CPU). The verifier calls the same functions for the few
rows it needs, so a backend that agrees with this module on a small instance agrees
everywhere (the calibrate self-test and the cross-backend tests check exactly that).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.prf import (
    GAMMA,
    I8,
    LABEL_B,
    LABEL_D,
    LABEL_LEAF,
    LABEL_REFS,
    LABEL_X0,
    U64,
    derive_key,
    f_round,
    mix64,
    prf_rows,
)


@dataclass(frozen=True)
class ChallengeKeys:
    """The independent 64-bit stream keys of one challenge.

    X_0 and the digest's position keys always come from the device's own seed. B and D
    come from the roll-call seed when the coordinator challenged several devices together
    (so it derives D once for all of them), else from the device seed.
    """

    seed: bytes
    x0: int
    b: int
    d: int
    leaf: int

    @classmethod
    def from_seed(cls, seed: bytes, roll_call_seed: bytes | None = None) -> ChallengeKeys:
        if len(seed) < 16 or (roll_call_seed is not None and len(roll_call_seed) < 16):
            raise ValueError("a challenge seed has at least 128 bits")
        shared = roll_call_seed if roll_call_seed is not None else seed
        return cls(
            seed=seed,
            x0=derive_key(seed, LABEL_X0),
            b=derive_key(shared, LABEL_B),
            d=derive_key(shared, LABEL_D),
            leaf=derive_key(seed, LABEL_LEAF),
        )


def initial_rows(keys: ChallengeKeys, rows: npt.ArrayLike, n: int) -> I8:
    """Rows of X_0."""
    return prf_rows(keys.x0, rows, n)


def b_rows(keys: ChallengeKeys, rows: npt.ArrayLike, n: int) -> I8:
    """Rows of Bt (= columns of B). Row i of X_{t+1} is round(Bt[i] . X_t[j]) over j."""
    return prf_rows(keys.b, rows, n)


def d_matrix(keys: ChallengeKeys, params: ChallengeParams) -> I8:
    """Dt, the digest matrix (digest_width x n): a row's digest starts as Dt @ row."""
    return prf_rows(keys.d, np.arange(params.digest_width), params.n)


def leaf_keys(keys: ChallengeKeys, width: int) -> U64:
    """Per-position words added to the digest sketch before the tree (breaks symmetry)."""
    ctr = np.arange(1, width + 1, dtype=np.uint64)
    return mix64(np.uint64(keys.leaf) + ctr * np.uint64(GAMMA))


def refs_key(seed: bytes, step: int, root: bytes) -> int:
    """The stream key of step `step`'s reference draws: from the root of X_step itself."""
    msg = LABEL_REFS + seed + step.to_bytes(4, "little") + root
    return int.from_bytes(hashlib.sha256(msg).digest()[:8], "little")


def row_refs(seed: bytes, step: int, root: bytes, rows: npt.ArrayLike, k: int) -> U64:
    """(len(rows), k) reference steps p < step of each row j of X_{step+1}.

    Row j of X_{step+1} adds row j of each X_p. The draws come from the Merkle root of
    X_step, so a prover learns where step+1 reads only once step is complete: it cannot
    fetch evicted matrices ahead of time, and grinding the root does not help it either,
    since each of the n rows draws its own k steps (it cannot make all of them land on
    what it kept). Step 0 has nothing older: no references. `p = (hi32(w) * step) >> 32`
    maps a uniform 32-bit word onto 0..step-1 (bias < step / 2^32).
    """
    r = np.asarray(rows, dtype=np.uint64).reshape(-1)
    if step == 0 or k == 0:
        return np.zeros((r.size, 0), dtype=np.uint64)
    ctr = np.asarray(r[:, np.newaxis] * np.uint64(k), dtype=np.uint64) + np.arange(
        1, k + 1, dtype=np.uint64
    )
    w = mix64(np.asarray(np.uint64(refs_key(seed, step, root)) + ctr * np.uint64(GAMMA),
                         dtype=np.uint64))
    return ((w >> np.uint64(32)) * np.uint64(step)) >> np.uint64(32)


def add_refs(fresh: I8, history: npt.NDArray[np.int8], refs: U64, rows: npt.ArrayLike) -> I8:
    """fresh + sum of row j of X_p over each row's references, wrapping mod 256.

    Addition rather than XOR so that a step drawn twice for one row does not cancel.
    `history` is X_0.. stacked (steps, n, n): one gather per reference.
    """
    out = fresh.copy()
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    for col in range(refs.shape[1]):
        out += history[refs[:, col].astype(np.int64), r]
    return out


class Derivation:
    """Cached per-challenge derived material for a NumPy backend or the verifier.

    With a roll-call seed, one Derivation's D can serve every device of the roll-call
    (`with_seed`), which is most of the verifier's derivation work.
    """

    def __init__(
        self, seed: bytes, params: ChallengeParams, roll_call_seed: bytes | None = None
    ) -> None:
        self.seed = seed
        self.roll_call_seed = roll_call_seed
        self.params = params
        self.keys = ChallengeKeys.from_seed(seed, roll_call_seed)

    @classmethod
    def for_challenge(cls, challenge: Challenge) -> Derivation:
        return cls(challenge.seed, challenge.params, challenge.roll_call_seed)

    def with_seed(self, seed: bytes) -> Derivation:
        """The same roll-call material (cached D) for another device's seed."""
        other = Derivation(seed, self.params, self.roll_call_seed)
        if self.roll_call_seed is not None:  # D depends on the roll-call seed only
            other.__dict__["dt"] = self.dt
            other.__dict__["dt_f32"] = self.dt_f32
        return other

    def matches(self, challenge: Challenge) -> bool:
        return (
            self.params == challenge.params
            and self.keys == ChallengeKeys.from_seed(challenge.seed, challenge.roll_call_seed)
        )

    @cached_property
    def dt(self) -> I8:
        return d_matrix(self.keys, self.params)

    @cached_property
    def dt_f32(self) -> npt.NDArray[np.float32]:
        """Dt as float32, the form the exact sketch product consumes."""
        return self.dt.astype(np.float32)

    @cached_property
    def leaf(self) -> U64:
        return leaf_keys(self.keys, self.params.digest_width)


def step_rows(bt_rows: I8, x_t: I8) -> I8:
    """Rows of round(Bt[rows] @ X_t^T): the fresh part of rows of X_{t+1}."""
    return f_round(exact_products(bt_rows, x_t))
