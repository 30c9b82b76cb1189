"""External identity providers: JWTs from a configured issuer, checked against its JWKS.

The test plays the provider: it makes an RSA key set and serves it over HTTP on
loopback, as Auth0, Okta or Keycloak would at their JWKS address. For the explorer's
sign-in it is also the authorization server: `/authorize` signs `signing_in` in at once
and redirects back with a code; `/token` redeems a code once, for the client and
redirect URI it was issued to and the PKCE verifier of its challenge (RFC 6749, 7636).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gpunet.core.clock import FrozenClock, unix
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import ExternalIdentity, Owner
from tests.integration.conftest import make_settings

ISSUER = "https://idp.example.test/"
AUDIENCE = "gpunet"


class Provider:
    def __init__(self) -> None:
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.fetches = 0
        self.signing_in = "auth0|alice"  # the user at the provider's login screen
        self.nonce_override: str | None = None  # an ID token minted for another sign-in
        self.now: Callable[[], int] = lambda: int(time.time())
        self.codes: dict[str, dict[str, str]] = {}
        self.redeemed: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/authorize?"):
                    self.send_response(302)
                    self.send_header("Location", provider.authorize(self.path))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                provider.fetches += 1
                self._json(200, provider.jwks())

            def do_POST(self) -> None:
                form = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                self._json(*provider.redeem(parse_qs(form)))

            def _json(self, status: int, value: dict[str, Any]) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def authorize(self, path: str) -> str:
        """The redirect back to the client, with a fresh code bound to this request."""
        q = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "client_id": q["client_id"],
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
            "nonce": q["nonce"],
            "sub": self.signing_in,
        }
        return q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})

    def redeem(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        f = {k: v[0] for k, v in form.items()}
        grant = self.codes.pop(f.get("code", ""), None)  # a code is good once
        self.redeemed.append(f.get("code", ""))
        verifier = f.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (
            grant is None
            or f.get("grant_type") != "authorization_code"
            or f.get("client_id") != grant["client_id"]
            or f.get("redirect_uri") != grant["redirect_uri"]
            or challenge.decode() != grant["challenge"]
        ):
            return 400, {"error": "invalid_grant"}
        nonce = self.nonce_override or grant["nonce"]
        token = self.token(self.now(), sub=grant["sub"], aud=grant["client_id"], nonce=nonce)
        return 200, {"access_token": "opaque", "token_type": "Bearer", "id_token": token}

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            out.append(jwk)
        return {"keys": out}

    def token(
        self,
        now: int,
        *,
        sub: str = "auth0|alice",
        kid: str = "k1",
        iss: str = ISSUER,
        aud: str = AUDIENCE,
        exp_in: int = 300,
        key: Any = None,
        **extra: Any,
    ) -> str:
        claims = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in, **extra}
        return jwt.encode(claims, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def client(
    database: Database, database_url: str, clock: FrozenClock, provider: Provider
) -> Iterator[TestClient]:
    settings = make_settings(
        database_url,
        oidc_issuer=ISSUER,
        oidc_jwks_url=provider.jwks_url,
        oidc_audience=AUDIENCE,
        oidc_jwks_min_refetch_s=0,
    )
    with TestClient(create_app(settings, database=database, clock=clock)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_provider_token_maps_to_one_owner(
    client: TestClient, provider: Provider, clock: FrozenClock, database: Database
) -> None:
    now = unix(clock.now())
    for _ in range(2):
        r = client.get("/api/v1/account", headers=bearer(provider.token(now)))
        assert r.status_code == 200, r.text
    other = client.get("/api/v1/account", headers=bearer(provider.token(now, sub="okta|bob")))
    assert other.status_code == 200
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Owner)).scalar_one() == 2
        links = s.execute(select(ExternalIdentity.subject)).scalars().all()
    assert sorted(links) == ["auth0|alice", "okta|bob"]


def test_provider_owner_can_enroll(
    client: TestClient, provider: Provider, clock: FrozenClock
) -> None:
    r = client.post(
        "/api/v1/enrollment-codes",
        json={"max_devices": 1},
        headers=bearer(provider.token(unix(clock.now()))),
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "foreign_key",
        "unknown_kid",
        "hs256_with_public_key",
        "alg_none",
    ],
)
def test_bad_provider_tokens_are_refused(
    case: str, client: TestClient, provider: Provider, clock: FrozenClock, database: Database
) -> None:
    now = unix(clock.now())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = {
        "expired": lambda: provider.token(now - 1000, exp_in=10),
        "wrong_audience": lambda: provider.token(now, aud="someone-else"),
        "wrong_issuer": lambda: provider.token(now, iss="https://evil.example/"),
        "foreign_key": lambda: provider.token(now, key=stranger),
        "unknown_kid": lambda: "",
        "hs256_with_public_key": lambda: jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
            "not-the-real-key-but-long-enough-for-hmac",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        "alg_none": lambda: jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
            None,
            algorithm="none",
            headers={"kid": "k1"},
        ),
    }[case]()
    if case == "unknown_kid":
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
            stranger,
            algorithm="RS256",
            headers={"kid": "k-unknown"},
        )
    r = client.get("/api/v1/account", headers=bearer(token))
    assert r.status_code == 401, r.text
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Owner)).scalar_one() == 0


def test_key_rotation_at_the_provider_is_picked_up(
    client: TestClient, provider: Provider, clock: FrozenClock
) -> None:
    now = unix(clock.now())
    assert client.get("/api/v1/account", headers=bearer(provider.token(now))).status_code == 200
    provider.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        r = client.get(
            "/api/v1/account", headers=bearer(provider.token(unix(clock.now()), kid="k2"))
        )
        assert r.status_code == 200, r.text
    finally:
        del provider.keys["k2"]


def test_provider_unreachable_is_a_clean_401(
    database: Database, database_url: str, clock: FrozenClock, provider: Provider
) -> None:
    settings = make_settings(
        database_url,
        oidc_issuer=ISSUER,
        oidc_jwks_url="http://127.0.0.1:9/jwks.json",
        oidc_audience=AUDIENCE,
    )
    with TestClient(create_app(settings, database=database, clock=clock)) as c:
        r = c.get("/api/v1/account", headers=bearer(provider.token(unix(clock.now()))))
        assert r.status_code == 401
        assert "unavailable" in r.json()["error"]["message"]


def test_unknown_key_ids_do_not_hammer_the_provider(
    database: Database, database_url: str, clock: FrozenClock, provider: Provider
) -> None:
    settings = make_settings(
        database_url, oidc_issuer=ISSUER, oidc_jwks_url=provider.jwks_url, oidc_audience=AUDIENCE
    )
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = unix(clock.now())
    with TestClient(create_app(settings, database=database, clock=clock)) as c:
        before = provider.fetches
        for i in range(20):
            token = jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
                stranger,
                algorithm="RS256",
                headers={"kid": f"made-up-{i}"},
            )
            assert c.get("/api/v1/account", headers=bearer(token)).status_code == 401
        assert provider.fetches - before == 1
