"""The explorer in a real browser: Debian's chromium (/usr/bin/chromium, installed by
`.ci/run` and `make test`) driven by Playwright, against a real uvicorn serving a
seeded network. One server and one browser for the whole module.

Screenshots (light and dark, phone and desktop) go to $GPUNET_TEST_ARTIFACTS (default
var/artifacts/browser, gitignored); the folder is printed.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright import sync_api as playwright_api

from gpunet.core.clock import FrozenClock
from gpunet.server.api import explorer_views
from gpunet.server.app import create_app
from gpunet.server.db import migrate
from gpunet.server.db.engine import Database
from tests.explorer_world import ALPHA, World, seed
from tests.integration.conftest import Net, make_settings

CHROMIUM = os.environ.get("GPUNET_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("GPUNET_TEST_ARTIFACTS", "var/artifacts/browser"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World]]:
    """A seeded network served by uvicorn on a free port (SQLite)."""
    import datetime as dt

    explorer_views.forget_cached()
    path = tmp_path_factory.mktemp("browser") / "gpunet.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database.engine)
    clock = FrozenClock(dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC))
    port = _free_port()
    settings = make_settings(f"sqlite:///{path}", public_url=f"http://127.0.0.1:{port}")
    app = create_app(settings, database=database, clock=clock)
    with TestClient(app) as client:
        world = seed(Net(client, clock, database, settings), app.state.gpunet)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", world
    server.should_exit = True
    thread.join(timeout=10)
    database.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does it as root)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _context(browser: Any, **kw: Any) -> Any:
    ctx = browser.new_context(**kw)
    ctx.set_default_timeout(15_000)
    return ctx


def test_overview_shows_the_json_figures(site: tuple[str, World], browser: Any) -> None:
    base, _w = site
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(base + "/")
    api = ctx.request.get(base + "/api/v1/explorer/overview").json()
    stats = ctx.request.get(base + "/api/v1/explorer/stats").json()
    assert api["stats"] == stats and stats["verified_gpus"] == 3
    assert page.inner_text("#verified-gpus") == str(stats["verified_gpus"])
    assert page.inner_text("#suspended") == str(stats["devices_by_status"]["suspended"])
    assert page.inner_text("#verified-compute").startswith(f"{api['verified_int8_tops']:,.1f}")
    rows = page.locator("#by-model tbody tr")
    assert rows.count() == len(api["verified_by_model"])
    assert sum(int(rows.nth(i).locator("td").nth(2).inner_text()) for i in range(rows.count())) == 3
    assert page.locator("svg.plot").count() == 3
    ctx.close()


def test_search_finds_a_device_and_its_proofs(site: tuple[str, World], browser: Any) -> None:
    base, w = site
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(base + "/")
    page.fill("input[name=q]", w.proven)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(f"/devices/{w.proven}$"))
    assert page.inner_text("#device-status") == "verified"
    outcomes = page.locator("#proofs tbody tr td:nth-child(4) .outcome").all_inner_texts()
    assert outcomes == ["passed", "failed", "passed"]
    ctx.close()


def test_an_owner_sees_only_their_own_devices(site: tuple[str, World], browser: Any) -> None:
    base, w = site
    ctx = _context(browser)
    page = ctx.new_page()
    page.goto(base + "/account")
    page.wait_for_url(re.compile("/account/signin$"))
    page.fill("input[name=email]", ALPHA[0])
    page.fill("input[name=password]", ALPHA[1])
    page.click("form.signin button[type=submit]")
    page.wait_for_url(re.compile("/account$"))
    shown = set(page.locator("#my-devices tbody tr td:first-child").all_inner_texts())
    assert shown == set(w.a_devices)
    html = page.content()
    assert not [s for s in w.b_private if s in html]
    cookie = next(c for c in ctx.cookies() if c["name"] == "gpunet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/account"
    page.goto(base + f"/account/devices/{w.b_devices[0]}")
    assert "You have no such device." in page.content()
    page.goto(base + "/account")
    page.click("form.signout button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + "/account")
    page.wait_for_url(re.compile("/account/signin$"))
    ctx.close()


def test_screenshots_light_and_dark_phone_and_desktop(
    site: tuple[str, World], browser: Any
) -> None:
    base, w = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    backgrounds = {}
    for scheme in ("light", "dark"):
        for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            ctx = _context(browser, color_scheme=scheme, viewport=viewport)
            page = ctx.new_page()
            for label, path in (("overview", "/"), ("device", f"/devices/{w.proven}"),
                                ("epoch", f"/epochs/{w.epoch}")):
                page.goto(base + path)
                out = ARTIFACTS / f"{label}-{scheme}-{name}.png"
                page.screenshot(path=str(out), full_page=True)
                assert out.stat().st_size > 5_000
                # Readable on a phone: nothing wider than the screen but scroll boxes.
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], (label, scheme, name, width)
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            ctx.close()
    assert backgrounds["light"] != backgrounds["dark"]
    print(f"\nexplorer screenshots: {ARTIFACTS.resolve()}")


def test_nothing_private_reaches_the_browser(site: tuple[str, World], browser: Any) -> None:
    """Every response the browser received (pages, the stylesheet, the script, redirects,
    JSON), every rendered page and its scripts: none holds a seeded private value."""
    base, w = site
    ctx = _context(browser)
    page = ctx.new_page()
    seen: list[str] = []
    violations: list[str] = []

    def console(message: Any) -> None:
        if "Content Security" in message.text:
            violations.append(message.text)

    page.on("console", console)

    def record(response: Any) -> None:
        headers = " ".join(f"{k}: {v}" for k, v in response.all_headers().items())
        body = "" if 300 <= response.status < 400 else response.text()
        # The URL is what this browser asked for (a search may carry anything typed).
        seen.append(f"{headers}\n{body}")

    page.on("response", record)
    paths = ["/", "/devices", "/devices?status=verified", "/epochs", f"/epochs/{w.epoch}",
             "/incidents", "/account/signin", f"/search?q={ALPHA[0]}", "/search?q=nothing"]
    paths += [f"/devices/{d}" for d in w.a_devices + w.b_devices]
    for path in paths:
        page.goto(base + path)
        seen.append(page.content())
        seen += page.eval_on_selector_all("script", "els => els.map(e => e.src + e.textContent)")
    page.goto(base + "/")
    page.fill("input[name=q]", w.b_devices[0])
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(f"/devices/{w.b_devices[0]}$"))
    seen.append(page.content())
    blob = "\n".join(seen)
    assert "/static/explorer.js" in blob and "/static/explorer.css" in blob
    leaked = sorted(s for s in w.secrets if s in blob)
    assert not leaked, leaked
    assert not violations, violations
    ctx.close()
