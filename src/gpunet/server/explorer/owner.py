"""The owner's pages under /account: sign in (password, or the OIDC provider where one is
configured, see `oidc`), their own devices with uptime, proofs and payouts, sign out.

Everything here is read for the signed-in owner only, through the same owner-scoped
services as `GET /api/v1/devices` (`devices.owned` answers 404 for anyone else's
device), with the `devices:read` scope only: a stolen page session can look, not act.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from gpunet.core.errors import GpunetError, NotFound, RateLimited
from gpunet.server.api import explorer_views as views
from gpunet.server.api.deps import AnonCtx, DbSession, ReadSession, State, raw_body, tighter_limit
from gpunet.server.api.schemas import OwnerDeviceOut
from gpunet.server.context import Ctx
from gpunet.server.db.tables import AuthSession, Owner
from gpunet.server.explorer import cookies
from gpunet.server.explorer.web import Pages
from gpunet.server.security.principal import Principal, PrincipalKind, Scope
from gpunet.server.services import accounts, devices, explorer_history, rewards
from gpunet.server.services.reward_views import my_payouts
from gpunet.server.state import AppState

router = APIRouter(include_in_schema=False)
Body = Annotated[bytes, Depends(raw_body)]
WEB_SCOPES = frozenset({Scope.DEVICES_READ})
PAYOUT_EPOCHS = 12


def jar(request: Request) -> cookies.CookieJar:
    j: cookies.CookieJar = request.app.state.explorer_cookies
    return j


def pages(request: Request) -> Pages:
    p: Pages = request.app.state.explorer_pages
    return p


@dataclass(frozen=True)
class Signed:
    owner_id: int
    session_id: str


def signed_in(request: Request, session: Session, now: dt.datetime) -> Signed | None:
    """The owner whose live session the cookie names, or None."""
    sid = jar(request).open("session", request.cookies.get(cookies.SESSION))
    if sid is None:
        return None
    auth = session.get(AuthSession, sid)
    if auth is None or not accounts.session_is_live(session, sid, auth.owner_id, now):
        return None
    owner = session.get(Owner, auth.owner_id)
    if owner is None or owner.disabled_at is not None:
        return None
    return Signed(auth.owner_id, sid)


FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    problem: tuple[int, str] | None = None  # (status, message) when it is refused


def read_form(request: Request, body: bytes, limits: dict[str, int]) -> Form:
    """The named fields of the urlencoded form our own pages post, each at most once
    and within its limit (the template's maxlength). Anything else is refused before a
    credential is looked at, rather than read as an empty field: another content type
    (415), a body that does not decode, over 16 fields, a field twice or too long (422)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM_TYPE:
        return Form({}, (415, "This page accepts only the form it sent."))
    try:
        raw = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return Form({}, (422, "The form could not be read."))
    fields = {}
    for name, limit in limits.items():
        values = raw.get(name, [])
        if len(values) > 1 or any(len(v) > limit for v in values):
            return Form({}, (422, "A field of the form is repeated or too long."))
        if values:
            fields[name] = values[0]
    return Form(fields)


# -- signing in and out ------------------------------------------------------------------


def _signin_page(
    request: Request, st: AppState, message: str | None = None, status: int = 200
) -> Response:
    presession = cookies.new_presession()
    j = jar(request)
    context = {
        "title": "Sign in",
        "csrf": j.csrf_for(presession),
        "message": message,
        "oidc": st.settings.oidc_authorize_url is not None and st.oidc is not None,
    }
    headers = {"Retry-After": "60"} if status == 429 else None
    response = pages(request).render(
        request, "signin.html", context, status=status, public=False, headers=headers
    )
    j.set(response, cookies.PRESESSION, j.seal("presession", presession, cookies.SHORT_S),
          cookies.SHORT_S, "strict")
    return response


@router.get("/account/signin")
def signin_form(request: Request, st: State) -> Response:
    return _signin_page(request, st)


def start_session(request: Request, response: Response, session_id: str) -> None:
    j = jar(request)
    j.set(response, cookies.SESSION, j.seal("session", session_id, cookies.SESSION_S),
          cookies.SESSION_S, "lax")
    j.clear(response, cookies.PRESESSION)


@router.post("/account/signin", dependencies=[Depends(tighter_limit("login"))])
def signin(request: Request, st: State, ctx: AnonCtx, body: Body) -> Response:
    form = read_form(request, body, {"email": 254, "password": 256, "csrf": 128})
    if form.problem is not None:
        return _signin_page(request, st, form.problem[1], form.problem[0])
    presession = jar(request).open("presession", request.cookies.get(cookies.PRESESSION))
    if not cookies.same_origin(request, st.settings.public_url) or not jar(request).csrf_ok(
        presession, form.fields.get("csrf")
    ):
        return _signin_page(request, st, "The form expired; please sign in again.", 403)
    email, password = form.fields.get("email", ""), form.fields.get("password", "")
    try:
        pair = accounts.login(
            ctx, st.tokens, st.passwords, email=email, password=password,
            scopes=WEB_SCOPES, mailer=st.mailer,
        )
    except RateLimited as exc:
        # The failed attempts that led here are already counted and kept (see
        # accounts.login); this request changes nothing more, and says when to retry.
        return _signin_page(request, st, exc.message, 429)
    except GpunetError as exc:
        return _signin_page(request, st, exc.message, exc.status)
    claims = st.tokens.verify(pair.access_token, ctx.now)
    response = RedirectResponse("/account", status_code=303)
    start_session(request, response, claims.session_id)
    return response


def _refusal(request: Request, message: str, status: int) -> Response:
    return pages(request).render(
        request, "error.html", {"title": "Refused", "message": message},
        status=status, public=False,
    )


@router.post("/account/signout")
def signout(request: Request, st: State, session: DbSession, body: Body) -> Response:
    now = st.clock.now()
    form = read_form(request, body, {"csrf": 128})
    if form.problem is not None:
        return _refusal(request, form.problem[1], form.problem[0])
    who = signed_in(request, session, now)
    response = RedirectResponse("/", status_code=303)
    if who is None:
        jar(request).clear(response, cookies.SESSION)
        return response
    if not cookies.same_origin(request, st.settings.public_url) or not jar(request).csrf_ok(
        who.session_id, form.fields.get("csrf")
    ):
        return _refusal(request, "The form expired; reload the page and try again.", 403)
    actor = Principal(PrincipalKind.OWNER, str(who.owner_id), owner_id=who.owner_id,
                      scopes=WEB_SCOPES, session_id=who.session_id)
    accounts.revoke_session(Ctx(session, st.settings, now, actor, None), who.session_id)
    jar(request).clear(response, cookies.SESSION)
    return response


# -- the owner's own pages ---------------------------------------------------------------


def _to_signin() -> Response:
    return RedirectResponse("/account/signin", status_code=303)


@router.get("/account")
def account(
    request: Request,
    session: ReadSession,
    st: State,
    cursor: Annotated[str | None, Query(max_length=32, pattern=r"^dev_[a-z2-7]{16}$")] = None,
) -> Response:
    who = signed_in(request, session, st.clock.now())
    if who is None:
        return _to_signin()
    rows = devices.list_owned(session, who.owner_id, limit=51, after=cursor)
    latest = rewards.listing(session, limit=PAYOUT_EPOCHS, before=None)
    payouts = []
    for e in latest:
        _row, paid = my_payouts(session, who.owner_id, e.epoch)
        payouts.append((e.epoch, sorted(paid.items())))
    context = {
        "title": "Your devices",
        "devices": [OwnerDeviceOut.model_validate(d) for d in rows[:50]],
        "next_cursor": rows[49].public_id if len(rows) > 50 else None,
        "payouts": payouts,
        "csrf": jar(request).csrf_for(who.session_id),
    }
    return pages(request).render(request, "account.html", context, public=False)


@router.get("/account/devices/{device_id}")
def account_device(request: Request, device_id: str, session: ReadSession, st: State) -> Response:
    who = signed_in(request, session, st.clock.now())
    if who is None:
        return _to_signin()
    try:
        row = devices.owned(session, who.owner_id, device_id[:32])
    except NotFound:
        # Another owner's device is answered exactly like a device that does not exist.
        return pages(request).render(
            request, "error.html", {"title": "Not found", "message": "You have no such device."},
            status=404, public=False,
        )
    context = {
        "title": f"Your device {row.public_id}",
        "d": OwnerDeviceOut.model_validate(row),
        "proofs": explorer_history.device_proofs(session, row.id, limit=50, before=None),
        "epochs": views.device_epochs(session, st, row, before=None, limit=24),
        "csrf": jar(request).csrf_for(who.session_id),
    }
    return pages(request).render(request, "account_device.html", context, public=False)
