"""Request dependencies: the transaction, the caller, and the guards in front of both.

Order of work for every request, cheapest first: operator blocks and per-address
limits (own short transaction, so refused attempts are counted even though the request
fails), then credentials, then the request's own transaction, which the request owns:
committed when the handler returns, rolled back when it raises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gpunet.core.errors import Forbidden, GpunetError, Unauthenticated
from gpunet.server.context import Ctx
from gpunet.server.security.principal import Principal, PrincipalKind, Scope
from gpunet.server.services import accounts, alerts, blocks, devices, ratelimit
from gpunet.server.state import AppState as AppState  # re-exported for the routers


async def state(request: Request) -> AppState:
    st: AppState = request.app.state.gpunet
    return st


State = Annotated[AppState, Depends(state)]


async def client_address(request: Request, st: State) -> str | None:
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for", "")
    return ratelimit.forwarded_address(peer, forwarded, st.settings.trusted_proxies)


Address = Annotated[str | None, Depends(client_address)]


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unknown")


def tighter_limit(kind: str) -> Callable[..., Awaitable[None]]:
    """Route-level marker: this route also counts against the address's `kind` limit.

    Route dependencies are solved before the handler's own, so the guard below sees
    the mark and applies every limit in its one short transaction.
    """
    assert kind in ("enroll", "login")

    async def _mark(request: Request) -> None:
        request.state.gpunet_limit = kind

    return _mark


def _load_blocks(request: Request, session: Session) -> None:
    """Read the active blocks once per request; the credential checks reuse them."""
    request.state.gpunet_blocks = list(blocks.active(session))


def _check_principal_blocks(request: Request, *keys: str) -> None:
    for key in keys:
        blocks.check(request.state.gpunet_blocks, address=None, principal_key=key)


def guard(request: Request, st: State, address: Address) -> None:
    """Operator blocks and per-address limits, before any credential or transaction.

    Counters live in their own short transaction, committed even when the request is
    then refused, so refused attempts still count against the address.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") or address is None:
        with st.database.read() as session:
            _load_blocks(request, session)
            blocks.check(request.state.gpunet_blocks, address=address, principal_key=None)
        return
    s = st.settings
    limits = [("addr-write", s.address_writes_per_window)]
    kind = getattr(request.state, "gpunet_limit", None)
    if kind == "enroll":
        limits.append(("addr-enroll", s.address_enrollments_per_window))
    elif kind == "login":
        limits.append(("addr-login", s.address_logins_per_window))
    now = st.clock.now()
    with st.database.transaction() as session:
        _load_blocks(request, session)
        blocks.check(request.state.gpunet_blocks, address=address, principal_key=None)
        counters = st.counters_factory(session)
        # IPv6 callers are counted per /64: one subscriber holds all of it.
        counted = ratelimit.address_key(address)
        for key, limit in limits:
            ratelimit.enforce(counters, f"{key}:{counted}", limit, now, s.rate_window_s)


def db_session(st: State, _: Annotated[None, Depends(guard)]) -> Iterator[Session]:
    session = st.database.session()
    try:
        yield session
        session.commit()
        alerts.deliver_pending(session.info, st.settings.alert_webhook_url)
    except GpunetError:
        # A few refusals must still leave a trace (a stolen refresh token revokes its
        # session); everything else a refused request did is undone.
        if session.info.pop("gpunet_commit_despite_error", False):
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(db_session, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > 8192:
        return None
    return token.strip()


def _owner_principal(
    request: Request, st: State, session: Session, address: str | None, now: dt.datetime
) -> Principal:
    token = _bearer(request)
    if token is None:
        raise Unauthenticated("sign in: this endpoint needs a bearer token")
    if st.tokens.is_ours(token):
        claims = st.tokens.verify(token, now)
        if not accounts.session_is_live(session, claims.session_id, claims.owner_id, now):
            raise Unauthenticated("this session has been revoked or has expired")
        return Principal(
            PrincipalKind.OWNER,
            str(claims.owner_id),
            owner_id=claims.owner_id,
            scopes=claims.scopes,
            session_id=claims.session_id,
        )
    if st.oidc is not None and st.oidc.claims_issuer(token):
        identity = st.oidc.verify(token, now)
        ctx = Ctx(session, st.settings, now, Principal.system(), address)
        owner = accounts.owner_for_external(ctx, identity)
        if owner.disabled_at is not None:
            raise Unauthenticated("this account is disabled")
        return Principal(
            PrincipalKind.OWNER, str(owner.id), owner_id=owner.id, scopes=frozenset(Scope)
        )
    raise Unauthenticated("token not issued by this coordinator or its identity provider")


@dataclass(slots=True)
class OwnerCtx(Ctx):
    """The context of a call made by an owner: `owner_id` is always set."""

    owner_id: int = field(kw_only=True)


def owner(scope: Scope) -> Callable[..., OwnerCtx]:
    """An owner with `scope`, wrapped in the context services take."""

    def _owner(request: Request, st: State, session: DbSession, address: Address) -> OwnerCtx:
        now = st.clock.now()
        try:
            principal = _owner_principal(request, st, session, address, now)
        except Unauthenticated:
            st.metrics.auth_failures.labels(_endpoint(request), "owner").inc()
            raise
        _check_principal_blocks(request, principal.key)
        if scope not in principal.scopes:
            raise Forbidden(f"this token lacks the '{scope.value}' scope")
        request.state.principal_kind = "owner"
        owner_id = principal.owner_id
        assert owner_id is not None  # every owner principal is built with its id
        counters = st.counters_factory(session)
        return OwnerCtx(session, st.settings, now, principal, address, counters, owner_id=owner_id)

    return _owner


async def raw_body(request: Request) -> bytes:
    return await request.body()


def device(
    request: Request,
    st: State,
    session: DbSession,
    address: Address,
    body: Annotated[bytes, Depends(raw_body)],
) -> Ctx:
    """A device, proven by its own key's signature over this very request (T3)."""
    now = st.clock.now()
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        principal = devices.authenticate_request(
            session,
            header=request.headers.get("authorization", ""),
            method=request.method,
            path=path,
            body=body,
            now=now,
            window_s=st.settings.device_signature_window_s,
        )
    except Unauthenticated:
        st.metrics.auth_failures.labels(_endpoint(request), "device").inc()
        raise
    # A blocked owner's devices are blocked too, as on the control channel.
    _check_principal_blocks(request, principal.key, f"owner:{principal.owner_id}")
    request.state.principal_kind = "device"
    return Ctx(session, st.settings, now, principal, address, st.counters_factory(session))


def anonymous(st: State, session: DbSession, address: Address) -> Ctx:
    return Ctx(
        session,
        st.settings,
        st.clock.now(),
        Principal.system("anonymous"),
        address,
        st.counters_factory(session),
    )


def read_session(st: State, _: Annotated[None, Depends(guard)]) -> Iterator[Session]:
    with st.database.read() as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session, scope="function")]
DeviceCtx = Annotated[Ctx, Depends(device)]
AnonCtx = Annotated[Ctx, Depends(anonymous)]
