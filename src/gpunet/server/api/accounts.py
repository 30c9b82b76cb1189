"""Accounts and tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from gpunet.server.api import schemas as s
from gpunet.server.api.deps import AnonCtx, OwnerCtx, State, owner, tighter_limit
from gpunet.server.security.principal import Scope
from gpunet.server.services import accounts, login_throttle

router = APIRouter(prefix="/api/v1", tags=["accounts"])
AccountCtx = Annotated[OwnerCtx, Depends(owner(Scope.ACCOUNT))]


def _tokens(pair: accounts.TokenPair) -> s.TokenOut:
    return s.TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        scopes=sorted(x.value for x in pair.scopes),
    )


@router.post(
    "/accounts",
    status_code=201,
    response_model=s.AccountOut,
    dependencies=[Depends(tighter_limit("login"))],
)
def register(body: s.RegisterRequest, ctx: AnonCtx, st: State) -> s.AccountOut:
    owner_row = accounts.register(
        ctx, st.passwords, email=body.email, password=body.password, display_name=body.display_name
    )
    return s.AccountOut.model_validate(owner_row)


@router.post(
    "/auth/token", response_model=s.TokenOut, dependencies=[Depends(tighter_limit("login"))]
)
def token(body: s.TokenRequest, ctx: AnonCtx, st: State) -> s.TokenOut:
    scopes = frozenset(body.scopes) if body.scopes else None
    return _tokens(
        accounts.login(
            ctx,
            st.tokens,
            st.passwords,
            email=body.email,
            password=body.password,
            scopes=scopes,
            mailer=st.mailer,
        )
    )


@router.post("/auth/unlock", status_code=204, dependencies=[Depends(tighter_limit("login"))])
def unlock(body: s.UnlockRequest, ctx: AnonCtx) -> None:
    """Redeem the one-time token e-mailed when the account was locked."""
    login_throttle.unlock_with_token(ctx, body.token)


@router.post(
    "/auth/refresh", response_model=s.TokenOut, dependencies=[Depends(tighter_limit("login"))]
)
def refresh(body: s.RefreshRequest, ctx: AnonCtx, st: State) -> s.TokenOut:
    return _tokens(accounts.refresh(ctx, st.tokens, body.refresh_token))


@router.post("/auth/logout", status_code=204)
def logout(ctx: AccountCtx) -> None:
    if ctx.actor.session_id:
        accounts.revoke_session(ctx, ctx.actor.session_id)


@router.post("/auth/revoke-all", status_code=204)
def revoke_all(ctx: AccountCtx) -> None:
    accounts.revoke_all_sessions(ctx, ctx.owner_id)


@router.get("/account", response_model=s.AccountOut)
def me(ctx: AccountCtx) -> s.AccountOut:
    return s.AccountOut.model_validate(accounts.get_owner(ctx.session, ctx.owner_id))


@router.patch("/account", response_model=s.AccountOut)
def update_account(body: s.AccountUpdate, ctx: AccountCtx) -> s.AccountOut:
    changes = body.model_dump(exclude_unset=True)
    return s.AccountOut.model_validate(accounts.update_profile(ctx, ctx.owner_id, changes))


@router.post("/account/password", status_code=204)
def change_password(body: s.PasswordChange, ctx: AccountCtx, st: State) -> None:
    accounts.change_password(
        ctx, st.passwords, ctx.owner_id, current=body.current_password, new=body.new_password
    )
