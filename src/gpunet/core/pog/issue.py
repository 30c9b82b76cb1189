"""Issuing challenges and opening requests (the coordinator's side of the exchange).

Randomness comes from `secrets`: the seed makes the work unpredictable before issue, the
opening secret makes the checked rows unpredictable before the commitment.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from gpunet.core.pog.catalog import ModelProfile
from gpunet.core.pog.messages import Challenge


def new_challenge_id() -> str:
    return "pog_" + base64.b32encode(secrets.token_bytes(15)).decode().lower()


def issue_challenge(
    profile: ModelProfile,
    *,
    now: dt.datetime,
    seed: bytes | None = None,
    challenge_id: str | None = None,
    roll_call_seed: bytes | None = None,
) -> Challenge:
    """A fresh challenge for a device claimed to be `profile`; deadline = now + budget.

    Devices challenged at the same moment (same owner, host or network; roll-calls) each
    get their own seed, so one backend cannot answer for two with one computation; pass
    one `new_roll_call_seed()` to all of them to share B and D (cheaper verification).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    b = profile.budget
    return Challenge(
        id=challenge_id or new_challenge_id(),
        seed=seed if seed is not None else secrets.token_bytes(32),
        profile=profile.key,
        params=profile.params,
        issued_at=now,
        deadline=now + dt.timedelta(seconds=b.budget_s),
        open_budget_s=b.open_budget_s,
        roll_call_seed=roll_call_seed,
    )


def new_roll_call_seed() -> bytes:
    return secrets.token_bytes(32)


def new_opening_secret() -> bytes:
    """Draw this only once the commitment is in; store it with the challenge."""
    return secrets.token_bytes(32)

