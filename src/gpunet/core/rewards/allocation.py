"""Split one epoch's emission between wallets, exactly, in integers.

Score of a device = ``weight(model) * (plain_slots + bonus * cluster_slots)`` where
``cluster_slots`` (slots served inside a customer's cluster) is part of ``slots`` and
``plain_slots = slots - cluster_slots``. Weights and the bonus are exact rationals: an
``int`` means basis points (10000 = 1.0), a `Fraction` is taken as is; no floats.
A wallet's score is the sum over its devices. Unknown models weigh 0.

With ``S`` the total score and ``E`` the emission, wallet ``w`` gets
``floor(E * s_w / S)`` plus one unit if it is among the ``L = E - sum(floors)`` wallets
with the largest remainders ``E * s_w mod S``; equal remainders are ordered by
``SHA-256(b"gpunet/tiebreak/v1" || epoch as 8-byte big-endian || wallet ASCII)``,
smallest digest first (largest-remainder method).

Invariants: ``sum(payouts) + unallocated == emission`` always; ``unallocated == 0``
whenever some device has a positive score, and ``== emission`` otherwise (nothing is
paid; the coordinator reports it, it is not carried over). The result depends only on
the multiset of inputs, never on their order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import NamedTuple

from gpunet.core.errors import InvalidInput
from gpunet.core.rewards.clock import MAX_SLOTS_PER_EPOCH
from gpunet.core.rewards.emission import MAX_AMOUNT

Weight = int | Fraction
"""An exact multiplier: an int is basis points (10000 = 1.0), a Fraction is literal."""

BASIS_POINTS = 10_000
MAX_WEIGHT = Fraction(1000)
MAX_BONUS = Fraction(100)
MAX_DENOMINATOR = 10**9
TIEBREAK_TAG = b"gpunet/tiebreak/v1"
WALLET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class DeviceUptime(NamedTuple):
    """One device's verified uptime in an epoch, as the allocation needs it."""

    wallet: str
    model: str
    slots: int
    cluster_slots: int = 0


@dataclass(frozen=True, slots=True)
class Allocation:
    """Per-wallet amounts (positive only, sorted by wallet) and what was not paid."""

    epoch: int
    emission: int
    payouts: dict[str, int]
    unallocated: int
    total_score: int


def as_fraction(value: Weight, what: str, upper: Fraction) -> Fraction:
    """Exact value of a weight; rejects floats, bools, negatives and huge denominators."""
    if isinstance(value, bool) or not isinstance(value, int | Fraction):
        raise InvalidInput(f"{what} must be an int (basis points) or a Fraction")
    frac = Fraction(value, BASIS_POINTS) if isinstance(value, int) else value
    if not 0 <= frac <= upper or frac.denominator > MAX_DENOMINATOR:
        raise InvalidInput(f"{what} must be within 0..{upper} with a bounded denominator")
    return frac


def valid_wallet(wallet: object) -> bool:
    """1..128 characters from ``A-Z a-z 0-9 . _ : -``, not starting with punctuation."""
    return isinstance(wallet, str) and WALLET_PATTERN.fullmatch(wallet) is not None


def scaled_weights(weights: Mapping[str, Weight]) -> dict[str, int]:
    """Weights as integers over their least common denominator (same ratios, exact)."""
    fracs = {model: as_fraction(w, f"weight of {model!r}", MAX_WEIGHT)
             for model, w in weights.items()}
    denominator = lcm(*(f.denominator for f in fracs.values())) if fracs else 1
    return {model: int(f * denominator) for model, f in fracs.items()}


def tiebreak_key(epoch: int, wallet: str) -> bytes:
    return hashlib.sha256(TIEBREAK_TAG + epoch.to_bytes(8, "big") + wallet.encode()).digest()


def wallet_scores(
    devices: Iterable[DeviceUptime],
    weights: Mapping[str, Weight],
    bonus: Weight = BASIS_POINTS,
    slots_per_epoch: int = MAX_SLOTS_PER_EPOCH,
) -> dict[str, int]:
    """Integer score per wallet (only wallets with a positive score)."""
    scaled = scaled_weights(weights)
    b = as_fraction(bonus, "bonus", MAX_BONUS)
    if b < 1:
        raise InvalidInput("bonus must be at least 1")
    p, q = b.numerator, b.denominator
    scores: dict[str, int] = {}
    get = scores.get
    weight_of = scaled.get
    for wallet, model, slots, cluster in devices:
        if (type(slots) is not int or type(cluster) is not int
                or not 0 <= cluster <= slots <= slots_per_epoch):
            raise InvalidInput("slots must satisfy 0 <= cluster_slots <= slots <= epoch")
        w = weight_of(model, 0)
        if w and slots:
            scores[wallet] = get(wallet, 0) + w * ((slots - cluster) * q + cluster * p)
    for wallet in scores:
        if not valid_wallet(wallet):
            raise InvalidInput("invalid wallet address", wallet=str(wallet)[:140])
    return scores


def split(epoch: int, emission: int, scores: Mapping[str, int]) -> Allocation:
    """Largest-remainder split of `emission` in proportion to `scores` (see module doc)."""
    if type(epoch) is not int or not 0 <= epoch < 2**64:
        raise InvalidInput("epoch must be an integer within 0..2**64-1")
    if type(emission) is not int or not 0 <= emission <= MAX_AMOUNT:
        raise InvalidInput("emission must be an integer within 0..MAX_AMOUNT")
    positive = scores if not scores or min(scores.values()) > 0 else {
        w: s for w, s in scores.items() if s > 0}
    total = sum(positive.values())
    if total == 0:
        return Allocation(epoch, emission, {}, emission, 0)
    wallets = sorted(positive)
    weights = list(map(positive.__getitem__, wallets))
    # floor(E*s/S) == qE*s + floor(rE*s/S) with E == qE*S + rE: smaller operands, and
    # lists of ints only (no tuples), which keeps the garbage collector out of the loop.
    q_e, r_e = divmod(emission, total)
    partial = [r_e * s for s in weights]
    amounts = [q_e * s + p // total for s, p in zip(weights, partial, strict=True)]
    remainders = [p % total for p in partial]
    del partial
    leftover = emission - sum(amounts)
    if leftover:
        # The leftover-th largest remainder is the cut: every wallet above it gets a
        # unit, and only wallets exactly at it need the hash tie-break.
        threshold = sorted(remainders, reverse=True)[leftover - 1]
        above = [i for i, r in enumerate(remainders) if r > threshold]
        tied = [i for i, r in enumerate(remainders) if r == threshold]
        need = leftover - len(above)
        if need < len(tied):
            prefix = hashlib.sha256(TIEBREAK_TAG + epoch.to_bytes(8, "big"))

            def key(i: int) -> bytes:  # == tiebreak_key(epoch, wallets[i]), cheaper
                h = prefix.copy()
                h.update(wallets[i].encode())
                return h.digest()

            tied.sort(key=key)
        for i in above:
            amounts[i] += 1
        for i in tied[:need]:
            amounts[i] += 1
    payouts = dict(zip(wallets, amounts, strict=True))
    if 0 in amounts:
        payouts = {w: a for w, a in payouts.items() if a}
    return Allocation(epoch, emission, payouts, 0, total)


def allocate(
    epoch: int,
    emission: int,
    devices: Iterable[DeviceUptime],
    weights: Mapping[str, Weight],
    *,
    bonus: Weight = BASIS_POINTS,
    slots_per_epoch: int = MAX_SLOTS_PER_EPOCH,
) -> Allocation:
    """Score every device, sum per wallet and split the emission exactly."""
    return split(epoch, emission, wallet_scores(devices, weights, bonus, slots_per_epoch))
