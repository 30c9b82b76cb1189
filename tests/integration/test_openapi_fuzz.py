"""Property-based fuzzing of every operation in `/openapi.json` with schemathesis.

For each operation, schemathesis generates requests from the published schema; each
is sent signed in as a real owner (or, for the worker API, signed by a real device's
key) so the fuzzing reaches past the 401s. Every response must not be a 5xx and must
conform to the schema: documented status code, content type and body shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.transport.serialization import serialize_binary

from gpunet.core.clock import FrozenClock, unix
from gpunet.core.pog.wire import CONTENT_TYPE
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from tests.integration.conftest import Net, make_settings

LIMITS = {
    "address_writes_per_window": 1_000_000,
    "address_logins_per_window": 1_000_000,
    "address_enrollments_per_window": 1_000_000,
    "principal_writes_per_window": 1_000_000,
    "surge_principal_writes": 1_000_000,
}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# These end the session they are called with: each example gets a fresh login.
SESSION_ENDING = {"/api/v1/auth/logout", "/api/v1/auth/revoke-all", "/api/v1/account/password"}
# The credential is in the body (a refresh token, an enrollment code): random ones are
# rightly refused, so these cannot be expected to get past authentication.
BODY_CREDENTIAL = {"/api/v1/auth/refresh", "/api/v1/auth/unlock", "/api/v1/enroll"}



# Openings travel as bytes in their own media type (core.pog.wire): send what the
# schema generates for them as they are.
@schemathesis.serializer(CONTENT_TYPE)
def _openings_body(_ctx: Any, value: Any) -> bytes:
    return serialize_binary(value)


def _operations() -> list[tuple[str, str]]:
    spec = create_app(make_settings("sqlite://")).openapi()
    return [(m.upper(), p) for p, ops in sorted(spec["paths"].items()) for m in sorted(ops)]


OPERATIONS = _operations()


@pytest.fixture
def fnet(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    app = create_app(make_settings(database_url, **LIMITS), database=database, clock=clock)
    with TestClient(app) as client:
        yield Net(client, clock, database, make_settings(database_url, **LIMITS))


def test_schema_lists_every_api_route() -> None:
    paths = {p for _m, p in OPERATIONS}
    assert {
        "/api/v1/accounts",
        "/api/v1/enroll",
        "/api/v1/devices/{device_id}",
        "/api/v1/worker/device",
        "/api/v1/worker/device/rotate-key",
        "/api/v1/explorer/devices/{device_id}",
    } <= paths
    assert len(OPERATIONS) >= 17


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_and_never_fails(fnet: Net, method: str, path: str) -> None:
    owner = fnet.register("fuzz-owner@example.com", "fuzz owner password")
    (device,) = fnet.enroll(owner, 1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fnet.client.app)
    operation = schema[path][method]
    seen: dict[int, int] = {}

    def send(case: Case) -> Any:
        kw = case.as_transport_kwargs(base_url="http://testserver")
        headers = {k: v for k, v in kw["headers"].items() if k.lower() != "content-length"}
        raw = json.dumps(kw["json"]).encode() if "json" in kw else kw.get("data") or b""
        if isinstance(raw, str):
            raw = raw.encode()
        url = str(kw["url"])
        relative = url.removeprefix("http://testserver")
        if path.startswith("/api/v1/worker/"):
            headers["Authorization"] = device.signer.authorization(
                method, relative, raw, unix(fnet.clock.now())
            )
        elif path in SESSION_ENDING:
            token = fnet.client.post(
                "/api/v1/auth/token", json={"email": owner.email, "password": owner.password}
            ).json()["access_token"]
            headers["Authorization"] = f"Bearer {token}"
        else:
            headers["Authorization"] = f"Bearer {owner.token}"
        return fnet.client.request(
            method, relative, params=kw.get("params") or None, headers=headers, content=raw
        )

    @given(case=operation.as_strategy(), _=st.just(None))
    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case, _: None) -> None:
        response = send(case)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    # It really ran, and signed in requests got past authentication at least once.
    assert sum(seen.values()) >= 1, seen
    if path not in BODY_CREDENTIAL:
        assert set(seen) - {401}, f"every request was refused as unauthenticated: {seen}"
