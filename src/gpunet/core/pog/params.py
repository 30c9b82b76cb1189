"""Challenge parameters: the shape of the work, nothing about time or money.

A challenge is a chain of T steps over n x n int8 matrices (see docs/proof-of-gpu.md):

    X_0        = PRF(seed, "x0")                                         (n x n, int8)
    X_{t+1}[j] = round(Bt[j] @ X_t^T) + X_{p_1(t,j)}[j] + ... + X_{p_k(t,j)}[j]  (mod 256)

where the k reference steps p_i(t, j) < t of every row j are drawn from the Merkle root
of X_t, i.e. known only once step t is complete. Only the last `read_steps` steps read
(k > 0): the steps before them build the working set, the read phase exercises it.
Every X_t is committed, so a prover keeps (T + 1) matrices plus B resident, and every
read step reads k n^2 bytes of them at places it learns only when the step starts:
that is the memory phase, and what makes it bind (a device with less must fetch or
recompute what it dropped, in time).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N = 65536  # keeps |int32 accumulators| <= 2^14 * n <= 2^30: no overflow, exact in fp64
MAX_STEPS = 4096
CHUNK_ROWS = 64  # row digests per Merkle leaf (see core.pog.rowtree)


class ChallengeParams(BaseModel):
    """Sizes of one challenge. Validated so every backend can run them exactly.

    Invariants: n is a multiple of 64 (int8 rows pack into 64-bit words, int8 GEMM
    kernels want dimensions that are multiples of 8/16, and CHUNK_ROWS row digests make
    one Merkle leaf); digest_width is a power of two
    (the digest tree halves it); 2^14 * n fits an int32 without overflow.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=64, le=MAX_N, description="matrix side")
    steps: int = Field(ge=1, le=MAX_STEPS, description="GEMM steps T; T+1 matrices committed")
    refs: int = Field(ge=0, le=64, description="older rows added into each row of a read step")
    read_steps: int = Field(
        ge=0, le=MAX_STEPS, description="the last steps, which read k older rows per row"
    )
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
        if self.read_steps > self.steps:
            raise ValueError("read_steps cannot exceed steps")
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

    def refs_at(self, step: int) -> int:
        """References per row of X_{step+1}: k in the read phase (the last `read_steps`
        steps, once the working set is built), none while it is being filled."""
        return self.refs if step >= max(1, self.steps - self.read_steps) else 0

    @property
    def ref_bytes_per_step(self) -> int:
        """Bytes of earlier steps one read step must read (k rows of n bytes per row)."""
        return self.refs * self.matrix_bytes

    @property
    def leaves_per_step(self) -> int:
        return self.n // CHUNK_ROWS

    @property
    def proof_depth(self) -> int:
        """Sibling hashes on a Merkle path of one step's tree."""
        return max(0, (self.leaves_per_step - 1).bit_length())

    @property
    def first_read_step(self) -> int:
        return max(1, self.steps - self.read_steps)

    @property
    def check_split(self) -> tuple[int, int]:
        """(checks in the read phase, checks in the fill phase), transition 0 aside:
        half each, or all that one phase has if it is shorter (see core.pog.openings)."""
        if self.checked_steps >= self.steps:
            return self.steps - self.first_read_step, self.first_read_step - 1
        read, fill = self.steps - self.first_read_step, self.first_read_step - 1
        want = self.checked_steps - 1
        in_read = min(read, want - min(fill, want // 2))
        return in_read, min(fill, want - in_read)

    @property
    def opened_rows_max(self) -> int:
        """Upper bound on rows sent back in one opening (before de-duplication): inputs
        and outputs of every check, plus k reference rows per output of a read check."""
        in_read, in_fill = self.check_split
        a = self.rows_per_check
        return (1 + in_fill) * 2 * a + in_read * (2 + self.refs) * a

    @property
    def checked_entries(self) -> int:
        """Entries of the chain recomputed exactly by the verifier."""
        return self.checked_steps * self.rows_per_check**2
