"""Owners sign in on the explorer through the OIDC provider (authorization code + PKCE,
state, nonce), end to end: the app's own routes, the test provider of test_oidc.py as
the authorization server over HTTP, the browser's part played by following redirects.
Both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from gpunet.core.clock import FrozenClock, unix
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.explorer import cookies
from tests.integration.conftest import Net, OwnerHandle, make_settings
from tests.integration.snapshot import describe, diff, snapshot
from tests.integration.test_oidc import AUDIENCE, ISSUER, Provider

SUBJECT = "okta|carol-canary"
NOT_STARTED = "not started here"
PROVIDER_REFUSED = "provider refused the sign-in"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@dataclass
class Site:
    net: Net
    provider: Provider
    mine: list[str]  # the OIDC owner's devices
    theirs: list[str]  # a built-in account's devices


@pytest.fixture
def site(
    database: Database, database_url: str, clock: FrozenClock, provider: Provider
) -> Iterator[Site]:
    provider.now = lambda: unix(clock.now())
    provider.signing_in, provider.nonce_override = SUBJECT, None
    settings = make_settings(
        database_url,
        oidc_issuer=ISSUER,
        oidc_jwks_url=provider.jwks_url,
        oidc_audience=AUDIENCE,
        oidc_client_id=AUDIENCE,
        oidc_authorize_url=provider.base_url + "/authorize",
        oidc_token_url=provider.base_url + "/token",
    )
    with TestClient(create_app(settings, database=database, clock=clock)) as client:
        net = Net(client, clock, database, settings)
        # The OIDC owner enrolls through the API with a bearer ID token, as test_oidc does.
        carol = OwnerHandle("", "", provider.token(unix(clock.now()), sub=SUBJECT), "")
        mine = [d.device_id for d in net.enroll(carol, 2)]
        theirs = [d.device_id for d in net.enroll(net.register(), 2)]
        yield Site(net, provider, mine, theirs)


def begin(site: Site) -> str:
    """Press the page's button and sign in at the provider: the callback URL it sends
    the browser back to (its path and query, for the test client)."""
    start = site.net.client.get("/account/oidc/start", follow_redirects=False)
    assert start.status_code == 303, start.text
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302
    url = urlsplit(back.headers["location"])
    assert url.path == "/account/oidc/callback"
    return f"{url.path}?{url.query}"


def refused(site: Site, callback: str, why: str) -> None:
    """The callback is answered with a clear 401 saying `why`, and no session or owner
    is made."""
    before = snapshot(site.net.database)
    r = site.net.client.get(callback, follow_redirects=False)
    assert r.status_code == 401, r.text
    assert "Sign-in failed" in r.text and why in r.text
    assert "gpunet_session=" not in r.headers.get("set-cookie", "")
    changes = diff(before, snapshot(site.net.database))
    assert not changes, describe(changes)
    assert site.net.client.get("/account", follow_redirects=False).status_code == 303


def test_sign_in_shows_only_the_owners_devices(site: Site) -> None:
    r = site.net.client.get(begin(site), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/account"
    assert "gpunet_session=" in r.headers["set-cookie"]
    page = site.net.client.get("/account")
    assert page.status_code == 200
    assert all(d in page.text for d in site.mine)
    assert not any(d in page.text for d in site.theirs)
    assert site.net.client.get(f"/account/devices/{site.mine[0]}").status_code == 200
    assert site.net.client.get(f"/account/devices/{site.theirs[0]}").status_code == 404


def test_wrong_state_is_refused_before_the_code_is_spent(site: Site) -> None:
    callback = begin(site)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    refused(site, re.sub(r"state=[^&]+", "state=not-the-state", callback), NOT_STARTED)
    refused(site, callback.split("&state=")[0], NOT_STARTED)  # no state at all
    assert code not in site.provider.redeemed  # refused before any call to the provider


def test_replayed_code_is_refused(site: Site) -> None:
    callback = begin(site)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    # The attacker replays the very request: the same code, state and state cookie.
    kept = site.net.client.cookies.get(cookies.OIDC_STATE)
    assert site.net.client.get(callback, follow_redirects=False).status_code == 303
    site.net.client.cookies.clear()
    site.net.client.cookies.set(cookies.OIDC_STATE, kept or "", path="/account")
    refused(site, callback, PROVIDER_REFUSED)
    assert site.provider.redeemed.count(code) == 2  # the provider was asked, and said no


def test_stolen_code_in_another_browser_fails_pkce(site: Site) -> None:
    victims = parse_qs(urlsplit(begin(site)).query)["code"][0]
    site.net.client.cookies.clear()
    own = begin(site)  # the attacker's own flow: their state, cookie and verifier
    refused(site, re.sub(r"code=[^&]+", f"code={victims}", own), PROVIDER_REFUSED)
    assert victims in site.provider.redeemed


def test_id_token_for_another_sign_in_is_refused(site: Site) -> None:
    site.provider.nonce_override = "a-nonce-from-another-sign-in"
    refused(site, begin(site), "not issued for this sign-in")
