"""Who may join a control session: one batched database read, then a signature check
per device over the session's nonce. Runs in a worker thread (it touches the database
and spends ~120 us of CPU per signature).

SECURITY: a device is accepted only if its current public key signed
`core.control.auth_message(server_id, nonce, device_id)` for THIS session's nonce.
Unknown devices and bad signatures get the same answer, so a caller who cannot sign
for a device learns nothing about it; its status and blocks are told only to its key
holder. Devices are judged one by one: a forged entry refuses that device only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from gpunet.core import control, signing
from gpunet.core.errors import Blocked
from gpunet.core.models import DeviceStatus
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Block, Device
from gpunet.server.services import blocks, devices, liveness

NOT_AUTHENTICATED = "not authenticated: unknown device or bad signature"


@dataclass
class AuthResult:
    accepted: dict[str, int] = field(default_factory=dict)  # public id -> row id
    # Accepted rows whose heartbeats count now (services.liveness decides).
    verified: set[int] = field(default_factory=set)
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    nonce: bytes
    entries: Sequence[tuple[str, bytes]]
    address: str | None


_CHUNK = 1000


def authenticate_many(
    database: Database, *, server_id: str, requests: Sequence[AuthRequest], now: dt.datetime
) -> list[AuthResult]:
    """Judge many sessions' handshakes in one transaction (one read of the blocks, one
    key lookup per 1000 devices, one last-seen update): reconnect storms after a
    coordinator restart cost signatures, not round trips. A handshake is contact: an
    accepted device's open challenge counts as received from now (its clock has been
    running since issue)."""
    results = [AuthResult() for _ in requests]
    with database.transaction() as session:
        active = blocks.active(session)
        ids = sorted({d for r in requests for d, _ in r.entries})
        rows: dict[str, Any] = {}
        for i in range(0, len(ids), _CHUNK):
            rows.update(
                (r.public_id, r)
                for r in session.execute(
                    select(
                        Device.id,
                        Device.public_id,
                        Device.public_key,
                        Device.status,
                        Device.owner_id,
                    ).where(Device.public_id.in_(ids[i : i + _CHUNK]))
                )
            )
        for request, result in zip(requests, results, strict=True):
            _judge(request, result, rows, active, server_id)
        seen = sorted(pk for result in results for pk in result.accepted.values())
        for i in range(0, len(seen), _CHUNK):
            session.execute(
                update(Device).where(Device.id.in_(seen[i : i + _CHUNK])).values(last_seen_at=now)
            )
        liveness.mark_heard(session, seen, now)
        counting = liveness.counting(session, seen, now)
        for result in results:
            result.verified = {pk for pk in result.accepted.values() if pk in counting}
    return results


def authenticate(
    database: Database,
    *,
    server_id: str,
    nonce: bytes,
    entries: Sequence[tuple[str, bytes]],
    address: str | None,
    now: dt.datetime,
) -> AuthResult:
    [result] = authenticate_many(
        database, server_id=server_id, requests=[AuthRequest(nonce, entries, address)], now=now
    )
    return result


def _judge(
    request: AuthRequest,
    result: AuthResult,
    rows: Mapping[str, Any],
    active: Sequence[Block],
    server_id: str,
) -> None:
    try:
        blocks.check(active, address=request.address, principal_key=None)
    except Blocked as exc:
        result.refused = [(d, exc.message) for d, _ in request.entries]
        return
    for device_id, signature in request.entries:
        row = rows.get(device_id)
        if row is None or not _signed(
            row.public_key, signature, server_id, request.nonce, device_id
        ):
            result.refused.append((device_id, NOT_AUTHENTICATED))
            continue
        # Only the key holder gets here: now it may hear why it is refused.
        if row.status == DeviceStatus.SUSPENDED.value:
            result.refused.append((device_id, devices.SUSPENDED))
            continue
        if row.status == DeviceStatus.RETIRED.value:
            result.refused.append((device_id, devices.RETIRED))
            continue
        try:
            blocks.check(active, address=None, principal_key=f"device:{device_id}")
            blocks.check(active, address=None, principal_key=f"owner:{row.owner_id}")
        except Blocked as exc:
            result.refused.append((device_id, exc.message))
            continue
        result.accepted[device_id] = row.id


def _signed(
    public_key: str, signature: bytes, server_id: str, nonce: bytes, device_id: str
) -> bool:
    try:
        key = signing.load_public_key(public_key)
    except ValueError:
        return False
    message = control.auth_message(server_id=server_id, nonce=nonce, device_id=device_id)
    return signing.verify(key, signature, message)
