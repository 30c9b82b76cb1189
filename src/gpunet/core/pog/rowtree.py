"""The commitment to one step: a SHA-256 Merkle tree whose leaves are chunks of row digests.

A leaf is CHUNK_ROWS consecutive 16-byte row digests (1 KiB), so a step of n rows has
n / 64 leaves. Why chunks and not one leaf per row: the root of every step is needed
*during* the chain (it chooses the next step's reference rows, see core.pog.derive), so
the host builds one tree per step while the device computes the next; with n / 64
leaves that is ~0.3 ms for n = 16384, instead of milliseconds of per-row hashing on the
critical path. An opened row then carries its whole chunk (1 KiB) plus the path from
that chunk up: the verifier digests the row, finds it at its place in the chunk, and
walks the chunk's path to the committed root.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpunet.core.merkle import MerkleProof, MerkleTree, hash_leaf, verify_proof
from gpunet.core.pog.digest import DIGEST_BYTES
from gpunet.core.pog.params import CHUNK_ROWS

CHUNK_BYTES = CHUNK_ROWS * DIGEST_BYTES


class StepTree:
    """One committed step: its row digests and the Merkle tree over their chunks."""

    __slots__ = ("_chunks", "_tree")

    def __init__(self, digests: npt.NDArray[np.uint8]) -> None:
        if digests.ndim != 2 or digests.shape[1] != DIGEST_BYTES:
            raise ValueError("row digests come as (n, 16) bytes")
        if digests.shape[0] % CHUNK_ROWS:
            raise ValueError(f"a step has a multiple of {CHUNK_ROWS} rows")
        flat = np.ascontiguousarray(digests).tobytes()
        self._chunks = [flat[i : i + CHUNK_BYTES] for i in range(0, len(flat), CHUNK_BYTES)]
        self._tree = MerkleTree([hash_leaf(c) for c in self._chunks])

    @property
    def root(self) -> bytes:
        return self._tree.root

    @property
    def rows(self) -> int:
        return len(self._chunks) * CHUNK_ROWS

    def opening(self, row: int) -> tuple[bytes, tuple[bytes | None, ...]]:
        """(the chunk holding row's digest, the sibling hashes from that chunk up)."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range")
        c = row // CHUNK_ROWS
        return self._chunks[c], self._tree.proof(c).siblings


def step_root(digests: npt.NDArray[np.uint8]) -> bytes:
    return StepTree(digests).root


def row_on_root(
    root: bytes,
    *,
    row: int,
    n: int,
    digest: bytes,
    chunk: bytes,
    siblings: Sequence[bytes | None],
) -> bool:
    """Whether a row with this digest sits at `row` under the committed `root`."""
    if len(chunk) != CHUNK_BYTES or len(digest) != DIGEST_BYTES:
        return False
    at = (row % CHUNK_ROWS) * DIGEST_BYTES
    if chunk[at : at + DIGEST_BYTES] != digest:
        return False
    proof = MerkleProof(index=row // CHUNK_ROWS, leaf_count=n // CHUNK_ROWS,
                        siblings=tuple(siblings))
    return verify_proof(root, hash_leaf(chunk), proof)
