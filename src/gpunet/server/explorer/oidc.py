"""Owners sign in on the explorer through the configured OIDC provider: the
authorization code flow with PKCE (RFC 7636), a `state` and a `nonce`.

The browser is sent to the provider with a fresh state, nonce and code challenge, all
three kept only in a short-lived signed HttpOnly cookie (SameSite=Lax, so it comes back
on the provider's top-level redirect). The callback must present that state; the code
is exchanged with the verifier before any database work (no network call inside a
transaction), and the ID token is checked by the same `OidcVerifier` as bearer tokens
(signature by the provider's keys, issuer, audience, expiry) plus the nonce. The owner
is the one `accounts.owner_for_external` maps (issuer, subject) to, as for the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from gpunet.core.errors import GpunetError, Unauthenticated
from gpunet.server.api.deps import Address, State, guard
from gpunet.server.context import Ctx
from gpunet.server.explorer import cookies
from gpunet.server.explorer.owner import WEB_SCOPES, jar, pages, start_session
from gpunet.server.security.principal import Principal
from gpunet.server.services import accounts
from gpunet.server.state import AppState

router = APIRouter(include_in_schema=False)
log = logging.getLogger("gpunet.explorer.oidc")
CALLBACK = "/account/oidc/callback"
Param = Annotated[str | None, Query(max_length=2048)]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _configured(st: AppState) -> bool:
    s = st.settings
    return st.oidc is not None and bool(s.oidc_authorize_url and s.oidc_token_url)


def _refused(request: Request, message: str, status: int = 401) -> Response:
    return pages(request).render(
        request, "error.html", {"title": "Sign-in failed", "message": message},
        status=status, public=False,
    )


@router.get("/account/oidc/start", dependencies=[Depends(guard)])
def start(request: Request, st: State) -> Response:
    if not _configured(st):
        return _refused(request, "No identity provider is configured here.", 404)
    s = st.settings
    state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
    query = urlencode({
        "response_type": "code",
        "client_id": s.oidc_client_id,
        "redirect_uri": s.public_url.rstrip("/") + CALLBACK,
        "scope": "openid email",
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    })
    assert s.oidc_authorize_url is not None
    sep = "&" if "?" in s.oidc_authorize_url else "?"
    response = RedirectResponse(s.oidc_authorize_url + sep + query, status_code=303)
    j = jar(request)
    sealed = j.seal("oidc", f"{state}~{nonce}~{verifier}", cookies.SHORT_S)
    j.set(response, cookies.OIDC_STATE, sealed, cookies.SHORT_S, "lax")
    return response


def _exchange(st: AppState, code: str, verifier: str) -> str:
    """The provider's ID token for `code`; Unauthenticated on any failure."""
    s = st.settings
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": s.public_url.rstrip("/") + CALLBACK,
        "client_id": s.oidc_client_id or "",
        "code_verifier": verifier,
    }
    if s.oidc_client_secret is not None:
        form["client_secret"] = s.oidc_client_secret.get_secret_value()
    assert s.oidc_token_url is not None
    try:
        r = httpx.post(s.oidc_token_url, data=form, timeout=10.0)
        body: Any = r.json() if r.status_code == 200 else {}
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OIDC token endpoint failed: %s", type(exc).__name__)
        raise Unauthenticated("the identity provider could not be reached") from exc
    token = body.get("id_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or len(token) > 16384:
        raise Unauthenticated("the identity provider refused the sign-in")
    return token


@router.get(CALLBACK, dependencies=[Depends(guard)])
def callback(
    request: Request, st: State, address: Address, code: Param = None, state: Param = None
) -> Response:
    if not _configured(st):
        return _refused(request, "No identity provider is configured here.", 404)
    kept = jar(request).open("oidc", request.cookies.get(cookies.OIDC_STATE))
    parts = kept.split("~") if kept else []
    if len(parts) != 3 or not state or not code or not hmac.compare_digest(parts[0], state):
        return _refused(request, "This sign-in was not started here, or took too long.")
    _state, nonce, verifier = parts
    assert st.oidc is not None
    now = st.clock.now()
    try:
        token = _exchange(st, code, verifier)
        identity = st.oidc.verify(token, now)
        claimed = jwt.decode(token, options={"verify_signature": False}).get("nonce")
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed, nonce):
            raise Unauthenticated("the identity token was not issued for this sign-in")
        with st.database.transaction() as session:
            ctx = Ctx(session, st.settings, now, Principal.system(), address)
            owner = accounts.owner_for_external(ctx, identity)
            if owner.disabled_at is not None:
                raise Unauthenticated("this account is disabled")
            session_id = accounts.open_session(ctx, owner, WEB_SCOPES)
    except GpunetError as exc:
        return _refused(request, exc.message, exc.status)
    response = RedirectResponse("/account", status_code=303)
    start_session(request, response, session_id)
    jar(request).clear(response, cookies.OIDC_STATE)
    return response
