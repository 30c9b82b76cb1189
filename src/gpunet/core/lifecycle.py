"""The device lifecycle: which status changes are allowed, and why.

    pending --pass--> verified --fail/miss--> suspect --pass--> verified
       |                  |                      |
       +--------------> suspended <--------------+   (repeated failure, operator)

A suspended device returns only through `pending` (an operator reinstates it, and
it must prove itself again from scratch).
"""

from __future__ import annotations

from gpunet.core.models import DeviceStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.VERIFIED, S.SUSPENDED}),
    S.VERIFIED: frozenset({S.SUSPECT, S.SUSPENDED}),
    S.SUSPECT: frozenset({S.VERIFIED, S.SUSPENDED}),
    S.SUSPENDED: frozenset({S.PENDING}),
}


def can_transition(current: S, new: S) -> bool:
    return new in ALLOWED[current]


def counts_as_supply(status: S) -> bool:
    """Only verified devices count for supply totals, rewards and scheduling (T1)."""
    return status is S.VERIFIED
