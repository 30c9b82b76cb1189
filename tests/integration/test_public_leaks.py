"""Nothing private reaches a public response (T2).

Accounts and devices are seeded with recognisable values in every private field; then
every public endpoint is called (list pages and their cursors, filters, detail pages,
404s and 422s, including requests that carry the secrets themselves in the URL) and no
body or header may contain any of them, nor an internal id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpunet.core.clock import FrozenClock
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import AuthSession, Device, Owner
from tests.integration.conftest import Net, make_settings

# Separator-free canaries: each is searched for as it is and in common encodings.
OWNERS = [
    ("canary.owner.alpha@example.com", "Canary Alpha Person", "wallet-canary-alpha-7QX"),
    ("canary.owner.bravo@example.com", "Canary Bravo Person", "wallet-canary-bravo-9ZK"),
]


@pytest.fixture
def lnet(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    settings = make_settings(database_url)
    app = create_app(settings, database=database, clock=clock)
    with TestClient(app) as client:
        yield Net(client, clock, database, settings)


def seed(net: Net) -> tuple[set[str], list[str]]:
    """Seed the network; return (private values, public device ids)."""
    secrets: set[str] = set()
    public_ids: list[str] = []
    for i, (email, name, wallet) in enumerate(OWNERS):
        password = f"canary password {i} secret"
        owner = net.register(email, password)
        r = net.client.patch(
            "/api/v1/account",
            json={"display_name": name, "wallet_address": wallet},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
        secrets |= {email, name, wallet, password, owner.token, owner.refresh_token}
        secrets.add(net.code(owner))  # an unused enrollment code
        devices = net.enroll(
            owner,
            2,
            host=f"canaryhostfingerprint{i}xyz",
            driver_version=f"555.{i}.canarydriver",
        )
        for j, d in enumerate(devices):
            label = f"canary label {i}{j}"
            r = net.client.patch(
                f"/api/v1/devices/{d.device_id}",
                json={"label": label, "region": "eu-west"},
                headers=owner.headers,
            )
            assert r.status_code == 200, r.text
            r = net.signed(
                d,
                "PATCH",
                "/api/v1/worker/device",
                {"agent_version": f"7.{i}{j}.canaryagent", "os_name": f"CanaryOS {i}{j}"},
            )
            assert r.status_code == 200, r.text
            c = d.claim
            secrets |= {label, c.gpu_uuid, c.host_fingerprint, c.pci_bus_id, c.driver_version}
            secrets |= {f"7.{i}{j}.canaryagent", f"CanaryOS {i}{j}"}
            public_ids.append(d.device_id)
    with net.database.read() as s:
        for o in s.execute(select(Owner)).scalars():
            assert o.password_hash is not None
            secrets.add(o.password_hash)
        for a in s.execute(select(AuthSession)).scalars():
            secrets |= {a.id, a.refresh_hash}
        for dev in s.execute(select(Device)).scalars():
            secrets.add(dev.public_key)
    return secrets, public_ids


def public_requests(public_ids: list[str], secrets: set[str]) -> list[str]:
    urls = [
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/redoc",
        "/api/v1/explorer/stats",
        "/api/v1/explorer/models",
        "/api/v1/explorer/devices",
        "/api/v1/explorer/devices?status=pending",
        "/api/v1/explorer/devices?status=verified",
        "/api/v1/explorer/devices?model=H100%20SXM",
        "/api/v1/explorer/devices?region=eu-west",
        "/api/v1/explorer/devices?limit=1",
        "/api/v1/explorer/devices?status=bogus",
        "/api/v1/explorer/devices?limit=0",
        "/api/v1/explorer/devices/dev_aaaaaaaaaaaaaaaa",
        "/api/v1/explorer/devices/not-a-device-id",
        "/api/v1/explorer/nothing-here",
        "/api/v1/explorer/devices/1",
        "/api/v1/devices/1",
        "/api/v1/account",
        "/api/v1/worker/device",
    ]
    urls += [f"/api/v1/explorer/devices/{p}" for p in public_ids]
    urls += [f"/api/v1/explorer/devices?cursor={p}&limit=1" for p in public_ids]
    # Asking with a secret in the URL must not get it echoed back (e.g. in a 422).
    for s in sorted(secrets):
        if len(s) < 200:
            urls.append(f"/api/v1/explorer/devices/{quote(s, safe='')}")
            urls.append(f"/api/v1/explorer/devices?model={quote(s, safe='')}")
            urls.append(f"/api/v1/explorer/devices?region={quote(s, safe='')}")
    return urls


def forms(value: str) -> set[str]:
    """The value as it might appear in a body: raw, JSON- and URL-escaped."""
    return {value, quote(value, safe=""), value.replace("/", "\\/"), value.lower()}


INTERNAL_ID = re.compile(r'"(id|owner_id|device_pk|session_id|sid|sub)"\s*:')


def test_no_private_value_in_any_public_response(lnet: Net) -> None:
    secrets, public_ids = seed(lnet)
    assert len(secrets) >= 40
    checked = 0
    followed_pages = 0
    urls = public_requests(public_ids, secrets)
    # Follow the explorer's pagination to its end, one device per page.
    cursor: str | None = None
    while True:
        page = "/api/v1/explorer/devices?limit=1" + (f"&cursor={cursor}" if cursor else "")
        r = lnet.client.get(page)
        assert r.status_code == 200
        urls.append(page)
        cursor = r.json()["next_cursor"]
        followed_pages += 1
        if cursor is None:
            break
    assert followed_pages == len(public_ids)
    for url in urls:
        r = lnet.client.get(url)
        assert r.status_code < 500, (url, r.status_code)
        body = r.text
        header_text = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        for s in secrets:
            for f in forms(s):
                assert f not in body, f"{url} leaks {s!r} in its body"
                assert f not in header_text, f"{url} leaks {s!r} in a header"
        # API descriptions name fields of every API (the worker's challenge has an "id"),
        # they carry no values: their public schemas are checked below instead.
        if not url.startswith(("/openapi.json", "/docs", "/redoc")):
            assert not INTERNAL_ID.search(body), f"{url} has an internal id field: {body[:300]}"
        checked += 1
    assert checked > 60
    spec = lnet.client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/explorer"):
            continue
        for op in ops.values():
            ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            text = json.dumps(_resolve(spec, ref))
            assert not INTERNAL_ID.search(text), f"public schema of {path} names {text[:200]}"


def _resolve(spec: dict[str, Any], ref: str, seen: frozenset[str] = frozenset()) -> Any:
    """A schema with every $ref inlined (each at most once on a path)."""
    node = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]

    def walk(x: Any, seen: frozenset[str]) -> Any:
        if isinstance(x, dict):
            if "$ref" in x and x["$ref"] not in seen:
                return _resolve(spec, x["$ref"], seen | {x["$ref"]})
            return {k: walk(v, seen) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, seen) for v in x]
        return x

    return walk(node, seen | {ref})


def test_public_device_carries_only_public_fields(lnet: Net) -> None:
    """The explorer's device view is exactly the public schema: an allow-list, so a
    field added to the table later cannot slip out."""
    _secrets, public_ids = seed(lnet)
    allowed = {
        "device_id",
        "vendor",
        "model",
        "vram_mib",
        "status",
        "region",
        "enrolled_on",
        "last_seen_at",
    }
    for p in public_ids:
        r = lnet.client.get(f"/api/v1/explorer/devices/{p}")
        assert r.status_code == 200
        assert set(r.json()) == allowed
        assert r.json()["device_id"] == p
    items = lnet.client.get("/api/v1/explorer/devices").json()["items"]
    assert {i["device_id"] for i in items} == set(public_ids)
    assert all(set(i) == allowed for i in items)
    for m in lnet.client.get("/api/v1/explorer/models").json()["items"]:
        assert set(m) == {"model", "region", "status", "count"}


def test_public_ids_are_random_not_sequential(lnet: Net) -> None:
    _secrets, public_ids = seed(lnet)
    assert all(re.fullmatch(r"dev_[a-z2-7]{16}", p) for p in public_ids)
    # 80 random bits each: four ids sharing a 20-bit prefix would mean they are not random.
    assert len({p[4:8] for p in public_ids}) == len(public_ids)
