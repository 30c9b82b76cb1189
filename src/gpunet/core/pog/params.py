"""Challenge parameters: the shape of the work, nothing about time or money.

A challenge is a chain of T steps over n x n int8 matrices (see docs/proof-of-gpu.md):

    X_0      = PRF(seed, "x0")                                   (n x n, int8)
    X_{t+1}  = round(B^T-rows @ X_t^T)  XOR  X_{p_1(t)} XOR ...   (k older steps)

Every X_t is committed (Merkle root over per-row digests), so a prover keeps
(T + 1) matrices plus B resident: that is the memory phase.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N = 65536  # keeps |int32 accumulators| <= 2^14 * n <= 2^30: no overflow, exact in fp64
MAX_STEPS = 256


class ChallengeParams(BaseModel):
    """Sizes of one challenge. Validated so every backend can run them exactly.

    Invariants: n is a multiple of 64 (int8 rows pack into 64-bit words, and int8 GEMM
    kernels want dimensions that are multiples of 8/16); digest_width is a power of two
    (the digest tree halves it); 2^14 * n fits an int32 without overflow.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=64, le=MAX_N, description="matrix side")
    steps: int = Field(ge=1, le=MAX_STEPS, description="GEMM steps T; T+1 matrices committed")
    refs: int = Field(ge=0, le=4, description="older steps XORed into each new one")
    # >= 32: the digest GEMM has digest_width as its M, and int8 kernels want M > 16.
    digest_width: int = Field(ge=32, le=1024, description="rows of the digest matrix Dt")
    rows_per_check: int = Field(ge=1, le=64, description="rows opened per side of a check")
    checked_steps: int = Field(ge=1, le=MAX_STEPS, description="transitions opened")

    @model_validator(mode="after")
    def _shape(self) -> ChallengeParams:
        if self.n % 64:
            raise ValueError("n must be a multiple of 64")
        w = self.digest_width
        if w & (w - 1) or w > self.n:
            raise ValueError("digest_width must be a power of two no larger than n")
        if self.checked_steps > self.steps:
            raise ValueError("checked_steps cannot exceed steps")
        if self.rows_per_check > self.n:
            raise ValueError("rows_per_check cannot exceed n")
        return self

    @property
    def matrix_bytes(self) -> int:
        return self.n * self.n

    @property
    def resident_bytes(self) -> int:
        """Device memory an honest prover holds: X_0..X_T and B (scratch not counted)."""
        return (self.steps + 2) * self.matrix_bytes

    @property
    def gemm_ops(self) -> int:
        """int8 operations (2 per multiply-add) of the chain proper."""
        return self.steps * 2 * self.n**3

    @property
    def digest_ops(self) -> int:
        """int8 operations of the digest products (rows @ D for every committed row)."""
        return (self.steps + 1) * 2 * self.n * self.n * self.digest_width

    @property
    def total_ops(self) -> int:
        return self.gemm_ops + self.digest_ops

    @property
    def opened_rows_max(self) -> int:
        """Upper bound on rows sent back in one opening (before de-duplication)."""
        return self.checked_steps * self.rows_per_check * (2 + self.refs)

    @property
    def checked_entries(self) -> int:
        """Entries of the chain recomputed exactly by the verifier."""
        return self.checked_steps * self.rows_per_check**2
