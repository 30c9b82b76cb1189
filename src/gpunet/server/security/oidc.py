"""External identity providers (Auth0, Okta, Keycloak, ...) through OIDC JWTs.

A token is accepted only if it is signed by a key in the configured issuer's JWKS
with an asymmetric algorithm, names that issuer, and (when configured) our audience.
The key set is cached for a while; an unknown `kid` refreshes it once, so a provider's
key rotation is picked up without a restart.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from gpunet.core.errors import Unauthenticated

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    issuer: str
    subject: str
    email: str | None


class OidcVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str | None,
        cache_s: int = 300,
        min_refetch_s: float = 5.0,
    ) -> None:
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._audience = audience
        self._cache_s = cache_s
        # Tokens naming unknown key ids must not make us hammer the provider.
        self._min_refetch_s = min_refetch_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")
        self._lock = threading.Lock()

    def claims_issuer(self, token: str) -> bool:
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == (
                self.issuer
            )
        except jwt.PyJWTError:
            return False

    def _refresh(self) -> None:
        try:
            response = httpx.get(self._jwks_url, timeout=5.0)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated("identity provider keys are unavailable") from exc
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
        self._fetched_at = time.monotonic()

    def _key_for(self, kid: str) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._cache_s or (kid not in self._keys and age >= self._min_refetch_s):
                self._refresh()
            if kid not in self._keys:
                raise Unauthenticated("token signed by an unknown key")
            return self._keys[kid]

    def verify(self, token: str, now: dt.datetime) -> ExternalIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid identity token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALGORITHMS:
            raise Unauthenticated("invalid identity token")
        key = self._key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                audience=self._audience,
                options={
                    "require": ["exp", "iat", "sub", "iss"],
                    "verify_aud": self._audience is not None,
                    "verify_exp": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid identity token") from exc
        if int(claims["exp"]) <= int(now.timestamp()):
            raise Unauthenticated("identity token expired")
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise Unauthenticated("invalid identity token subject")
        email = claims.get("email") if claims.get("email_verified") else None
        return ExternalIdentity(self.issuer, subject, email if isinstance(email, str) else None)
