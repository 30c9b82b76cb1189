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


def ref_steps(seed: bytes, params: ChallengeParams) -> tuple[tuple[int, ...], ...]:
    """For each step t, the distinct older steps p < t whose matrices are XORed into X_{t+1}.

    Step 0 has none (only X_0 exists). Drawn from SHA-256 of the seed, so a prover knows
    them at the start, which is fine: the point is that *old* matrices must stay resident
    (or be streamed back over the host link) while the chain runs.
    """
    out: list[tuple[int, ...]] = []
    for t in range(params.steps):
        want = min(params.refs, t)
        chosen: list[int] = []
        ctr = 0
        while len(chosen) < want:
            msg = LABEL_REFS + seed + t.to_bytes(4, "little") + ctr.to_bytes(4, "little")
            h = hashlib.sha256(msg)
            p = int.from_bytes(h.digest()[:8], "little") % t
            ctr += 1
            if p not in chosen:
                chosen.append(p)
        out.append(tuple(sorted(chosen)))
    return tuple(out)


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
    def refs(self) -> tuple[tuple[int, ...], ...]:
        return ref_steps(self.seed, self.params)

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
