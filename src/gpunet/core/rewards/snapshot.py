"""The published payout snapshot of an epoch: a Merkle root over per-wallet amounts.

Leaf encoding (exact bytes, hashed with `gpunet.core.merkle.hash_leaf`, i.e. with a 0x00
prefix):

    b"gpunet/payout/v1"            16 bytes, ASCII tag
    epoch                           8 bytes, unsigned big-endian
    len(wallet)                     1 byte  (1..128)
    wallet                          len(wallet) bytes, ASCII
    amount                          32 bytes, unsigned big-endian (base units)

Leaves are the wallets with a positive amount, sorted ascending by wallet bytes, so the
root depends only on the (epoch, wallet, amount) set. An epoch where nothing is paid has
the root ``32 zero bytes``, which no proof can reach. A supplier checks a payout offline
with `verify_payout` against the published root.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpunet.core.errors import InvalidInput
from gpunet.core.merkle import MerkleProof, MerkleTree, hash_leaf, verify_proof
from gpunet.core.rewards.allocation import Allocation, valid_wallet

LEAF_TAG = b"gpunet/payout/v1"
EMPTY_ROOT = bytes(32)
MAX_PROOF_DEPTH = 64


def encode_leaf(epoch: int, wallet: str, amount: int) -> bytes:
    """Canonical leaf bytes (see module doc); raises on out-of-range fields."""
    wb = wallet.encode("ascii")
    if not 1 <= len(wb) <= 128:
        raise InvalidInput("wallet must be 1..128 ASCII bytes")
    return (LEAF_TAG + epoch.to_bytes(8, "big") + len(wb).to_bytes(1, "big") + wb
            + amount.to_bytes(32, "big"))


@dataclass(frozen=True, slots=True)
class PayoutProof:
    """Everything a supplier needs besides the root to check one payout."""

    epoch: int
    wallet: str
    amount: int
    index: int
    leaf_count: int
    siblings: tuple[bytes | None, ...]

    @property
    def merkle(self) -> MerkleProof:
        return MerkleProof(index=self.index, leaf_count=self.leaf_count, siblings=self.siblings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amount as a decimal string, siblings as hex (null where promoted)."""
        return {
            "epoch": self.epoch,
            "wallet": self.wallet,
            "amount": str(self.amount),
            "index": self.index,
            "leaf_count": self.leaf_count,
            "siblings": [s.hex() if s is not None else None for s in self.siblings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PayoutProof:
        """Strict parse: unknown fields, wrong types or malformed hex are rejected."""
        keys = {"epoch", "wallet", "amount", "index", "leaf_count", "siblings"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise InvalidInput(f"a payout proof has exactly the fields {sorted(keys)}")
        epoch, wallet, amount = data["epoch"], data["wallet"], data["amount"]
        index, count, sibs = data["index"], data["leaf_count"], data["siblings"]
        if type(epoch) is not int or not 0 <= epoch < 2**64:
            raise InvalidInput("proof epoch out of range")
        if not valid_wallet(wallet):
            raise InvalidInput("proof wallet is not a valid wallet")
        if not isinstance(amount, str) or not amount.isdigit() or len(amount) > 78:
            raise InvalidInput("proof amount must be a decimal string")
        if type(index) is not int or type(count) is not int or not 0 <= index < count < 2**63:
            raise InvalidInput("proof index out of range")
        if not isinstance(sibs, list) or len(sibs) > MAX_PROOF_DEPTH:
            raise InvalidInput("proof siblings must be a list of at most 64")
        siblings: list[bytes | None] = []
        for s in sibs:
            if s is None:
                siblings.append(None)
            elif isinstance(s, str) and len(s) == 64:
                try:
                    siblings.append(bytes.fromhex(s))
                except ValueError:
                    raise InvalidInput("proof sibling is not hex") from None
            else:
                raise InvalidInput("proof sibling must be 64 hex characters or null")
        return cls(epoch, wallet, int(amount), index, count, tuple(siblings))

    @classmethod
    def from_json(cls, text: str | bytes) -> PayoutProof:
        if len(text) > 16_384:
            raise InvalidInput("proof is too large")
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidInput("proof is not valid JSON") from None
        return cls.from_dict(data)


def verify_payout(
    root: bytes | str, epoch: int, wallet: str, amount: int, proof: PayoutProof | MerkleProof
) -> bool:
    """True iff (epoch, wallet, amount) is a leaf under `root` at the proof's position.

    Never raises on malformed input; anything that does not check out is False.
    """
    try:
        root_bytes = bytes.fromhex(root) if isinstance(root, str) else root
        if isinstance(proof, PayoutProof):
            proof = proof.merkle
        if len(root_bytes) != 32 or amount < 0 or epoch < 0:
            return False
        leaf = hash_leaf(encode_leaf(epoch, wallet, amount))
        return verify_proof(root_bytes, leaf, proof)
    except (ValueError, OverflowError, TypeError, AttributeError, InvalidInput):
        return False


class Snapshot:
    """Root and proofs for one epoch's payouts. Build with `build_snapshot`."""

    __slots__ = ("_tree", "amounts", "emission", "epoch", "root", "unallocated", "wallets")

    def __init__(self, epoch: int, emission: int, unallocated: int,
                 wallets: list[str], amounts: list[int]) -> None:
        self.epoch = epoch
        self.emission = emission
        self.unallocated = unallocated
        self.wallets = wallets
        self.amounts = amounts
        prefix = LEAF_TAG + epoch.to_bytes(8, "big")
        leaves = []
        for w, a in zip(wallets, amounts, strict=True):
            wb = w.encode("ascii")
            if not 1 <= len(wb) <= 128 or a <= 0:
                raise InvalidInput("snapshot entries need a 1..128 byte wallet and amount > 0")
            leaves.append(hash_leaf(prefix + len(wb).to_bytes(1, "big") + wb
                                    + a.to_bytes(32, "big")))
        self._tree = MerkleTree(leaves) if leaves else None
        self.root = self._tree.root if self._tree else EMPTY_ROOT

    def index_of(self, wallet: str) -> int | None:
        i = bisect.bisect_left(self.wallets, wallet)
        return i if i < len(self.wallets) and self.wallets[i] == wallet else None

    def proof(self, wallet: str) -> PayoutProof:
        """The proof for `wallet`; raises KeyError when it is paid nothing this epoch."""
        i = self.index_of(wallet)
        if i is None or self._tree is None:
            raise KeyError(wallet)
        p = self._tree.proof(i)
        return PayoutProof(self.epoch, wallet, self.amounts[i], p.index, p.leaf_count,
                           p.siblings)

    def summary(self) -> dict[str, Any]:
        """What the coordinator publishes for the epoch (amounts as decimal strings)."""
        return {
            "epoch": self.epoch,
            "root": self.root.hex(),
            "emission": str(self.emission),
            "paid": str(self.emission - self.unallocated),
            "unallocated": str(self.unallocated),
            "wallets": len(self.wallets),
        }


def build_snapshot(allocation: Allocation) -> Snapshot:
    """Canonical snapshot of an allocation (wallets sorted, zero amounts dropped)."""
    wallets = [w for w, a in allocation.payouts.items() if a]
    if any(a >= b for a, b in itertools.pairwise(wallets)):
        wallets.sort()
    amounts = [allocation.payouts[w] for w in wallets]
    if sum(amounts) + allocation.unallocated != allocation.emission:
        raise InvalidInput("allocation does not sum to its emission")
    return Snapshot(allocation.epoch, allocation.emission, allocation.unallocated,
                    wallets, amounts)


def snapshot_from_payouts(
    epoch: int, emission: int, payouts: Mapping[str, int], unallocated: int = 0
) -> Snapshot:
    """Rebuild a published snapshot from stored payouts (e.g. to serve proofs later);
    gives the same root as the original close."""
    return build_snapshot(Allocation(epoch, emission, dict(payouts), unallocated, 0))
