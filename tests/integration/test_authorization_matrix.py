"""Who may call which write endpoint (T3): every write endpoint x every kind of caller.

Each cell is its own test. A cell is one of:

- ok:   the rightful principal; the call succeeds and changes something.
- self: a legitimate caller of an endpoint that names no object (`/account`,
        `/worker/device`); it may only act on itself, so the call succeeds but every
        row it changed belongs to the caller and not one row of the victim changed.
- deny: the call gets 401/403/404 and not one row changes (snapshot before/after).

`test_matrix_covers_every_write_endpoint` fails when a write route is added to the
app without a row here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from gpunet.agent.client import WorkerClient
from gpunet.agent.provers.cpu import CpuProver
from gpunet.core import signing
from gpunet.core.clock import unix
from gpunet.core.pog import HardwareReport, OpeningRequest, ReportedGpu
from gpunet.core.pog.wire import CONTENT_TYPE, encode_openings
from gpunet.server.db.tables import AuthSession, Device, LoginThrottle, Owner
from gpunet.server.security.secrets import digest
from gpunet.server.services import proof_schedule
from tests.integration.conftest import DeviceHandle, Net, OwnerHandle, hardware
from tests.integration.snapshot import Snapshot, TableDiff, describe, diff, snapshot
from tests.integration.test_proofs import CPU_DEV

DENIED = (401, 403, 404)
PASSWORD_A = "alpha password one"
PASSWORD_B = "bravo password two"
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

Headers = Callable[[str, str, bytes], dict[str, str]]


@dataclass
class World:
    net: Net
    a: OwnerHandle
    b: OwnerHandle
    dev_a: DeviceHandle
    dev_b: DeviceHandle
    a_id: int
    b_id: int
    scratch: dict[str, Any] = field(default_factory=dict)


def owner_id(net: Net, email: str) -> int:
    with net.database.read() as s:
        return int(s.execute(select(Owner.id).where(Owner.email == email)).scalar_one())


def build_world(net: Net) -> World:
    a = net.register("owner-a@example.com", PASSWORD_A)
    b = net.register("owner-b@example.com", PASSWORD_B)
    # cpu-dev claims, so that the CPU prover can answer their proof-of-GPU challenges.
    (dev_a,) = net.enroll(a, 1, agent_started=False, **CPU_DEV)
    (dev_b,) = net.enroll(b, 1, agent_started=False, **CPU_DEV)
    return World(net, a, b, dev_a, dev_b, owner_id(net, a.email), owner_id(net, b.email))


def login(net: Net, owner: OwnerHandle, scopes: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": owner.email, "password": owner.password}
    if scopes is not None:
        body["scopes"] = scopes
    r = net.client.post("/api/v1/auth/token", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- principals -------------------------------------------------------------------------
# Each prepares itself (any row changes happen here, before the snapshot) and returns a
# function that makes the request's headers from (method, path, raw body).


def _bearer(token: str) -> Headers:
    return lambda _m, _p, _b: {"Authorization": f"Bearer {token}"}


def _device(net: Net, device_id: str, key: Ed25519PrivateKey, skew: int = 0) -> Headers:
    signer = signing.DeviceSigner(device_id, key)
    return lambda m, p, raw: {
        "Authorization": signer.authorization(m, p, raw, unix(net.clock.now()) + skew)
    }


def _claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def p_owner_a(w: World) -> Headers:
    return _bearer(w.a.token)


def p_owner_b(w: World) -> Headers:
    return _bearer(w.b.token)


def p_owner_a_read_only(w: World) -> Headers:
    """A's own token, but scoped to devices:read only."""
    return _bearer(login(w.net, w.a, ["devices:read"])["access_token"])


def p_device_a(w: World) -> Headers:
    return _device(w.net, w.dev_a.device_id, w.dev_a.key)


def p_device_b(w: World) -> Headers:
    return _device(w.net, w.dev_b.device_id, w.dev_b.key)


def p_device_b_as_a(w: World) -> Headers:
    """Device B claims to be device A but can only sign with its own key."""
    return _device(w.net, w.dev_a.device_id, w.dev_b.key)


def p_device_a_stale(w: World) -> Headers:
    """Device A's real key, but a timestamp an hour old (a captured request)."""
    return _device(w.net, w.dev_a.device_id, w.dev_a.key, skew=-3600)


def p_unknown_device(w: World) -> Headers:
    return _device(w.net, "dev_aaaaaaaaaaaaaaaa", Ed25519PrivateKey.generate())


def p_anonymous(w: World) -> Headers:
    return lambda _m, _p, _b: {}


def p_expired(w: World) -> Headers:
    """A's genuine token, presented after it expired (its session is still live)."""
    w.net.clock.advance(w.net.settings.access_token_ttl_s + 1)
    return _bearer(w.a.token)


def p_revoked(w: World) -> Headers:
    """A second login of A, logged out: its access token is still unexpired."""
    token = login(w.net, w.a)["access_token"]
    r = w.net.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    return _bearer(token)


def p_hs256_wrong_secret(w: World) -> Headers:
    """A's exact claims (our issuer, A's live session) signed with a guessed secret."""
    claims = _claims_of(w.a.token)
    return _bearer(jwt.encode(claims, "not-the-coordinator-secret-" + "y" * 20, "HS256"))


def p_rs256_foreign_issuer(w: World) -> Headers:
    claims = {**_claims_of(w.a.token), "iss": "https://idp.attacker.example/"}
    return _bearer(jwt.encode(claims, _RSA_KEY, "RS256", headers={"kid": "attacker-1"}))


def p_rs256_our_issuer(w: World) -> Headers:
    """Algorithm confusion: our issuer and A's claims, signed with someone's RSA key."""
    return _bearer(jwt.encode(_claims_of(w.a.token), _RSA_KEY, "RS256"))


def p_alg_none(w: World) -> Headers:
    claims = _claims_of(w.a.token)
    return _bearer(jwt.encode(claims, None, algorithm="none"))


PRINCIPALS: dict[str, Callable[[World], Headers]] = {
    "owner_a": p_owner_a,
    "owner_b": p_owner_b,
    "owner_a_read_only": p_owner_a_read_only,
    "device_a": p_device_a,
    "device_b": p_device_b,
    "device_b_as_a": p_device_b_as_a,
    "device_a_stale": p_device_a_stale,
    "unknown_device": p_unknown_device,
    "anonymous": p_anonymous,
    "expired_token": p_expired,
    "revoked_token": p_revoked,
    "hs256_wrong_secret": p_hs256_wrong_secret,
    "rs256_foreign_issuer": p_rs256_foreign_issuer,
    "rs256_our_issuer": p_rs256_our_issuer,
    "alg_none": p_alg_none,
}


# --- endpoints that authenticate the caller by header --------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: Callable[[World], str]
    body: Callable[[World], Any]
    rightful: str  # the principal that may do this to A's objects
    self_principals: tuple[str, ...] = ()  # may call it, but only ever on themselves
    setup: Callable[[World], None] | None = None  # runs before the "before" snapshot


def rotation_body(w: World) -> dict[str, Any]:
    """A correct key rotation for device A (both of A's keys sign it)."""
    new = Ed25519PrivateKey.generate()
    pub = signing.public_key_text(new.public_key())
    ts = unix(w.net.clock.now())
    msg = signing.rotation_message(device_id=w.dev_a.device_id, new_public_key=pub, timestamp=ts)
    return {
        "new_public_key": pub,
        "timestamp": ts,
        "old_key_signature": signing.b64u(w.dev_a.key.sign(msg)),
        "new_key_signature": signing.b64u(new.sign(msg)),
    }


def _challenge_for_a(w: World) -> None:
    """Device A has fetched a proof-of-GPU challenge and waits to commit."""
    st = w.net.client.app.state.gpunet  # type: ignore[attr-defined]
    with w.net.database.transaction() as s:
        # Its agent has been heard from: a new device is challenged only then.
        s.execute(
            update(Device)
            .where(Device.public_id == w.dev_a.device_id)
            .values(last_seen_at=w.net.clock.now())
        )
        proof_schedule.schedule_due(
            s, now=w.net.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )
    client = WorkerClient(w.net.client, w.dev_a.signer, clock=lambda: unix(w.net.clock.now()))
    challenge = client.fetch_challenge()
    assert challenge is not None
    prover = CpuProver()
    w.scratch.update(
        client=client,
        challenge=challenge,
        prover=prover,
        commitment=prover.commit(challenge),
        report=_report(w.dev_a),
    )


def _committed_for_a(w: World) -> None:
    """Device A has committed and holds the coordinator's opening request."""
    _challenge_for_a(w)
    request = w.scratch["client"].commit(w.scratch["commitment"], w.scratch["report"])
    assert isinstance(request, OpeningRequest), request
    w.scratch["request"] = request


def _report(dev: DeviceHandle) -> HardwareReport:
    c = dev.claim
    return HardwareReport(
        vendor=c.vendor,
        device_uuid=c.gpu_uuid,
        devices=(
            ReportedGpu(
                gpu_uuid=c.gpu_uuid, pci_bus_id=c.pci_bus_id, model=c.model, vram_mib=c.vram_mib
            ),
        ),
    )


def _commitment_body(w: World) -> Any:
    return {
        "commitment": json.loads(w.scratch["commitment"].model_dump_json()),
        "hardware": json.loads(w.scratch["report"].model_dump_json()),
    }


def _openings_body(w: World) -> Any:
    # Openings travel in their binary layout (core.pog.wire), not as JSON.
    return encode_openings(w.scratch["prover"].open(w.scratch["request"]))


def _ready_a(w: World) -> None:
    """Device A is verified and heard from, so a cluster can be placed on it (A's owner
    supplies it; any owner may be a customer and rent it)."""
    now = w.net.clock.now()
    with w.net.database.transaction() as s:
        s.execute(
            update(Device)
            .where(Device.public_id == w.dev_a.device_id)
            .values(status="verified", profile="cpu-dev", last_heartbeat_at=now,
                    status_changed_at=now, last_pass_at=now)
        )


def _cluster_for_a(w: World) -> None:
    """Owner A holds a cluster on device A."""
    _ready_a(w)
    r = w.net.client.post("/api/v1/clusters", json={"count": 1}, headers=p_owner_a(w)("", "", b""))
    assert r.status_code == 201, r.text
    w.scratch["cluster"] = r.json()["cluster_id"]


ENDPOINTS: dict[str, Endpoint] = {
    "logout": Endpoint(
        "POST", lambda w: "/api/v1/auth/logout", lambda w: None, "owner_a", ("owner_b",)
    ),
    "revoke_all": Endpoint(
        "POST", lambda w: "/api/v1/auth/revoke-all", lambda w: None, "owner_a", ("owner_b",)
    ),
    "patch_account": Endpoint(
        "PATCH",
        lambda w: "/api/v1/account",
        lambda w: {"display_name": "Changed Name", "wallet_address": "wallet-changed-1"},
        "owner_a",
        ("owner_b",),
    ),
    # B's token with A's current password: B can reach only B's account, whose
    # password this is not.
    "change_password": Endpoint(
        "POST",
        lambda w: "/api/v1/account/password",
        lambda w: {"current_password": PASSWORD_A, "new_password": "a brand new password"},
        "owner_a",
    ),
    "enrollment_code": Endpoint(
        "POST",
        lambda w: "/api/v1/enrollment-codes",
        lambda w: {"max_devices": 2},
        "owner_a",
        ("owner_b",),
    ),
    "patch_device": Endpoint(
        "PATCH",
        lambda w: f"/api/v1/devices/{w.dev_a.device_id}",
        lambda w: {"label": "changed label", "region": "eu-west"},
        "owner_a",
    ),
    # Only A's owner may retire A's device; B's owner gets 404 and nothing changes.
    "retire_device": Endpoint(
        "POST",
        lambda w: f"/api/v1/devices/{w.dev_a.device_id}/retire",
        lambda w: None,
        "owner_a",
    ),
    "worker_metadata": Endpoint(
        "PATCH",
        lambda w: "/api/v1/worker/device",
        lambda w: {"agent_version": "9.9.9", "os_name": "Changed OS"},
        "device_a",
        ("device_b",),
    ),
    # The body is a rotation signed for device A, so device B cannot use it even on itself.
    "rotate_key": Endpoint(
        "POST", lambda w: "/api/v1/worker/device/rotate-key", rotation_body, "device_a"
    ),
    # A heartbeat names no device: each device only ever marks itself seen (last_seen_at).
    "heartbeat": Endpoint(
        "POST", lambda w: "/api/v1/worker/heartbeat", lambda w: {}, "device_a", ("device_b",)
    ),
    # Only the challenged device may answer its challenge; B gets 404 for A's.
    "challenge_commitment": Endpoint(
        "POST",
        lambda w: f"/api/v1/worker/challenge/{w.scratch['challenge'].id}/commitment",
        _commitment_body,
        "device_a",
        setup=_challenge_for_a,
    ),
    # Any owner may ask for a cluster for themselves (B's is B's, on A's device).
    "create_cluster": Endpoint(
        "POST",
        lambda w: "/api/v1/clusters",
        lambda w: {"count": 1, "gpu_model": "cpu-dev"},
        "owner_a",
        ("owner_b",),
        setup=_ready_a,
    ),
    # Only A may end A's cluster; B gets 404 and nothing changes.
    "terminate_cluster": Endpoint(
        "POST",
        lambda w: f"/api/v1/clusters/{w.scratch['cluster']}/terminate",
        lambda w: None,
        "owner_a",
        setup=_cluster_for_a,
    ),
    "challenge_openings": Endpoint(
        "POST",
        lambda w: f"/api/v1/worker/challenge/{w.scratch['challenge'].id}/openings",
        _openings_body,
        "device_a",
        setup=_committed_for_a,
    ),
}


def send(w: World, headers: Headers, method: str, path: str, body: Any) -> Any:
    if isinstance(body, bytes):
        raw, kind = body, CONTENT_TYPE
    else:
        raw, kind = b"" if body is None else json.dumps(body).encode(), "application/json"
    h = {"Content-Type": kind, **headers(method, path, raw)}
    return w.net.client.request(method, path, content=raw, headers=h)


def owner_rows_only(changes: dict[str, TableDiff], after: Snapshot, me: int) -> None:
    """Every row that changed belongs to owner `me` (or is the audit chain's tip)."""
    my_devices = {r["id"]: r["public_id"] for r in after["devices"].values() if r["owner_id"] == me}
    # Clusters are the customer's even when they run on another owner's devices.
    mine = [r for r in after.get("clusters", {}).values() if r["owner_id"] == me]
    my_clusters = {r["id"] for r in mine}
    my_entities = {str(me), *my_devices.values(), *(r["public_id"] for r in mine)}
    for name, d in changes.items():
        assert not d.removed, f"{name}: rows removed"
        if name == "audit_head":
            continue
        rows = [*d.added.values(), *(after[name][k] for k in d.changed)]
        for row in rows:
            if name == "owners":
                assert row["id"] == me, row
            elif name == "audit_log":
                assert row["entity_id"] in my_entities, row
                # The verifier (a system principal) changes the status of my device.
                assert row["actor_id"] in {str(me), *my_devices.values()} or (
                    row["actor_kind"] == "system"
                ), row
            elif "cluster_id" in row:
                assert row["cluster_id"] in my_clusters, (name, row)
            elif "owner_id" in row:
                assert row["owner_id"] == me, (name, row)
            elif "device_id" in row:
                assert row["device_id"] in my_devices, (name, row)
            else:
                raise AssertionError(f"unexpected change in {name}: {row}")
        if name == "audit_log":
            assert not d.changed, "the audit log is append-only"


def expectation(endpoint: str, principal: str) -> str:
    e = ENDPOINTS[endpoint]
    if principal == e.rightful:
        return "ok"
    if principal in e.self_principals:
        return "self"
    return "deny"


CELLS = [(e, p) for e in ENDPOINTS for p in PRINCIPALS]


@pytest.mark.parametrize(
    ("endpoint", "principal"), CELLS, ids=[f"{e}-{p}-{expectation(e, p)}" for e, p in CELLS]
)
def test_write_matrix(net: Net, endpoint: str, principal: str) -> None:
    w = build_world(net)
    e = ENDPOINTS[endpoint]
    if e.setup:
        e.setup(w)
    headers = PRINCIPALS[principal](w)
    before = snapshot(net.database)
    r = send(w, headers, e.method, e.path(w), e.body(w))
    after = snapshot(net.database)
    changes = diff(before, after)
    want = expectation(endpoint, principal)
    if want == "deny":
        assert r.status_code in DENIED, (r.status_code, r.text)
        assert not changes, describe(changes)
        return
    assert 200 <= r.status_code < 300, (r.status_code, r.text)
    assert changes, "a successful write changed nothing"
    owner_rows_only(changes, after, w.a_id if want == "ok" else w.b_id)


def test_matrix_covers_every_write_endpoint(net: Net) -> None:
    w = build_world(net)
    # Every write operation the app publishes (hidden routes are GET only: /healthz, /metrics).
    spec = net.client.get("/openapi.json").json()
    routes = {
        (m.upper(), path)
        for path, ops in spec["paths"].items()
        for m in ops
        if m.upper() in ("POST", "PUT", "PATCH", "DELETE")
    }
    assert len(routes) >= 12
    _challenge_for_a(w)
    _cluster_for_a(w)
    templated = {
        (
            e.method,
            e.path(w)
            .replace(w.dev_a.device_id, "{device_id}")
            .replace(w.scratch["challenge"].id, "{challenge_id}")
            .replace(w.scratch["cluster"], "{cluster_id}"),
        )
        for e in ENDPOINTS.values()
    }
    # Authenticated by a credential in the body, not a header: see the tests below.
    templated |= {(m, p) for m, p in BODY_CREDENTIAL_ROUTES}
    assert routes == templated


# --- endpoints that authenticate by a credential in the body ---------------------------

BODY_CREDENTIAL_ROUTES = (
    ("POST", "/api/v1/accounts"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/unlock"),
    ("POST", "/api/v1/enroll"),
)


def _register(email: str, headers: dict[str, str] | None = None) -> Callable[[World], Any]:
    def go(w: World) -> Any:
        return w.net.client.post(
            "/api/v1/accounts",
            json={"email": email, "password": "some password 123"},
            headers=headers(w) if callable(headers) else headers,
        )

    return go


def _token(email: str, password: str) -> Callable[[World], Any]:
    return lambda w: w.net.client.post(
        "/api/v1/auth/token", json={"email": email, "password": password}
    )


def _refresh(token: Callable[[World], str]) -> Callable[[World], Any]:
    return lambda w: w.net.client.post("/api/v1/auth/refresh", json={"refresh_token": token(w)})


def _unlock(token: Callable[[World], str]) -> Callable[[World], Any]:
    return lambda w: w.net.client.post("/api/v1/auth/unlock", json={"token": token(w)})


def _locked_a(w: World) -> str:
    """A locked as by many wrong passwords, with an unlock token the test knows."""
    token = "gpn_ul_" + "T" * 43
    now = w.net.clock.now()
    with w.net.database.transaction() as s:
        s.add(
            LoginThrottle(
                owner_id=w.a_id,
                failures=20,
                last_failure_at=now,
                locked_at=now,
                unlock_hash=digest(token),
                unlock_expires_at=now + dt.timedelta(days=1),
            )
        )
    return token


def _revoked_refresh(w: World) -> str:
    pair = login(w.net, w.a)
    r = w.net.client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert r.status_code == 204
    return str(pair["refresh_token"])


def _enroll(
    code: Callable[[World], str],
    *,
    proof_key: bool = True,
    claim: Callable[[World], Any] | None = None,
    headers: Callable[[World], dict[str, str]] | None = None,
) -> Callable[[World], Any]:
    def go(w: World) -> Any:
        c = code(w)
        hw = claim(w) if claim else hardware(host="matrix-host-fingerprint")
        body, _keys = w.net.enroll_body(c, [hw])
        if not proof_key:
            # A valid signature, but by a key other than the one being enrolled.
            other = Ed25519PrivateKey.generate()
            msg = signing.enrollment_message(
                code_digest=b"\0" * 32,
                public_key=body["devices"][0]["public_key"],
                claim_json=json.dumps(body["devices"][0]["hardware"]).encode(),
            )
            body["devices"][0]["proof"] = signing.b64u(other.sign(msg))
        return w.net.client.post("/api/v1/enroll", json=body, headers=headers(w) if headers else {})

    return go


def _used_code(w: World) -> str:
    c = w.net.code(w.a)
    body, _ = w.net.enroll_body(c, [hardware(host="used-code-host-0001")])
    assert w.net.client.post("/api/v1/enroll", json=body).status_code == 201
    return c


def _expired_code(w: World) -> str:
    c = w.net.code(w.a)
    w.net.clock.advance(w.net.settings.enrollment_code_ttl_s + 1)
    return c


def _forged_code(w: World) -> str:
    """Right prefix and length, made up bytes: the server MAC does not match."""
    real = w.net.code(w.a)
    return real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")


@dataclass(frozen=True)
class BodyCase:
    prepare: Callable[[World], Callable[[World], Any]]
    want: int | tuple[int, ...]
    owner: str | None = None  # on success: whose rows may change


BODY_CASES: dict[str, BodyCase] = {
    "accounts-new_email-ok": BodyCase(lambda w: _register("new-owner@example.com"), 201),
    "accounts-email_of_a": BodyCase(lambda w: _register("owner-a@example.com"), 409),
    "accounts-email_of_a_upper": BodyCase(lambda w: _register("OWNER-A@Example.COM"), 409),
    "accounts-email_of_a_with_a_token": BodyCase(
        lambda w: _register("owner-a@example.com", {"Authorization": f"Bearer {w.a.token}"}), 409
    ),
    "token-a_password-ok": BodyCase(lambda w: _token(w.a.email, PASSWORD_A), 200, "a"),
    "token-b_email_a_password": BodyCase(lambda w: _token(w.b.email, PASSWORD_A), 401),
    "token-a_email_b_password": BodyCase(lambda w: _token(w.a.email, PASSWORD_B), 401),
    "token-unknown_email": BodyCase(lambda w: _token("nobody@example.com", PASSWORD_A), 401),
    "refresh-a_refresh-ok": BodyCase(lambda w: _refresh(lambda w: w.a.refresh_token), 200, "a"),
    "refresh-revoked": BodyCase(
        lambda w: (lambda t: _refresh(lambda _w: t))(_revoked_refresh(w)), 401
    ),
    "refresh-made_up": BodyCase(lambda w: _refresh(lambda _w: "gpn_rt_" + "A" * 43), 401),
    "refresh-access_token": BodyCase(lambda w: _refresh(lambda w: w.a.token), (401, 422)),
    # The token names the account: it unlocks A and touches only A's rows.
    "unlock-a_token-ok": BodyCase(
        lambda w: (lambda t: _unlock(lambda _w: t))(_locked_a(w)), 204, "a"
    ),
    "unlock-made_up": BodyCase(lambda w: _unlock(lambda _w: "gpn_ul_" + "A" * 43), 401),
    "unlock-refresh_token_of_a": BodyCase(lambda w: _unlock(lambda w: w.a.refresh_token), 401),
    "enroll-code_of_a-ok": BodyCase(lambda w: _enroll(lambda w: w.net.code(w.a)), 201, "a"),
    # The code decides the owner: a bearer token of B on the request changes nothing.
    "enroll-code_of_a_with_b_token-ok": BodyCase(
        lambda w: (
            lambda c: _enroll(
                lambda _w: c, headers=lambda w: {"Authorization": f"Bearer {w.b.token}"}
            )
        )(w.net.code(w.a)),
        201,
        "a",
    ),
    "enroll-used_code": BodyCase(lambda w: (lambda c: _enroll(lambda _w: c))(_used_code(w)), 401),
    "enroll-expired_code": BodyCase(
        lambda w: (lambda c: _enroll(lambda _w: c))(_expired_code(w)), 401
    ),
    "enroll-forged_code": BodyCase(
        lambda w: (lambda c: _enroll(lambda _w: c))(_forged_code(w)), 401
    ),
    "enroll-proof_by_other_key": BodyCase(
        lambda w: (lambda c: _enroll(lambda _w: c, proof_key=False))(w.net.code(w.a)), 401
    ),
    "enroll-gpu_of_b": BodyCase(
        lambda w: (lambda c: _enroll(lambda _w: c, claim=lambda w: w.dev_b.claim))(w.net.code(w.a)),
        409,
    ),
}


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_body_credential_matrix(net: Net, case: str) -> None:
    w = build_world(net)
    c = BODY_CASES[case]
    call = c.prepare(w)  # codes, logins and clock moves happen before the snapshot
    before = snapshot(net.database)
    r = call(w)
    after = snapshot(net.database)
    changes = diff(before, after)
    wanted = c.want if isinstance(c.want, tuple) else (c.want,)
    assert r.status_code in wanted, (r.status_code, r.text)
    if r.status_code >= 300:
        assert not changes, describe(changes)
        return
    assert changes, "a successful write changed nothing"
    if c.owner == "a":
        owner_rows_only(changes, after, w.a_id)
        with net.database.read() as s:
            owners = {d.owner_id for d in s.execute(select(Device)).scalars()}
        assert w.b_id in owners and w.a_id in owners


def test_spent_refresh_token_revokes_only_its_own_session(net: Net) -> None:
    """Reuse of a rotated refresh token is theft: the 401 revokes that session, and
    that is the only row that changes (the one refusal that must leave a trace)."""
    w = build_world(net)
    first = w.a.refresh_token
    r = net.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 200
    before = snapshot(net.database)
    r = net.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 401
    changes = diff(before, snapshot(net.database))
    assert set(changes) == {"auth_sessions"}, describe(changes)
    (key,) = changes["auth_sessions"].changed
    assert set(changes["auth_sessions"].changed[key]) == {"revoked_at"}
    with net.database.read() as s:
        session = s.get(AuthSession, key[0])
        assert session is not None and session.owner_id == w.a_id
    # B is untouched and still signed in.
    assert net.client.get("/api/v1/account", headers=w.b.headers).status_code == 200


def test_replayed_device_request_changes_nothing(net: Net) -> None:
    w = build_world(net)
    path = "/api/v1/worker/device"
    raw = json.dumps({"agent_version": "1.2.3"}).encode()
    auth = w.dev_a.signer.authorization("PATCH", path, raw, unix(net.clock.now()))
    h = {"Authorization": auth, "Content-Type": "application/json"}
    assert net.client.patch(path, content=raw, headers=h).status_code == 200
    before = snapshot(net.database)
    r = net.client.patch(path, content=raw, headers=h)
    assert r.status_code == 401
    assert not diff(before, snapshot(net.database))


def test_signature_does_not_transfer_to_another_body(net: Net) -> None:
    """A signature made for one body, sent with another (a tampering relay)."""
    w = build_world(net)
    path = "/api/v1/worker/device"
    signed = json.dumps({"agent_version": "1.2.3"}).encode()
    sent = json.dumps({"agent_version": "6.6.6"}).encode()
    auth = w.dev_a.signer.authorization("PATCH", path, signed, unix(net.clock.now()))
    before = snapshot(net.database)
    r = net.client.patch(
        path, content=sent, headers={"Authorization": auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 401
    assert not diff(before, snapshot(net.database))
