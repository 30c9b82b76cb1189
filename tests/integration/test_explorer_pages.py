"""The explorer pages and the JSON they render (issue 10), on both databases."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from gpunet.core.clock import FrozenClock
from gpunet.server.api import explorer_views
from gpunet.server.app import background_jobs, create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import AuthSession, Challenge, Device, NetworkSnapshot
from gpunet.server.services import explorer_history, uptime
from gpunet.server.state import AppState
from tests.explorer_world import ALPHA, World, seed
from tests.integration.conftest import Net, make_settings


@pytest.fixture
def world(database: Database, database_url: str, clock: FrozenClock) -> Iterator[tuple[Net, World]]:
    explorer_views.forget_cached()
    app = create_app(make_settings(database_url), database=database, clock=clock)
    with TestClient(app) as client:
        net = Net(client, clock, database, app.state.gpunet.settings)
        st: AppState = app.state.gpunet
        yield net, seed(net, st)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_overview_renders_the_json_figures(world: tuple[Net, World]) -> None:
    net, _w = world
    r = net.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    stats = net.client.get("/api/v1/explorer/stats").json()
    overview = net.client.get("/api/v1/explorer/overview").json()
    assert stats["verified_gpus"] == 3 and overview["stats"] == stats
    html = r.text
    assert re.search(r'id="verified-gpus">3<', html)
    assert re.search(r'id="suspended">1<', html)
    assert f'id="verified-compute">{overview["verified_int8_tops"]:,.1f}' in html
    assert "clusters-running" not in html or overview["clusters_running"] is not None
    assert len(overview["epochs"]) == 1 and f'/epochs/{overview["epochs"][0]["epoch"]}' in html
    assert html.count("<svg") == 3 and "<script>" not in html


def test_pages_carry_csp_and_are_cacheable(world: tuple[Net, World]) -> None:
    net, w = world
    for path in ("/", "/devices", f"/devices/{w.proven}", "/epochs", f"/epochs/{w.epoch}",
                 "/incidents"):
        r = net.client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "public, max-age=30"
        again = net.client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
    css = net.client.get("/static/explorer.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text


def test_device_page_shows_proofs_and_epochs(world: tuple[Net, World]) -> None:
    net, w = world
    page = text_of(net.client.get(f"/devices/{w.proven}").text)
    assert "H100 SXM" in page and "verified" in page
    proofs = net.client.get(f"/api/v1/explorer/devices/{w.proven}/proofs").json()["items"]
    assert [p["outcome"] for p in proofs] == ["passed", "failed", "passed"]
    assert all(p["issued_hour"].endswith(":00:00Z") for p in proofs)
    assert proofs[1]["reason"] == "too_slow" and proofs[1]["commit_seconds"] == 3.5
    assert "too_slow" in page and "3.5" in page
    epochs = net.client.get(f"/api/v1/explorer/devices/{w.proven}/epochs").json()["items"]
    closed = next(e for e in epochs if e["epoch"] == w.epoch)
    assert closed["closed"] and closed["counted_slots"] == 60 and int(closed["reward"]) > 0
    payouts = net.client.get(f"/api/v1/explorer/epochs/{w.epoch}/payouts").json()["items"]
    # A's two H100s share a wallet: their floored shares add up to it within a unit each.
    wallet = next(int(p["amount"]) for p in payouts if p["wallet"] == "wallet-alpha-canary-1")
    assert 2 * int(closed["reward"]) <= wallet <= 2 * int(closed["reward"]) + 2


def test_history_keeps_hourly_snapshots(world: tuple[Net, World]) -> None:
    net, _w = world
    h = net.client.get("/api/v1/explorer/history?hours=24").json()
    assert h["period_seconds"] == 3600 and len(h["items"]) == 4
    assert {p["verified"] for p in h["items"]} == {3}
    assert sum(p["proofs_passed"] for p in h["items"]) == 2
    assert sum(p["proofs_failed"] for p in h["items"]) == 1


def _hour_of_activity(net: Net, st: AppState, start: dt.datetime, devices: list[str]) -> None:
    """In the hour from `start`: proofs passed, passed, failed, missed; the first device
    up for 10 slots and the second for 20 (through the uptime flusher's own merge)."""
    clock = st.rewards.schedule.clock
    first = clock.global_slot_ceil(start.timestamp())
    with net.database.transaction() as s:
        pks = [s.execute(select(Device.id).where(Device.public_id == d)).scalar_one()
               for d in devices]
        for i, outcome in enumerate(["passed", "passed", "failed", "missed"]):
            at = start + dt.timedelta(minutes=5 + 10 * i)
            s.add(Challenge(
                id=secrets.token_hex(16), device_id=pks[0], kind="spot", batch=f"h{i}",
                profile="h100-sxm", body="{}", issued_at=at, deadline=at, completed_at=at,
                outcome=outcome))
        bits: dict[tuple[int, int], int] = {}
        for pk, count in zip(pks, (10, 20), strict=True):
            for slot in range(first, first + count):
                key = (slot // uptime.CHUNK_SLOTS, pk)
                bits[key] = bits.get(key, 0) | 1 << slot % uptime.CHUNK_SLOTS
        uptime.merge_bits(s, bits)


def _plotted(html: str) -> tuple[int, int]:
    """(points on the verified-supply line, bars in the proofs plot)."""
    supply = re.search(r'<polyline class="line s1" points="([^"]+)"', html)
    assert supply
    return len(supply.group(1).split()), html.count("<rect ")


def test_snapshot_job_writes_its_hour_once_and_the_plots_read_it(
    world: tuple[Net, World],
) -> None:
    net, w = world
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    (job,) = [j for j in background_jobs(st) if j.name == "explorer-history"]
    hour = explorer_history.period_of(net.clock.now())  # in progress, not yet kept
    start = explorer_history.period_start(hour)
    _hour_of_activity(net, st, start, [w.proven, w.a_devices[1]])
    net.clock.advance(3600)  # the hour has ended: the job's pass keeps it
    before = _plotted(net.client.get("/").text)
    assert job.run_once() is True

    with net.database.read() as s:
        kept = s.get(NetworkSnapshot, hour)
        assert kept is not None and s.query(NetworkSnapshot).count() == 5
        row = {c.name: getattr(kept, c.name) for c in NetworkSnapshot.__table__.columns}
    profiles = [st.catalog.get(p) for p in ("h100-sxm", "h100-sxm", "rtx-4090")]
    assert row["at"].replace(tzinfo=dt.UTC) == start
    assert (row["verified"], row["pending"], row["suspect"], row["suspended"]) == (3, 1, 0, 1)
    assert row["verified_vram_mib"] == 2 * 81559 + 24564
    assert row["verified_int8_tops"] == pytest.approx(sum(
        p.peak_int8_tops for p in profiles if p and p.peak_int8_tops))
    assert (row["online_devices"], row["online_slots"]) == (2, 30)
    assert (row["proofs_passed"], row["proofs_failed"], row["proofs_missed"]) == (2, 1, 1)

    # Within its period another pass (or another replica) writes nothing, even though the
    # network has changed since: the hour keeps what was taken first.
    with net.database.transaction() as s:
        s.execute(update(Device).where(Device.public_id == w.b_devices[1]).values(
            status="verified"))
    net.clock.advance(1500)
    assert job.run_once() is False
    with net.database.read() as s:
        kept = s.get(NetworkSnapshot, hour)
        assert kept is not None and kept.verified == 3 and kept.taken_at == row["taken_at"]

    points = {p["at"]: p for p in net.client.get("/api/v1/explorer/history?hours=6").json()[
        "items"]}
    served = points[start.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert (served["verified"], served["proofs_passed"], served["proofs_missed"]) == (3, 2, 1)
    after = _plotted(net.client.get("/").text)
    assert after == (before[0] + 1, before[1] + 3)  # one more hour; passed, failed, missed


def test_search_opens_a_device_or_an_epoch(world: tuple[Net, World]) -> None:
    net, w = world
    r = net.client.get(f"/search?q={w.proven}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/devices/{w.proven}"
    r = net.client.get(f"/search?q=%20{w.epoch}%20", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/epochs/{w.epoch}"
    r = net.client.get("/search?q=%3Cscript%3Ecanary-query%3C/script%3E")
    assert r.status_code == 404 and "canary-query" not in r.text


def test_epoch_page_gives_the_exact_verify_command(world: tuple[Net, World]) -> None:
    net, w = world
    e = net.client.get(f"/api/v1/explorer/epochs/{w.epoch}").json()
    amount = next(p["amount"] for p in net.client.get(
        f"/api/v1/explorer/epochs/{w.epoch}/payouts").json()["items"]
        if p["wallet"] == "wallet-alpha-canary-1")
    page = net.client.get(f"/epochs/{w.epoch}?wallet=wallet-alpha-canary-1").text
    command = (
        f"gpunet rewards verify --root {e['root']} --epoch {w.epoch} "
        f"--wallet wallet-alpha-canary-1 --amount {amount} --from-url "
        f"http://127.0.0.1:8000/api/v1/explorer/epochs/{w.epoch}/proofs/wallet-alpha-canary-1"
    )
    assert command in page


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/devices/not-a-device", 404),
        ("/devices/dev_aaaaaaaaaaaaaaaa", 404),
        ("/epochs/abc", 404),
        ("/epochs/999999", 404),
        ("/epochs/99999999999999999999999", 404),
        ("/devices?status=%00&model=%27%3B--&cursor=x", 200),
        ("/devices/dev_aaaaaaaaaaaaaaaa?before=-1", 422),
        ("/api/v1/explorer/history?hours=0", 422),
        ("/api/v1/explorer/history?hours=100000", 422),
        ("/api/v1/explorer/devices/dev_aaaaaaaaaaaaaaaa/proofs", 404),
        ("/api/v1/explorer/devices/bad/proofs", 422),
        ("/api/v1/explorer/devices/dev_aaaaaaaaaaaaaaaa/proofs?before=yesterday", 422),
        ("/api/v1/explorer/devices/dev_aaaaaaaaaaaaaaaa/epochs?limit=1000", 422),
        ("/search?q=" + "x" * 300, 422),
    ],
)
def test_hostile_input_gets_a_clear_4xx(world: tuple[Net, World], path: str, status: int) -> None:
    net, _w = world
    assert net.client.get(path).status_code == status


def _signin(net: Net, email: str, password: str, csrf: str | None = None) -> object:
    form = net.client.get("/account/signin")
    token = csrf or re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return net.client.post(
        "/account/signin", data={"email": email, "password": password, "csrf": token},
        follow_redirects=False,
    )


def test_owner_sees_only_their_own_devices(world: tuple[Net, World]) -> None:
    net, w = world
    assert net.client.get("/account", follow_redirects=False).headers["location"] == (
        "/account/signin")
    r = _signin(net, ALPHA[0], ALPHA[1])
    assert r.status_code == 303  # type: ignore[attr-defined]
    cookie = r.headers["set-cookie"]  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/account" in cookie
    page = net.client.get("/account")
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    assert all(d in page.text for d in w.a_devices)
    assert not any(secret in page.text for secret in w.b_private)
    assert net.client.get(f"/account/devices/{w.proven}").status_code == 200
    for other in w.b_devices:
        r2 = net.client.get(f"/account/devices/{other}")
        assert r2.status_code == 404 and other not in r2.text


def test_signin_refuses_forged_forms_and_wrong_passwords(world: tuple[Net, World]) -> None:
    net, _w = world
    assert _signin(net, ALPHA[0], ALPHA[1], csrf="forged").status_code == 403  # type: ignore[attr-defined]
    wrong = _signin(net, ALPHA[0], "not the password")
    assert wrong.status_code == 401  # type: ignore[attr-defined]
    assert "gpunet_session=" not in wrong.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    net.client.cookies.clear()
    r = net.client.post("/account/signin", content=b"\xff\xfe", headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422
    cross = net.client.post("/account/signin", data={"email": ALPHA[0]},
                            headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403


def test_signout_needs_the_csrf_token_and_ends_the_session(world: tuple[Net, World]) -> None:
    net, _w = world
    _signin(net, ALPHA[0], ALPHA[1])
    assert net.client.post("/account/signout", data={"csrf": "forged"}).status_code == 403
    assert net.client.get("/account").status_code == 200
    page = net.client.get("/account").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = net.client.post("/account/signout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    with net.database.read() as s:
        assert all(a.revoked_at is not None for a in s.query(AuthSession).filter(
            AuthSession.scopes == "devices:read"))
    assert net.client.get("/account", follow_redirects=False).status_code == 303


def test_public_pages_leak_nothing(world: tuple[Net, World]) -> None:
    net, w = world
    paths = ["/", "/devices", "/devices?status=verified", "/epochs", f"/epochs/{w.epoch}",
             "/incidents", "/search?q=x", "/account/signin"]
    paths += [f"/devices/{d}" for d in w.a_devices + w.b_devices]
    paths += [f"/api/v1/explorer/devices/{d}/proofs" for d in w.a_devices]
    paths += [f"/api/v1/explorer/devices/{d}/epochs" for d in w.a_devices]
    paths += ["/api/v1/explorer/overview", "/api/v1/explorer/history"]
    for path in paths:
        r = net.client.get(path)
        blob = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        leaked = [s for s in w.secrets if s in blob]
        assert not leaked, (path, leaked)
