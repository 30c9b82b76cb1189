"""Property-based fuzzing of every operation in `/openapi.json` with schemathesis.

For each operation, schemathesis generates requests from the published schema; each
is sent signed in as a real owner (or, for the worker API, signed by a real device's
key) so the fuzzing reaches past the 401s. Every response must not be a 5xx and must
conform to the schema: documented status code, content type and body shape.

The operations come from `/openapi.json` itself, so a new route is fuzzed without any
edit here. The schema has no OpenAPI links (FastAPI publishes none), so state is linked
by hand where it is cheap: three in four cases that name a device get the owner's real
device, which reaches past the 404 into the handler.

GPUNET_FUZZ_EXAMPLES sets the examples per operation (default 100, issue 8's bar).
"""

from __future__ import annotations

import datetime as dt
import json
import os
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
EXAMPLES = int(os.environ.get("GPUNET_FUZZ_EXAMPLES", "100"))


# Times anywhere in the calendar with any offset up to a day: schemathesis's own date-time
# strings stay clear of the calendar's ends, where converting an offset time to UTC
# overflows (issue 8 found a 500 there that 100 of its examples never reached).
_OFFSETS = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
)
schemathesis.openapi.format(
    "date-time",
    st.datetimes(
        min_value=dt.datetime.min,
        max_value=dt.datetime.max,
        timezones=st.none()
        | st.builds(
            dt.timezone, _OFFSETS.map(lambda d: dt.timedelta(minutes=d // dt.timedelta(minutes=1)))
        ),
    ).map(dt.datetime.isoformat),
)


# Openings travel as bytes in their own media type (core.pog.wire): send what the
# schema generates for them as they are.
@schemathesis.serializer(CONTENT_TYPE)
def _openings_body(_ctx: Any, value: Any) -> bytes:
    return serialize_binary(value)


def _published_schema() -> dict[str, Any]:
    """The document the app serves at /openapi.json (it does not depend on the database)."""
    spec: dict[str, Any] = (
        TestClient(create_app(make_settings("sqlite://"))).get("/openapi.json").json()
    )
    return spec


SPEC = _published_schema()
OPERATIONS = [(m.upper(), p) for p, ops in sorted(SPEC["paths"].items()) for m in sorted(ops)]
# Loaded once for the module: every test's app serves this very document, and loading it
# per test cost more than a tenth of the fuzz's time.
SCHEMA = schemathesis.openapi.from_dict(SPEC)


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
    operation = SCHEMA[path][method]
    seen: dict[int, int] = {}

    def send(case: Case, real_device: bool) -> Any:
        if real_device and case.path_parameters and "device_id" in case.path_parameters:
            case.path_parameters["device_id"] = device.device_id
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

    # Three cases in four name the real device (when the path names one at all).
    @given(case=operation.as_strategy(), real_device=st.integers(0, 3).map(bool))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case, real_device: bool) -> None:
        response = send(case, real_device)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    # It really ran (an operation without parameters or body has only a couple of
    # distinct requests, and Hypothesis stops when it has tried them all), and signed in
    # requests got past authentication at least once.
    assert sum(seen.values()) >= 1, seen
    if path not in BODY_CREDENTIAL:
        assert set(seen) - {401}, f"every request was refused as unauthenticated: {seen}"
