"""The explorer's forms and cookies (issue 10), on both databases.

Page routes are left out of the OpenAPI schema, so neither the authorization matrix nor
the schema fuzz reaches them. FORMS is their matrix: every route outside the schema that
writes has an entry saying how to post it rightly and how to post it with another
owner's (or visitor's) CSRF token; `test_forms_cover_every_page_write_route` fails when
such a route is added without one. Each form then gets: the rightful post works, a post
without its CSRF token, with a foreign one or from another site is refused, and hostile
bodies (oversized or repeated fields, other content types, undecodable bytes, a body
over the size limit) get a 4xx; a refused post changes no row.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import Morsel, SimpleCookie
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpunet.core.clock import FrozenClock
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.explorer import cookies
from gpunet.server.middleware import MAX_BODY_BYTES
from tests.integration.conftest import Net, OwnerHandle, make_settings
from tests.integration.snapshot import describe, diff, snapshot

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Owners:
    net: Net
    a: OwnerHandle
    b: OwnerHandle


@pytest.fixture
def owners(net: Net) -> Owners:
    return Owners(net, net.register(), net.register())


def csrf_of(net: Net, path: str) -> str:
    match = CSRF.search(net.client.get(path).text)
    assert match, path
    return match.group(1)


def sign_in(net: Net, owner: OwnerHandle) -> str:
    """A fresh browser signed in as `owner` on the page; the CSRF token of its session."""
    net.client.cookies.clear()
    form = {
        "email": owner.email,
        "password": owner.password,
        "csrf": csrf_of(net, "/account/signin"),
    }
    r = net.client.post("/account/signin", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(net, "/account")


# -- the matrix of page forms ----------------------------------------------------------


def _signin_rightful(w: Owners) -> dict[str, str]:
    w.net.client.cookies.clear()
    return {"email": w.a.email, "password": w.a.password, "csrf": csrf_of(w.net, "/account/signin")}


def _signin_foreign(w: Owners) -> dict[str, str]:
    # Login CSRF: the attacker's token (from their own browser) posted from the victim's
    # browser, to sign the victim in to the attacker's account.
    w.net.client.cookies.clear()
    attackers = csrf_of(w.net, "/account/signin")
    w.net.client.cookies.clear()
    csrf_of(w.net, "/account/signin")  # the victim's own pre-session
    return {"email": w.b.email, "password": w.b.password, "csrf": attackers}


def _signout_rightful(w: Owners) -> dict[str, str]:
    return {"csrf": sign_in(w.net, w.a)}


def _signout_foreign(w: Owners) -> dict[str, str]:
    # A's browser, posting a token made for B's session.
    b_token = sign_in(w.net, w.b)
    sign_in(w.net, w.a)
    return {"csrf": b_token}


@dataclass(frozen=True)
class PageForm:
    rightful: Callable[[Owners], dict[str, str]]  # sets up the browser; a form that works
    foreign: Callable[[Owners], dict[str, str]]  # the same with another's CSRF token


FORMS: dict[tuple[str, str], PageForm] = {
    ("POST", "/account/signin"): PageForm(_signin_rightful, _signin_foreign),
    ("POST", "/account/signout"): PageForm(_signout_rightful, _signout_foreign),
}
IDS = [f"{m} {p}" for m, p in FORMS]


def page_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves outside its OpenAPI schema."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as branches
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    return {
        (m, r.path)
        for r in routes
        if not getattr(r, "include_in_schema", True)
        for m in getattr(r, "methods", None) or ()
    }


def test_forms_cover_every_page_write_route(net: Net) -> None:
    routes = page_routes(net.client.app)  # type: ignore[arg-type]
    assert {("GET", "/"), ("GET", "/account"), ("GET", "/account/oidc/callback")} <= routes
    assert {(m, p) for m, p in routes if m in WRITES} == set(FORMS)


def post(net: Net, form: dict[str, str], path: str, **headers: str) -> httpx.Response:
    # The content type named even when no field is left (httpx sends none for no data).
    return net.client.post(path, data=form, headers=FORM | headers, follow_redirects=False)


def refused(net: Net, status: int | tuple[int, ...], send: Callable[[], httpx.Response]) -> None:
    before = snapshot(net.database)
    r = send()
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), r.text
    assert cookies.SESSION not in set_cookies(r)
    changes = diff(before, snapshot(net.database))
    assert not changes, describe(changes)


@pytest.mark.parametrize("route", FORMS, ids=IDS)
def test_rightful_form_works(owners: Owners, route: tuple[str, str]) -> None:
    before = snapshot(owners.net.database)
    r = post(owners.net, FORMS[route].rightful(owners), route[1])
    assert r.status_code == 303, r.text
    assert diff(before, snapshot(owners.net.database))  # a session opened, or ended


@pytest.mark.parametrize("route", FORMS, ids=IDS)
def test_csrf_missing_foreign_or_cross_site_is_refused(
    owners: Owners, route: tuple[str, str]
) -> None:
    net, entry, path = owners.net, FORMS[route], route[1]
    form = entry.rightful(owners)
    refused(net, 403, lambda: post(net, {k: v for k, v in form.items() if k != "csrf"}, path))
    foreign = entry.foreign(owners)
    refused(net, 403, lambda: post(net, foreign, path))
    form = entry.rightful(owners)
    refused(net, 403, lambda: post(net, form, path, origin="https://evil.example"))


@pytest.mark.parametrize("route", FORMS, ids=IDS)
def test_hostile_bodies_get_a_4xx_and_change_nothing(
    owners: Owners, route: tuple[str, str]
) -> None:
    net, path = owners.net, route[1]
    form = FORMS[route].rightful(owners)
    body = httpx.QueryParams(form)

    def raw(content: bytes, content_type: str) -> Callable[[], httpx.Response]:
        return lambda: net.client.post(
            path, content=content, headers={"content-type": content_type}, follow_redirects=False
        )

    for name in form:
        refused(net, 422, functools.partial(post, net, {**form, name: "x" * 5000}, path))
        refused(net, 422, raw(f"{body}&{name}=again".encode(), FORM["content-type"]))
    refused(net, 415, lambda: net.client.post(path, json=form, follow_redirects=False))
    refused(net, 415, raw(str(body).encode(), "text/plain"))
    refused(
        net,
        415,
        lambda: net.client.post(path, files={"f": b"x"}, data=form, follow_redirects=False),
    )
    refused(net, 415, raw(str(body).encode(), ""))
    refused(net, 422, raw(b"csrf=\xff\xfe", FORM["content-type"]))
    refused(net, 413, raw(b"x=" + b"y" * MAX_BODY_BYTES, FORM["content-type"]))


# -- cookies ---------------------------------------------------------------------------


def set_cookies(r: httpx.Response) -> dict[str, Morsel[str]]:
    out: dict[str, Morsel[str]] = {}
    for header in r.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        out.update(jar)
    return out


@pytest.fixture(params=["development", "production"])
def site(
    request: pytest.FixtureRequest, database: Database, database_url: str, clock: FrozenClock
) -> Iterator[tuple[Net, bool]]:
    production = request.param == "production"
    idp = "https://idp.example.test"  # never called: starting a sign-in only redirects
    settings = make_settings(
        database_url,
        environment=request.param,
        argon2_memory_kib=19456 if production else 1024,
        oidc_issuer=idp + "/",
        oidc_jwks_url=idp + "/jwks",
        oidc_client_id="gpunet",
        oidc_authorize_url=idp + "/authorize",
        oidc_token_url=idp + "/token",
    )
    app = create_app(settings, database=database, clock=clock)
    # Over https, so that the client sends Secure cookies back, as a browser would.
    with TestClient(app, base_url="https://testserver") as client:
        yield Net(client, clock, database, settings), production


def test_cookies_are_secure_outside_development_httponly_samesite_and_scoped(
    site: tuple[Net, bool],
) -> None:
    net, production = site
    owner = net.register()
    form = net.client.get("/account/signin")
    start = net.client.get("/account/oidc/start", follow_redirects=False)
    signin = net.client.post(
        "/account/signin",
        data={
            "email": owner.email,
            "password": owner.password,
            "csrf": CSRF.search(form.text).group(1),
        },  # type: ignore[union-attr]
        follow_redirects=False,
    )
    assert signin.status_code == 303
    signout = net.client.post(
        "/account/signout", data={"csrf": csrf_of(net, "/account")}, follow_redirects=False
    )
    assert signout.status_code == 303
    seen = {
        cookies.PRESESSION: (set_cookies(form), "strict", cookies.SHORT_S),
        cookies.OIDC_STATE: (set_cookies(start), "lax", cookies.SHORT_S),
        cookies.SESSION: (set_cookies(signin), "lax", cookies.SESSION_S),
    }
    for name, (jar, samesite, ttl) in seen.items():
        c = jar[name]
        assert c["httponly"] is True and c["path"] == "/account", name
        assert c["samesite"].lower() == samesite and int(c["max-age"]) == ttl, name
        assert bool(c["secure"]) is production, name
    ended = set_cookies(signout)[cookies.SESSION]
    # Cleared with the same path and flags, or the browser would keep the original.
    assert ended.value in ("", '""') and int(ended["max-age"]) == 0
    assert ended["path"] == "/account" and bool(ended["secure"]) is production
    assert net.client.get("/account", follow_redirects=False).status_code == 303
