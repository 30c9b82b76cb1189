"""Owner accounts, logins, token refresh and revocation."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gpunet.core.errors import Conflict, Forbidden, InvalidInput, Unauthenticated
from gpunet.server.context import Ctx
from gpunet.server.db.tables import AuthSession, ExternalIdentity, Owner
from gpunet.server.security.oidc import ExternalIdentity as OidcIdentity
from gpunet.server.security.passwords import Passwords
from gpunet.server.security.principal import ALL_SCOPES, Principal, PrincipalKind, Scope
from gpunet.server.security.secrets import digest, random_token
from gpunet.server.security.tokens import AccessTokens
from gpunet.server.services import audit, login_throttle, writes
from gpunet.server.services.mailer import Mailer

REFRESH_PREFIX = "gpn_rt_"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: frozenset[Scope]


def owner_view(owner: Owner) -> dict[str, object]:
    """The fields an audit record keeps of an account (never the password hash)."""
    return {
        "email": owner.email,
        "display_name": owner.display_name,
        "wallet_address": owner.wallet_address,
        "disabled": owner.disabled_at is not None,
    }


def register(
    ctx: Ctx, passwords: Passwords, *, email: str, password: str, display_name: str | None
) -> Owner:
    if not ctx.settings.open_registration:
        raise Forbidden("registration is closed on this coordinator")
    email = email.lower()
    if ctx.session.execute(select(Owner.id).where(Owner.email == email)).first():
        raise Conflict("an account with this e-mail already exists")
    owner = Owner(
        email=email,
        password_hash=passwords.hash(password),
        display_name=display_name,
        created_at=ctx.now,
    )
    ctx.session.add(owner)
    ctx.session.flush()
    audit.append(
        ctx.session,
        actor=Principal(PrincipalKind.OWNER, str(owner.id)),
        action="account.create",
        entity_kind="owner",
        entity_id=str(owner.id),
        before=None,
        after=owner_view(owner),
        now=ctx.now,
        address=ctx.address,
    )
    return owner


def _new_session(
    session: Session, owner: Owner, scopes: frozenset[Scope], now: dt.datetime, ttl_s: int
) -> tuple[AuthSession, str]:
    refresh = REFRESH_PREFIX + random_token()
    auth = AuthSession(
        id=secrets.token_hex(16),
        owner_id=owner.id,
        refresh_hash=digest(refresh),
        scopes=" ".join(sorted(s.value for s in scopes)),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_s),
    )
    session.add(auth)
    session.flush()
    return auth, refresh


def _audit_session(ctx: Ctx, owner_id: int, auth: AuthSession, action: str) -> None:
    """Credentials are issued on the record too; the log names a session by a prefix only."""
    audit.append(
        ctx.session,
        actor=Principal(PrincipalKind.OWNER, str(owner_id), owner_id=owner_id),
        action=action,
        entity_kind="owner",
        entity_id=str(owner_id),
        before=None,
        after={"session": auth.id[:8], "scopes": auth.scopes},
        now=ctx.now,
        address=ctx.address,
    )


def login(
    ctx: Ctx,
    tokens: AccessTokens,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    scopes: frozenset[Scope] | None,
    mailer: Mailer,
) -> TokenPair:
    owner = ctx.session.execute(
        select(Owner).where(Owner.email == email.lower())
    ).scalar_one_or_none()
    policy = login_throttle.Policy.from_settings(ctx.settings)
    if owner is not None and owner.password_hash is not None:
        # Per-account back-off first: a held-back attempt never reaches the password
        # check, so it can neither succeed nor be counted (login_throttle says why).
        login_throttle.check(ctx, owner.id, policy)
    if not passwords.verify(owner.password_hash if owner else None, password):
        if owner is not None and owner.password_hash is not None:
            login_throttle.record_failure(ctx, owner, policy, mailer)
            # The refusal below rolls the request back; the count must survive it.
            ctx.session.info["gpunet_commit_despite_error"] = True
        raise Unauthenticated("wrong e-mail or password")
    assert owner is not None
    if owner.disabled_at is not None:
        raise Unauthenticated("wrong e-mail or password")
    login_throttle.record_success(ctx, owner.id)
    granted = scopes if scopes else ALL_SCOPES
    auth, refresh = _new_session(
        ctx.session, owner, granted, ctx.now, ctx.settings.refresh_token_ttl_s
    )
    access = tokens.issue(owner_id=owner.id, session_id=auth.id, scopes=granted, now=ctx.now)
    _audit_session(ctx, owner.id, auth, "session.create")
    return TokenPair(access, refresh, tokens.ttl_s, granted)


def open_session(ctx: Ctx, owner: Owner, scopes: frozenset[Scope]) -> str:
    """A session for an owner already proven by other means (the explorer's OIDC
    sign-in); its id is all the caller gets, to name it in a signed cookie."""
    auth, _refresh = _new_session(
        ctx.session, owner, scopes, ctx.now, ctx.settings.refresh_token_ttl_s
    )
    _audit_session(ctx, owner.id, auth, "session.create")
    return auth.id


def refresh(ctx: Ctx, tokens: AccessTokens, refresh_token: str) -> TokenPair:
    """Rotate the refresh token. Reuse of a spent one revokes the whole session."""
    h = digest(refresh_token)
    auth = ctx.session.execute(
        select(AuthSession).where(AuthSession.refresh_hash == h).with_for_update()
    ).scalar_one_or_none()
    if auth is None:
        stolen = ctx.session.execute(
            select(AuthSession).where(AuthSession.previous_refresh_hash == h).with_for_update()
        ).scalar_one_or_none()
        if stolen is not None and stolen.revoked_at is None:
            # Someone is using a refresh token that was already exchanged: one of the two
            # holders is not the owner. End the session for both. The caller's transaction
            # must still commit this, so it is reported as a value, not raised here.
            stolen.revoked_at = ctx.now
            ctx.session.info["gpunet_commit_despite_error"] = True
        raise Unauthenticated("invalid refresh token")
    if auth.revoked_at is not None or auth.expires_at <= ctx.now:
        raise Unauthenticated("invalid refresh token")
    owner = ctx.session.get(Owner, auth.owner_id)
    if owner is None or owner.disabled_at is not None:
        raise Unauthenticated("invalid refresh token")
    new_refresh = REFRESH_PREFIX + random_token()
    auth.previous_refresh_hash = auth.refresh_hash
    auth.refresh_hash = digest(new_refresh)
    scopes = frozenset(Scope(s) for s in auth.scopes.split())
    access = tokens.issue(owner_id=owner.id, session_id=auth.id, scopes=scopes, now=ctx.now)
    _audit_session(ctx, owner.id, auth, "session.refresh")
    return TokenPair(access, new_refresh, tokens.ttl_s, scopes)


def revoke_session(ctx: Ctx, session_id: str) -> None:
    auth = ctx.session.get(AuthSession, session_id, with_for_update=True)
    if auth is None or auth.owner_id != ctx.actor.owner_id:
        raise Unauthenticated("no such session")
    if auth.revoked_at is None:
        auth.revoked_at = ctx.now
        audit.append(
            ctx.session,
            actor=ctx.actor,
            action="session.revoke",
            entity_kind="owner",
            entity_id=str(auth.owner_id),
            before={"session": auth.id[:8]},
            after=None,
            now=ctx.now,
            address=ctx.address,
        )


def revoke_all_sessions(ctx: Ctx, owner_id: int, *, keep: str | None = None) -> int:
    stmt = (
        update(AuthSession)
        .where(AuthSession.owner_id == owner_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=ctx.now)
    )
    if keep:
        stmt = stmt.where(AuthSession.id != keep)
    n = int(getattr(ctx.session.execute(stmt), "rowcount", 0) or 0)
    audit.append(
        ctx.session,
        actor=ctx.actor,
        action="session.revoke_all",
        entity_kind="owner",
        entity_id=str(owner_id),
        before=None,
        after={"revoked": n},
        now=ctx.now,
        address=ctx.address,
    )
    return n


def session_is_live(session: Session, session_id: str, owner_id: int, now: dt.datetime) -> bool:
    auth = session.get(AuthSession, session_id)
    return (
        auth is not None
        and auth.owner_id == owner_id
        and auth.revoked_at is None
        and auth.expires_at > now
    )


def owner_for_external(ctx: Ctx, identity: OidcIdentity) -> Owner:
    """Map an external (issuer, subject) to its owner, creating the account on first use."""
    link = ctx.session.execute(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == identity.issuer, ExternalIdentity.subject == identity.subject
        )
    ).scalar_one_or_none()
    if link is not None:
        owner = ctx.session.get(Owner, link.owner_id)
        assert owner is not None
        return owner
    owner = Owner(created_at=ctx.now)
    ctx.session.add(owner)
    ctx.session.flush()
    ctx.session.add(
        ExternalIdentity(
            owner_id=owner.id, issuer=identity.issuer, subject=identity.subject, created_at=ctx.now
        )
    )
    ctx.session.flush()
    audit.append(
        ctx.session,
        actor=Principal(PrincipalKind.OWNER, str(owner.id)),
        action="account.create_external",
        entity_kind="owner",
        entity_id=str(owner.id),
        before=None,
        after={"issuer": identity.issuer},
        now=ctx.now,
        address=ctx.address,
    )
    return owner


def update_profile(ctx: Ctx, owner_id: int, changes: dict[str, object]) -> Owner:
    owner = ctx.session.get(Owner, owner_id, with_for_update=True)
    if owner is None:
        raise Unauthenticated("account not found")
    before = owner_view(owner)
    for field, value in changes.items():
        setattr(owner, field, value)
    b, a = audit.changed_fields(before, owner_view(owner))
    if a:
        writes.record_write(ctx, "account.update")
        audit.append(
            ctx.session,
            actor=ctx.actor,
            action="account.update",
            entity_kind="owner",
            entity_id=str(owner.id),
            before=b,
            after=a,
            now=ctx.now,
            address=ctx.address,
        )
    return owner


def change_password(
    ctx: Ctx, passwords: Passwords, owner_id: int, *, current: str, new: str
) -> None:
    owner = ctx.session.get(Owner, owner_id, with_for_update=True)
    if owner is None or owner.password_hash is None:
        raise InvalidInput("this account signs in through an external identity provider")
    if not passwords.verify(owner.password_hash, current):
        raise Forbidden("the current password is wrong")
    owner.password_hash = passwords.hash(new)
    audit.append(
        ctx.session,
        actor=ctx.actor,
        action="account.password",
        entity_kind="owner",
        entity_id=str(owner.id),
        before=None,
        after={"password": "changed"},
        now=ctx.now,
        address=ctx.address,
    )
    revoke_all_sessions(ctx, owner.id, keep=ctx.actor.session_id)


def get_owner(session: Session, owner_id: int) -> Owner:
    owner = session.get(Owner, owner_id)
    if owner is None:
        raise Unauthenticated("account not found")
    return owner
