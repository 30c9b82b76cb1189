"""The device lifecycle: which status changes are allowed, and why.

    pending --pass--> verified --fail/miss--> suspect --pass--> verified
       |                  |                      |
       +--------------> suspended <--------------+   (repeated failure, operator)

A suspended device returns only through `pending` (an operator reinstates it, and
it must prove itself again from scratch).

Any device may be retired by its owner (or when a new key replaces it). Retirement is
final: the GPU comes back only as a new device that proves itself from `pending`, so
the old device's record (proofs, uptime, payouts) is never rewritten.
"""

from __future__ import annotations

from gpunet.core.models import DeviceStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.VERIFIED, S.SUSPENDED, S.RETIRED}),
    S.VERIFIED: frozenset({S.SUSPECT, S.SUSPENDED, S.RETIRED}),
    S.SUSPECT: frozenset({S.VERIFIED, S.SUSPENDED, S.RETIRED}),
    S.SUSPENDED: frozenset({S.PENDING, S.RETIRED}),
    S.RETIRED: frozenset(),
}


def can_transition(current: S, new: S) -> bool:
    return new in ALLOWED[current]


def counts_as_supply(status: S) -> bool:
    """Only verified devices count for supply totals, rewards and scheduling (T1)."""
    return status is S.VERIFIED


def heartbeat_counts(status: S, *, owes_proof: bool, overdue: bool) -> bool:
    """Whether a heartbeat earns uptime: a verified device that answers its challenges.

    A device whose challenge has passed its deadline unanswered, or which let one lapse
    and has not passed since (it "owes a proof"), earns nothing: otherwise ignoring
    challenges would be free (HTTP and control channel alike use this one rule).
    """
    return counts_as_supply(status) and not owes_proof and not overdue
