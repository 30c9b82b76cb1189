"""Failed password sign-ins throttled per account, on top of the per-address limits.

The rule (docs/accounts.md, "Failed sign-ins"), decided here and nowhere else:

- Every wrong password for an existing account adds one to that account's failure
  count, whichever address sent it; a correct one (or an unlock) sets it back to 0.
- Below `backoff_after` failures nothing is held back. From there on, an attempt from
  an *unknown* address must come at least `wait_s(failures)` after the last counted
  failure: 2, 4, 8 ... seconds, capped at `backoff_max_s`; from `lockout_after`
  failures on, the account is *locked*: the wait is `lockout_s`, and the owner is
  e-mailed a one-time unlock token. An attempt that comes too early is answered 429
  with Retry-After, its password is not checked, and it is *not* counted: so an
  attacker cannot push the window further out by hammering it, only by spending one
  real guess per window.
- A *known* address (one whose /64 signed in to this account with the right password,
  or redeemed its unlock token, within `known_address_days`) is never held back by
  the account's count, locked or not; it is still bound by the per-address limits.

So what an attacker who does not know the password can force is at most: unknown
addresses wait up to `lockout_s` per guess they spend, and the owner gets an e-mail.
They cannot stop the owner signing in from an address the owner used before, nor
after redeeming the e-mailed token (which also makes the redeeming address known),
nor after an operator's `gpunet admin unlock`. Every state here is in the database,
so all replicas enforce one count.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gpunet.core.errors import RateLimited, Unauthenticated
from gpunet.server.context import Ctx
from gpunet.server.db.tables import LoginAddress, LoginThrottle, Owner
from gpunet.server.security.principal import Principal, PrincipalKind
from gpunet.server.security.secrets import digest, random_token
from gpunet.server.services import audit
from gpunet.server.services.mailer import Mailer, Message
from gpunet.server.services.ratelimit import address_key
from gpunet.server.settings import Settings

UNLOCK_PREFIX = "gpn_ul_"


@dataclass(frozen=True, slots=True)
class Policy:
    backoff_after: int
    backoff_max_s: int
    lockout_after: int
    lockout_s: int
    unlock_ttl_s: int
    known_address_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            backoff_after=settings.login_backoff_after,
            backoff_max_s=settings.login_backoff_max_s,
            lockout_after=settings.login_lockout_after,
            lockout_s=settings.login_lockout_s,
            unlock_ttl_s=settings.login_unlock_ttl_s,
            known_address_days=settings.login_known_address_days,
        )

    def wait_s(self, failures: int) -> int:
        """How long after the last counted failure an unknown address must wait."""
        if failures < self.backoff_after:
            return 0
        if failures >= self.lockout_after:
            return self.lockout_s
        # The exponent is bounded first so a large count cannot build a huge integer.
        exponent = min(failures - self.backoff_after + 1, 40)
        return int(min(2**exponent, self.backoff_max_s))


def _insert(
    session: Session, table: type[LoginThrottle] | type[LoginAddress]
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT on either backend (both spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_known(session: Session, owner_id: int, key: str | None, now: dt.datetime, days: int) -> bool:
    if key is None:
        return False
    since = now - dt.timedelta(days=days)
    row = session.execute(
        select(LoginAddress.owner_id).where(
            LoginAddress.owner_id == owner_id,
            LoginAddress.address_key == key,
            LoginAddress.last_success_at >= since,
        )
    ).first()
    return row is not None


def check(ctx: Ctx, owner_id: int, policy: Policy) -> None:
    """Raise RateLimited if this attempt must not have its password checked yet.

    This is the one place the rule decides; see the module docstring for what it
    guarantees the owner.
    """
    key = address_key(ctx.address)
    if is_known(ctx.session, owner_id, key, ctx.now, policy.known_address_days):
        # The owner's own addresses are never held back by strangers' failures: that is
        # what makes the lock-out impossible to turn into a denial of the owner.
        return
    # FOR UPDATE (PostgreSQL) holds concurrent attempts on this account in line until
    # this one has been counted, so replicas cannot all slip through one open window.
    row = ctx.session.execute(
        select(LoginThrottle.failures, LoginThrottle.last_failure_at)
        .where(LoginThrottle.owner_id == owner_id)
        .with_for_update()
    ).first()
    if row is None or row.last_failure_at is None:
        return
    wait = policy.wait_s(row.failures)
    if wait == 0:
        return
    opens = row.last_failure_at + dt.timedelta(seconds=wait)
    if ctx.now >= opens:
        return
    retry = max(1, math.ceil((opens - ctx.now).total_seconds()))
    if row.failures >= policy.lockout_after:
        raise RateLimited(
            f"this account is locked after {row.failures} failed sign-ins: the owner has been "
            f"e-mailed a one-time unlock token; otherwise retry in {retry} s, or sign in from "
            "an address that has signed in to this account before",
            retry_after=retry,
        )
    raise RateLimited(
        f"too many failed sign-ins to this account: retry in {retry} s (an address that "
        "has signed in to this account before is not held back)",
        retry_after=retry,
    )


def record_failure(ctx: Ctx, owner: Owner, policy: Policy, mailer: Mailer) -> int:
    """Count one wrong password; lock the account (and e-mail its owner) at the limit.

    The caller's transaction is rolled back by the refusal that follows, so the caller
    must ask for it to be committed anyway (as a stolen refresh token does).
    """
    stmt = (
        _insert(ctx.session, LoginThrottle)
        .values(owner_id=owner.id, failures=1, last_failure_at=ctx.now)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.owner_id],
            set_={"failures": LoginThrottle.failures + 1, "last_failure_at": ctx.now},
        )
        .returning(LoginThrottle.failures, LoginThrottle.locked_at)
    )
    failures, locked_at = ctx.session.execute(stmt).one()
    if failures >= policy.lockout_after and locked_at is None:
        _lock(ctx, owner, failures, policy, mailer)
    return int(failures)


def _lock(ctx: Ctx, owner: Owner, failures: int, policy: Policy, mailer: Mailer) -> None:
    token = UNLOCK_PREFIX + random_token()
    ctx.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.owner_id == owner.id)
        .values(
            locked_at=ctx.now,
            unlock_hash=digest(token),
            unlock_expires_at=ctx.now + dt.timedelta(seconds=policy.unlock_ttl_s),
        )
    )
    audit.append(
        ctx.session,
        actor=Principal.system("login-throttle"),
        action="account.lock",
        entity_kind="owner",
        entity_id=str(owner.id),
        before={"locked": False},
        after={"locked": True, "failures": failures},
        now=ctx.now,
        address=ctx.address,
    )
    if owner.email:
        # Sent before the commit: if the commit then fails, the token in the mail simply
        # does not work, and the next failure sends another.
        mailer.send(_unlock_message(ctx.settings, owner.email, failures, token, policy))


def _unlock_message(
    settings: Settings, email: str, failures: int, token: str, policy: Policy
) -> Message:
    hours = policy.unlock_ttl_s // 3600
    body = (
        f"Your gpunet account was locked after {failures} sign-in attempts with a wrong "
        "password. If that was not you, someone is guessing your password: consider "
        "changing it once you are signed in.\n\n"
        "You can still sign in from a device and network you have signed in from before. "
        f"To unlock the account from anywhere (valid for {hours} h, once):\n\n"
        f"  curl -X POST {settings.public_url}/api/v1/auth/unlock "
        f"-H 'Content-Type: application/json' -d '{{\"token\": \"{token}\"}}'\n\n"
        f"Unlock token: {token}\n"
    )
    return Message(to=email, subject="gpunet: your account is locked", body=body)


def _clear(session: Session, owner_id: int) -> tuple[int, bool] | None:
    """Reset the count; return (failures, was locked) before, or None if nothing was set."""
    row = session.execute(
        select(LoginThrottle.failures, LoginThrottle.locked_at)
        .where(LoginThrottle.owner_id == owner_id)
        .with_for_update()
    ).first()
    if row is None or (row.failures == 0 and row.locked_at is None):
        return None
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.owner_id == owner_id)
        .values(failures=0, locked_at=None, unlock_hash=None, unlock_expires_at=None)
    )
    return int(row.failures), row.locked_at is not None


def _remember_address(ctx: Ctx, owner_id: int) -> None:
    key = address_key(ctx.address)
    if key is None:
        return
    stmt = (
        _insert(ctx.session, LoginAddress)
        .values(owner_id=owner_id, address_key=key[:64], last_success_at=ctx.now)
        .on_conflict_do_update(
            index_elements=[LoginAddress.owner_id, LoginAddress.address_key],
            set_={"last_success_at": ctx.now},
        )
    )
    ctx.session.execute(stmt)


def _audit_unlock(
    session: Session,
    actor: Principal,
    owner_id: int,
    before: tuple[int, bool],
    by: str,
    now: dt.datetime,
    address: str | None,
) -> None:
    audit.append(
        session,
        actor=actor,
        action="account.unlock",
        entity_kind="owner",
        entity_id=str(owner_id),
        before={"failures": before[0], "locked": before[1]},
        after={"failures": 0, "locked": False, "by": by},
        now=now,
        address=address,
    )


def record_success(ctx: Ctx, owner_id: int) -> None:
    """The right password: the count starts again and this address becomes known."""
    cleared = _clear(ctx.session, owner_id)
    if cleared is not None and cleared[1]:
        owner = Principal(PrincipalKind.OWNER, str(owner_id), owner_id=owner_id)
        _audit_unlock(ctx.session, owner, owner_id, cleared, "sign-in", ctx.now, ctx.address)
    _remember_address(ctx, owner_id)


def unlock_with_token(ctx: Ctx, token: str) -> int:
    """Redeem an e-mailed unlock token; return the owner's id.

    Whoever holds the token reads the owner's mail, so the redeeming address is made
    known too: from there the right password works whatever strangers do afterwards.
    """
    row = ctx.session.execute(
        select(LoginThrottle.owner_id, LoginThrottle.unlock_expires_at)
        .where(LoginThrottle.unlock_hash == digest(token))
        .with_for_update()
    ).first()
    if row is None or row.unlock_expires_at is None or row.unlock_expires_at <= ctx.now:
        raise Unauthenticated("invalid or expired unlock token")
    owner_id = int(row.owner_id)
    cleared = _clear(ctx.session, owner_id)
    assert cleared is not None  # a row holding a token was locked, so there was a count
    owner = Principal(PrincipalKind.OWNER, str(owner_id), owner_id=owner_id)
    _audit_unlock(ctx.session, owner, owner_id, cleared, "e-mail", ctx.now, ctx.address)
    _remember_address(ctx, owner_id)
    return owner_id


def unlock_by_operator(
    session: Session, owner_id: int, operator: Principal, now: dt.datetime
) -> bool:
    """The operator's reset (`gpunet admin unlock`); False if there was nothing to clear."""
    cleared = _clear(session, owner_id)
    if cleared is None:
        return False
    _audit_unlock(session, operator, owner_id, cleared, "operator", now, None)
    return True
