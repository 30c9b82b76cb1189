"""Verdicts are values: `Success` is truthy, `Failure(reason, detail)` is falsy.

A verifier never raises to say "no": hostile input is an expected outcome, and the
coordinator's state machine needs a machine-readable reason to decide between suspect and
suspended. Exceptions stay reserved for programming errors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class FailureReason(enum.StrEnum):
    # protocol
    WRONG_CHALLENGE = "wrong_challenge"  # answer bound to another challenge (replay)
    MALFORMED = "malformed"  # wrong shapes/counts, extra rows
    MISSING_ROWS = "missing_rows"  # a requested row was not opened
    TOO_SLOW = "too_slow"  # commitment after the budget of the claimed model
    OPENING_LATE = "opening_late"  # openings after their (short) budget
    COMMITMENT_MISMATCH = "commitment_mismatch"  # opened row does not hash to the root
    WRONG_INITIAL = "wrong_initial"  # X_0 row differs from its derivation from the seed
    WRONG_RESULT = "wrong_result"  # a recomputed chain entry differs
    # catalog / eligibility
    UNKNOWN_PROFILE = "unknown_profile"
    NOT_ELIGIBLE = "not_eligible"
    # hardware cross-checks
    UUID_CHANGED = "uuid_changed"
    VRAM_CHANGED = "vram_changed"
    MODEL_CHANGED = "model_changed"
    DUPLICATE_DEVICE = "duplicate_device"
    NOT_IN_KERNEL_LIST = "not_in_kernel_list"
    SPOOFED_ENUMERATION = "spoofed_enumeration"


@dataclass(frozen=True, slots=True)
class Success:
    detail: str = ""
    ok: Literal[True] = True

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    detail: str = ""
    ok: Literal[False] = False

    def __bool__(self) -> bool:
        return False


Verdict = Success | Failure
