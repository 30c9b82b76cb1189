"""Signed cookie values and CSRF tokens for the owner's pages.

A cookie value is `payload.expires.mac`, the MAC an HMAC-SHA256 under a key derived
from the coordinator's secret for one purpose, so a value made for one cookie is
worthless as another. The session cookie names the owner's `auth_sessions` row (a
random id, checked live on every request: signing out or `revoke-all` ends it at once).

CSRF: every form carries a token that is an HMAC of something the attacker's page
cannot read: the session id once signed in; before that (the sign-in form) a random
value in an HttpOnly cookie (double submit, bound by the MAC). Cookies are SameSite and
scoped to /account too, and a POST whose Origin names another site is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

SESSION = "gpunet_session"
PRESESSION = "gpunet_presession"
OIDC_STATE = "gpunet_oidc"
PATH = "/account"
SESSION_S = 12 * 3600
SHORT_S = 600


def _mac(key: bytes, purpose: str, text: str) -> str:
    digest = hmac.new(key, f"{purpose}\n{text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class CookieJar:
    key: bytes
    secure: bool

    def seal(self, purpose: str, payload: str, ttl_s: int) -> str:
        expires = str(int(time.time()) + ttl_s)
        return f"{payload}.{expires}.{_mac(self.key, purpose, payload + '.' + expires)}"

    def open(self, purpose: str, value: str | None) -> str | None:
        """The payload of a value this jar sealed for `purpose`, unexpired; else None."""
        if not value or len(value) > 1024 or value.count(".") < 2:
            return None
        rest, mac = value.rsplit(".", 1)
        payload, expires = rest.rsplit(".", 1)
        if not expires.isdigit() or int(expires) < time.time():
            return None
        if not hmac.compare_digest(mac, _mac(self.key, purpose, rest)):
            return None
        return payload

    def set(self, response: Response, name: str, value: str, ttl_s: int, samesite: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=ttl_s,
            path=PATH,
            secure=self.secure,
            httponly=True,
            samesite=samesite,  # type: ignore[arg-type]
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=PATH, secure=self.secure, httponly=True)

    # -- CSRF -----------------------------------------------------------------------------

    def csrf_for(self, bound_to: str) -> str:
        return _mac(self.key, "csrf", bound_to)

    def csrf_ok(self, bound_to: str | None, token: str | None) -> bool:
        if not bound_to or not token or len(token) > 128:
            return False
        return hmac.compare_digest(token, self.csrf_for(bound_to))


def new_presession() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request, public_url: str) -> bool:
    """A browser names the page a POST came from; one from another site is refused.
    No Origin (old browsers, non-browser clients) falls back on the CSRF token alone."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin.rstrip("/") in (own, public_url.rstrip("/"))
