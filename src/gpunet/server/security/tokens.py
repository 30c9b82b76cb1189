"""Owner access tokens: short-lived JWTs bound to one login session and one owner.

An access token names its session (`sid`); every request checks that the session is
not revoked, so logging out or revoking a session kills its access tokens at once.
No token is valid for more than one owner: `sub` is the owner and the session row
must belong to that same owner.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

from gpunet.core.errors import Unauthenticated
from gpunet.server.security.principal import Scope

ALGORITHM = "HS256"
AUDIENCE = "gpunet-api"
TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


@dataclass(frozen=True, slots=True)
class AccessClaims:
    owner_id: int
    session_id: str
    scopes: frozenset[Scope]
    expires_at: dt.datetime


class AccessTokens:
    def __init__(self, key: bytes, issuer: str, ttl_s: int) -> None:
        self._key = key
        self._issuer = issuer
        self._ttl = dt.timedelta(seconds=ttl_s)

    @property
    def ttl_s(self) -> int:
        return int(self._ttl.total_seconds())

    def issue(
        self, *, owner_id: int, session_id: str, scopes: frozenset[Scope], now: dt.datetime
    ) -> str:
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": str(owner_id),
            "sid": session_id,
            "scope": " ".join(sorted(s.value for s in scopes)),
            "typ": TOKEN_TYPE,
            "iat": int(now.timestamp()),
            "exp": int((now + self._ttl).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def is_ours(self, token: str) -> bool:
        """True if the token claims to be from this coordinator (not an OIDC token)."""
        try:
            return (
                jwt.decode(token, options={"verify_signature": False}).get("iss") == (self._issuer)
                and jwt.get_unverified_header(token).get("alg") == ALGORITHM
            )
        except jwt.PyJWTError:
            return False

    def verify(self, token: str, now: dt.datetime) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "sid", "typ"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid access token") from exc
        # Expiry is checked against the injected clock, not the wall clock.
        if claims["exp"] <= int(now.timestamp()):
            raise Unauthenticated("access token expired")
        if claims["typ"] != TOKEN_TYPE or not str(claims["sub"]).isdigit():
            raise Unauthenticated("invalid access token")
        try:
            scopes = frozenset(Scope(s) for s in str(claims.get("scope", "")).split() if s)
        except ValueError as exc:
            raise Unauthenticated("invalid access token") from exc
        return AccessClaims(
            owner_id=int(claims["sub"]),
            session_id=str(claims["sid"]),
            scopes=scopes,
            expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
        )
