"""Failed sign-ins throttled per account from many addresses, and per /64 over IPv6.

The rule under test is the one docs/accounts.md states and services.login_throttle
decides: back-off after 5 failures (here), lock-out after 10, and never a denial an
attacker can force on the owner (known address, after the window, e-mailed token,
operator).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from gpunet.cli.main import cli
from gpunet.core.clock import FrozenClock
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import AuditRecord, LoginThrottle
from gpunet.server.services.login_throttle import Policy
from gpunet.server.services.mailer import MemoryMailer, SmtpMailer
from gpunet.server.services.ratelimit import address_key
from tests.integration.conftest import make_settings
from tests.smtp import HOST, relay

EMAIL = "victim@example.com"
PASSWORD = "correct horse battery"
HOME = "198.51.100.7"
# Six attacking addresses: two IPv4, four IPv6 of which three share one /64.
ATTACKERS = (
    "203.0.113.1",
    "192.0.2.9",
    "2001:db8:1:2::1",
    "2001:db8:1:2::dead",
    "2001:db8:1:2:ffff::3",
    "2001:db8:9::77",
)
THROTTLE = {
    "login_backoff_after": 5,
    "login_backoff_max_s": 60,
    "login_lockout_after": 10,
    "login_lockout_s": 600,
}


@dataclass
class World:
    app: Any
    clock: FrozenClock
    database: Database
    database_url: str
    mailer: MemoryMailer
    clients: dict[str, TestClient] = field(default_factory=dict)

    def client(self, address: str) -> TestClient:
        if address not in self.clients:
            self.clients[address] = TestClient(self.app, client=(address, 40000))
        return self.clients[address]

    def login(self, address: str, password: str, email: str = EMAIL) -> Response:
        return self.client(address).post(
            "/api/v1/auth/token", json={"email": email, "password": password}
        )

    def failures(self) -> int:
        with self.database.read() as s:
            row = s.execute(select(LoginThrottle)).scalar_one_or_none()
            return 0 if row is None else row.failures

    def lock(self) -> None:
        """Wrong passwords from the attackers, waiting out each back-off, until locked."""
        n = 0
        while True:
            r = self.login(ATTACKERS[n % len(ATTACKERS)], "wrong password")
            n += 1
            if r.status_code == 429:
                if "locked" in r.json()["error"]["message"]:
                    return
                self.clock.advance(int(r.headers["Retry-After"]))
                continue
            assert r.status_code == 401, r.text
            assert n < 100

    def audit(self, action: str) -> list[AuditRecord]:
        with self.database.read() as s:
            rows = s.execute(select(AuditRecord).where(AuditRecord.action == action)).scalars()
            return list(rows)


@pytest.fixture
def world(database: Database, database_url: str, clock: FrozenClock) -> Iterator[World]:
    settings = make_settings(database_url, **THROTTLE)
    app = create_app(settings, database=database, clock=clock)
    mailer = MemoryMailer()
    app.state.gpunet.mailer = mailer
    w = World(app, clock, database, database_url, mailer)
    home = w.client(HOME)
    r = home.post("/api/v1/accounts", json={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 201, r.text
    # The owner signs in once from home, which makes that address known.
    assert w.login(HOME, PASSWORD).status_code == 200
    yield w
    for c in w.clients.values():
        c.close()


def test_wrong_passwords_from_many_addresses_are_held_back_per_account(world: World) -> None:
    # Five guesses, each from a different address: each is checked and refused.
    for address in ATTACKERS[:5]:
        assert world.login(address, "wrong password").status_code == 401
    # The sixth, from yet another address, must wait: the count is the account's.
    r = world.login(ATTACKERS[5], "wrong password")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert "too many failed sign-ins to this account" in r.json()["error"]["message"]
    # The attack of finding 3: 150 more guesses in the same minute from every address,
    # none checked (no 401), and none counted, so none pushes the window further out.
    codes = {world.login(ATTACKERS[i % 6], f"guess {i}").status_code for i in range(150)}
    assert codes == {429}
    assert world.failures() == 5
    # Held back means not checked at all: even the right password waits.
    assert world.login("203.0.113.200", PASSWORD).status_code == 429
    # Once the window has passed, one guess is checked; the next waits twice as long.
    world.clock.advance(2)
    assert world.login(ATTACKERS[2], "wrong password").status_code == 401
    r = world.login(ATTACKERS[3], "wrong password")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "4"
    # After the window the right password works from an address never seen before,
    # and starts the count again.
    world.clock.advance(4)
    assert world.login("203.0.113.200", PASSWORD).status_code == 200
    assert world.failures() == 0


def test_the_owner_signs_in_from_a_known_address_even_when_locked(world: World) -> None:
    world.lock()
    r = world.login(ATTACKERS[0], PASSWORD)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "600"
    assert "locked" in r.json()["error"]["message"]
    # The owner at home is not held back: neither a wrong nor the right password waits.
    assert world.login(HOME, "a typo in it").status_code == 401
    assert world.login(HOME, PASSWORD).status_code == 200
    assert world.failures() == 0
    # The lock, and the sign-in that cleared it, are both on the record.
    [lock] = world.audit("account.lock")
    assert json.loads(lock.after or "{}") == {"locked": True, "failures": 10}
    [unlock] = world.audit("account.unlock")
    assert unlock.actor_kind == "owner"
    assert json.loads(unlock.after or "{}")["by"] == "sign-in"


def test_a_known_ipv6_address_is_its_whole_64(world: World) -> None:
    home6 = "2001:db8:aa:bb::10"
    assert world.login(home6, PASSWORD).status_code == 200
    world.lock()
    # A privacy address in the same /64 as the owner's earlier sign-in.
    assert world.login("2001:db8:aa:bb:1234:5678:9abc:def0", PASSWORD).status_code == 200


def test_a_lock_out_ends_by_itself_after_its_window(world: World) -> None:
    world.lock()
    world.clock.advance(599)
    assert world.login("203.0.113.99", PASSWORD).status_code == 429
    world.clock.advance(1)
    assert world.login("203.0.113.99", PASSWORD).status_code == 200


def test_the_e_mailed_token_unlocks_and_makes_its_address_known(world: World) -> None:
    world.lock()
    [mail] = world.mailer.sent
    assert mail.to == EMAIL
    token = mail.body.split("Unlock token: ", 1)[1].split()[0]
    # The attackers' locking attempts sent one mail, not one per attempt.
    assert world.login(ATTACKERS[1], "wrong password").status_code == 429
    assert len(world.mailer.sent) == 1
    cafe = world.client("100.64.0.5")
    assert (
        cafe.post("/api/v1/auth/unlock", json={"token": "gpn_ul_not-the-token"}).status_code == 401
    )
    assert cafe.post("/api/v1/auth/unlock", json={"token": token}).status_code == 204
    assert cafe.post("/api/v1/auth/unlock", json={"token": token}).status_code == 401
    [unlock] = world.audit("account.unlock")
    assert unlock.actor_kind == "owner"
    assert unlock.address == "100.64.0.5"
    assert json.loads(unlock.after or "{}")["by"] == "e-mail"
    # The attackers start over and lock it again; the address that redeemed the token
    # still gets in with the right password.
    world.lock()
    assert len(world.mailer.sent) == 2
    assert world.login("100.64.0.5", PASSWORD).status_code == 200


def test_the_lock_out_mail_reaches_the_owner_through_an_smtp_relay(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with relay() as (inbox, port):
        settings = make_settings(
            database_url, **THROTTLE, smtp_host=HOST, smtp_port=port, smtp_security="none"
        )
        app = create_app(settings, database=database, clock=clock)
        mailer = app.state.gpunet.mailer
        assert isinstance(mailer, SmtpMailer)  # the factory's choice, not a test's fake
        # (The World's own MemoryMailer is not the app's here: the app sends over SMTP.)
        w = World(app, clock, database, database_url, MemoryMailer())
        r = w.client(HOME).post("/api/v1/accounts", json={"email": EMAIL, "password": PASSWORD})
        assert r.status_code == 201, r.text
        w.lock()
        assert mailer.flush(30)
    [(recipients, mail)] = inbox.mails
    assert recipients == [EMAIL]
    assert mail["To"] == EMAIL
    assert mail["From"] == "gpunet@127.0.0.1"  # from GPUNET_PUBLIC_URL's host
    token = mail.get_content().split("Unlock token: ", 1)[1].split()[0]
    cafe = w.client("100.64.0.5")
    assert cafe.post("/api/v1/auth/unlock", json={"token": token}).status_code == 204
    assert w.login("100.64.0.5", PASSWORD).status_code == 200


def test_an_expired_unlock_token_is_refused(world: World) -> None:
    world.lock()
    token = world.mailer.sent[0].body.split("Unlock token: ", 1)[1].split()[0]
    world.clock.advance(86400)
    r = world.client("100.64.0.5").post("/api/v1/auth/unlock", json={"token": token})
    assert r.status_code == 401


def test_the_operator_unlocks_with_an_audited_command(world: World) -> None:
    world.lock()
    env = {"GPUNET_DATABASE_URL": world.database_url}
    result = CliRunner().invoke(cli, ["admin", "unlock", EMAIL], env=env)
    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    assert world.login("203.0.113.99", PASSWORD).status_code == 200
    [unlock] = world.audit("account.unlock")
    assert unlock.actor_kind == "admin"
    assert json.loads(unlock.before or "{}") == {"failures": 10, "locked": True}
    assert json.loads(unlock.after or "{}")["by"] == "operator"
    again = CliRunner().invoke(cli, ["admin", "unlock", EMAIL], env=env)
    assert again.exit_code == 0
    assert "no failed sign-ins" in again.output
    assert len(world.audit("account.unlock")) == 1
    unknown = CliRunner().invoke(cli, ["admin", "unlock", "nobody@example.com"], env=env)
    assert unknown.exit_code != 0


def test_unknown_accounts_are_not_throttled_per_account(world: World) -> None:
    # No row is kept for e-mails without an account (an attacker cannot fill the table);
    # those guesses are bounded by the per-address limit alone.
    for i in range(20):
        r = world.login(ATTACKERS[i % 6], "wrong password", email="nobody@example.com")
        assert r.status_code == 401
    assert world.failures() == 0


def test_the_per_address_login_limit_counts_an_ipv6_64_once(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(database_url, address_logins_per_window=3)
    app = create_app(settings, database=database, clock=clock)
    one_64 = [f"2001:db8:77:1::{i:x}" for i in range(1, 5)]
    codes = []
    for address in one_64:
        with TestClient(app, client=(address, 40000)) as c:
            body = {"email": "nobody@example.com", "password": "wrong password"}
            codes.append(c.post("/api/v1/auth/token", json=body).status_code)
    assert codes == [401, 401, 401, 429]
    # The next /64 over is another subscriber, with its own allowance.
    with TestClient(app, client=("2001:db8:77:2::1", 40000)) as c:
        body = {"email": "nobody@example.com", "password": "wrong password"}
        assert c.post("/api/v1/auth/token", json=body).status_code == 401


def test_address_key() -> None:
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:DB8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("testclient") == "testclient"
    assert address_key(None) is None


def test_back_off_doubles_to_its_cap_then_locks() -> None:
    p = Policy(
        backoff_after=5,
        backoff_max_s=900,
        lockout_after=20,
        lockout_s=3600,
        unlock_ttl_s=86400,
        known_address_days=180,
    )
    assert [p.wait_s(n) for n in range(4, 10)] == [0, 2, 4, 8, 16, 32]
    assert p.wait_s(19) == 900
    assert p.wait_s(20) == p.wait_s(10**9) == 3600
