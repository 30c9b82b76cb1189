"""Built-in accounts: passwords, scoped short-lived tokens, refresh rotation, revocation."""

from __future__ import annotations

from sqlalchemy import func, select

from gpunet.server.db.tables import AuthSession, Owner
from tests.integration.conftest import Net


def test_register_rejects_duplicate_email_case_insensitively(net: Net) -> None:
    net.register("alice@example.com")
    r = net.client.post(
        "/api/v1/accounts", json={"email": "ALICE@example.com", "password": "another long pass"}
    )
    assert r.status_code == 409
    with net.database.read() as s:
        assert s.execute(select(func.count()).select_from(Owner)).scalar_one() == 1


def test_password_is_stored_as_argon2_hash(net: Net) -> None:
    net.register("bob@example.com", password="correct horse battery")
    with net.database.read() as s:
        owner = s.execute(select(Owner)).scalar_one()
    assert owner.password_hash is not None
    assert owner.password_hash.startswith("$argon2id$")
    assert "correct horse" not in owner.password_hash


def test_wrong_password_and_unknown_email_get_the_same_answer(net: Net) -> None:
    net.register("carol@example.com")
    wrong = net.client.post(
        "/api/v1/auth/token", json={"email": "carol@example.com", "password": "wrong password!"}
    )
    unknown = net.client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.com", "password": "wrong password!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_access_token_expires(net: Net) -> None:
    owner = net.register()
    assert net.client.get("/api/v1/account", headers=owner.headers).status_code == 200
    net.clock.advance(net.settings.access_token_ttl_s + 1)
    r = net.client.get("/api/v1/account", headers=owner.headers)
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]


def test_scoped_token_cannot_exceed_its_scopes(net: Net) -> None:
    owner = net.register("dave@example.com")
    t = net.client.post(
        "/api/v1/auth/token",
        json={"email": "dave@example.com", "password": owner.password, "scopes": ["devices:read"]},
    )
    assert t.status_code == 200
    headers = {"Authorization": f"Bearer {t.json()['access_token']}"}
    assert net.client.get("/api/v1/devices", headers=headers).status_code == 200
    r = net.client.post("/api/v1/enrollment-codes", json={}, headers=headers)
    assert r.status_code == 403
    assert "enroll" in r.json()["error"]["message"]


def test_refresh_rotates_and_reuse_revokes_the_session(net: Net) -> None:
    owner = net.register()
    first = net.client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200
    new_access = first.json()["access_token"]
    # The spent refresh token comes back: a thief or the owner, either way the session ends.
    replay = net.client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert replay.status_code == 401
    r = net.client.get("/api/v1/account", headers={"Authorization": f"Bearer {new_access}"})
    assert r.status_code == 401
    again = net.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert again.status_code == 401


def test_logout_revokes_access_token_at_once(net: Net) -> None:
    owner = net.register()
    assert net.client.post("/api/v1/auth/logout", headers=owner.headers).status_code == 204
    assert net.client.get("/api/v1/account", headers=owner.headers).status_code == 401
    r = net.client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert r.status_code == 401


def test_password_change_revokes_other_sessions(net: Net) -> None:
    owner = net.register("erin@example.com")
    other = net.client.post(
        "/api/v1/auth/token", json={"email": owner.email, "password": owner.password}
    ).json()
    r = net.client.post(
        "/api/v1/account/password",
        headers=owner.headers,
        json={"current_password": owner.password, "new_password": "a brand new passphrase"},
    )
    assert r.status_code == 204
    assert net.client.get("/api/v1/account", headers=owner.headers).status_code == 200
    r = net.client.get(
        "/api/v1/account", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert r.status_code == 401
    with net.database.read() as s:
        live = s.execute(
            select(func.count()).select_from(AuthSession).where(AuthSession.revoked_at.is_(None))
        ).scalar_one()
    assert live == 1


def test_wrong_current_password_changes_nothing(net: Net) -> None:
    owner = net.register()
    r = net.client.post(
        "/api/v1/account/password",
        headers=owner.headers,
        json={"current_password": "not my password", "new_password": "a brand new passphrase"},
    )
    assert r.status_code == 403
    ok = net.client.post(
        "/api/v1/auth/token", json={"email": owner.email, "password": owner.password}
    )
    assert ok.status_code == 200


def test_profile_update_is_audited_and_validated(net: Net) -> None:
    owner = net.register()
    r = net.client.patch(
        "/api/v1/account",
        headers=owner.headers,
        json={"display_name": "Erin rig 2", "wallet_address": "wallet:abc123xyz"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["wallet_address"] == "wallet:abc123xyz"
    bad = net.client.patch("/api/v1/account", headers=owner.headers, json={"is_admin": True})
    assert bad.status_code == 422
    from gpunet.server.db.tables import AuditRecord

    with net.database.read() as s:
        rec = s.execute(
            select(AuditRecord).where(AuditRecord.action == "account.update")
        ).scalar_one()
    assert '"display_name":"Erin rig 2"' in (rec.after or "")
    assert '"display_name":null' in (rec.before or "")


def test_credentials_issued_are_audited(net: Net) -> None:
    from gpunet.server.db.tables import AuditRecord

    owner = net.register()
    net.client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    net.code(owner)
    net.client.post("/api/v1/auth/logout", headers=owner.headers)
    with net.database.read() as s:
        actions = s.execute(select(AuditRecord.action).order_by(AuditRecord.id)).scalars().all()
    assert actions == [
        "account.create",
        "session.create",
        "session.refresh",
        "enrollment_code.create",
        "session.revoke",
    ]
