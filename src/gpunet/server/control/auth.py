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
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update

from gpunet.core import control, signing
from gpunet.core.errors import Blocked
from gpunet.core.models import DeviceStatus
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Device
from gpunet.server.services import blocks

NOT_AUTHENTICATED = "not authenticated: unknown device or bad signature"


@dataclass
class AuthResult:
    accepted: dict[str, int] = field(default_factory=dict)  # public id -> row id
    verified: set[int] = field(default_factory=set)  # accepted rows whose uptime counts
    refused: list[tuple[str, str]] = field(default_factory=list)


def authenticate(
    database: Database,
    *,
    server_id: str,
    nonce: bytes,
    entries: Sequence[tuple[str, bytes]],
    address: str | None,
    now: dt.datetime,
) -> AuthResult:
    result = AuthResult()
    ids = [device_id for device_id, _ in entries]
    with database.transaction() as session:
        active = blocks.active(session)
        try:
            blocks.check(active, address=address, principal_key=None)
        except Blocked as exc:
            result.refused = [(d, exc.message) for d in ids]
            return result
        rows = {
            r.public_id: r
            for r in session.execute(
                select(Device.id, Device.public_id, Device.public_key, Device.status,
                       Device.owner_id).where(Device.public_id.in_(ids))
            )
        }
        for device_id, signature in entries:
            row = rows.get(device_id)
            if row is None or not _signed(row.public_key, signature, server_id, nonce, device_id):
                result.refused.append((device_id, NOT_AUTHENTICATED))
                continue
            # Only the key holder gets here: now it may hear why it is refused.
            if row.status == DeviceStatus.SUSPENDED.value:
                result.refused.append((device_id, "suspended: this device failed proof of GPU"))
                continue
            try:
                blocks.check(active, address=None, principal_key=f"device:{device_id}")
                blocks.check(active, address=None, principal_key=f"owner:{row.owner_id}")
            except Blocked as exc:
                result.refused.append((device_id, exc.message))
                continue
            result.accepted[device_id] = row.id
            if row.status == DeviceStatus.VERIFIED.value:
                result.verified.add(row.id)
        if result.accepted:
            session.execute(
                update(Device)
                .where(Device.id.in_(list(result.accepted.values())))
                .values(last_seen_at=now)
            )
    return result


def _signed(
    public_key: str, signature: bytes, server_id: str, nonce: bytes, device_id: str
) -> bool:
    try:
        key = signing.load_public_key(public_key)
    except ValueError:
        return False
    message = control.auth_message(server_id=server_id, nonce=nonce, device_id=device_id)
    return signing.verify(key, signature, message)
