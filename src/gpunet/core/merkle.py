"""Binary SHA-256 Merkle trees with proofs.

Used wherever gpunet publishes a commitment that someone else checks offline: the rows
a prover commits to before the coordinator names which to open, and the per-wallet
amounts of a reward snapshot.

Leaves and inner nodes are hashed with different one-byte prefixes (0x00 / 0x01), so an
inner node can never be presented as a leaf (the second-preimage trick against naive
trees). An odd node at the end of a level is promoted unchanged rather than duplicated,
so no two different leaf lists share a root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """The sibling hashes from a leaf up to the root; `None` marks a promoted level."""

    index: int
    leaf_count: int
    siblings: tuple[bytes | None, ...]


def _levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    if not leaf_hashes:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parent = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parent.append(level[-1])
        levels.append(parent)
    return levels


class MerkleTree:
    """A tree over already-hashed leaves (see `hash_leaf`)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._levels = _levels(leaf_hashes)

    @classmethod
    def from_data(cls, leaves: Sequence[bytes]) -> MerkleTree:
        return cls([hash_leaf(leaf) for leaf in leaves])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    @property
    def leaf_count(self) -> int:
        return len(self._levels[0])

    def proof(self, index: int) -> MerkleProof:
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf {index} out of range 0..{self.leaf_count - 1}")
        siblings: list[bytes | None] = []
        i = index
        for level in self._levels[:-1]:
            sibling = i ^ 1
            siblings.append(level[sibling] if sibling < len(level) else None)
            i //= 2
        return MerkleProof(index=index, leaf_count=self.leaf_count, siblings=tuple(siblings))


def root_from_proof(leaf_hash: bytes, proof: MerkleProof) -> bytes:
    """Recompute the root a proof leads to. Compare it with the published root."""
    if not 0 <= proof.index < proof.leaf_count:
        raise ValueError("proof index out of range")
    node, i, width = leaf_hash, proof.index, proof.leaf_count
    for sibling in proof.siblings:
        if sibling is None:
            # Promotion happens only for the last node of an odd-width level.
            if not (i == width - 1 and width % 2 == 1):
                raise ValueError("proof promotes a node that has a sibling")
        elif i % 2:
            node = hash_node(sibling, node)
        else:
            if i + 1 >= width:
                raise ValueError("proof names a sibling that does not exist")
            node = hash_node(node, sibling)
        i //= 2
        width = (width + 1) // 2
    if width != 1:
        raise ValueError("proof is too short for its leaf count")
    return node


def verify_proof(root: bytes, leaf_hash: bytes, proof: MerkleProof) -> bool:
    try:
        return root_from_proof(leaf_hash, proof) == root
    except ValueError:
        return False
