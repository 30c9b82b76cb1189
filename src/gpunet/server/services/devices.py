"""Device reads and writes by their owners and by the devices themselves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gpunet.core import signing
from gpunet.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from gpunet.core.models import DeviceStatus
from gpunet.server.context import Ctx
from gpunet.server.db.tables import Device, DeviceNonce
from gpunet.server.security.principal import Principal, PrincipalKind
from gpunet.server.services import audit, writes

OWNER_FIELDS = ("label", "region")
WORKER_FIELDS = ("agent_version", "driver_version", "cuda_version", "os_name")
# What a suspended device is told on every transport (the control channel's handshake too).
SUSPENDED = "suspended: this device failed proof of GPU"
# What a retired device's key holder is told: the key is dead; the GPU comes back only
# as a new device (`gpunet worker enroll --replace`, or a plain enroll).
RETIRED = (
    "retired: this device was retired by its owner; to bring the GPU back, "
    "run `gpunet worker enroll --code CODE` (or `--replace DEVICE_ID` with a new code)"
)


def calling_device(
    session: Session,
    device_pk: int | None,
    now: dt.datetime,
    *,
    lock: bool = False,
    touch: bool = False,
) -> Device:
    """The device behind a signed call, over HTTP or the control channel.

    Its signature was checked before this (by the request or the session's handshake),
    so only its key holder learns why it is refused: a suspended device may do nothing
    until an operator reinstates it, on either transport. `touch` records that it was
    just heard from.
    """
    device = None if device_pk is None else session.get(Device, device_pk, with_for_update=lock)
    if device is None:
        raise Unauthenticated("unknown device")
    refused(device.status)
    if touch:
        device.last_seen_at = now
    return device


def refused(status: str) -> None:
    """Forbidden for a device that may do nothing at all: suspended or retired."""
    if status == DeviceStatus.SUSPENDED.value:
        raise Forbidden(SUSPENDED)
    if status == DeviceStatus.RETIRED.value:
        raise Forbidden(RETIRED)


def view(device: Device, fields: Sequence[str]) -> dict[str, Any]:
    return {f: getattr(device, f) for f in fields}


def owned(session: Session, owner_id: int, public_id: str, *, lock: bool = False) -> Device:
    """The owner's device, or NotFound: another owner's device is not even admitted to."""
    stmt = select(Device).where(Device.public_id == public_id, Device.owner_id == owner_id)
    if lock:
        stmt = stmt.with_for_update()
    device = session.execute(stmt).scalar_one_or_none()
    if device is None:
        raise NotFound("no such device")
    return device


def list_owned(
    session: Session, owner_id: int, *, limit: int, after: str | None
) -> Sequence[Device]:
    stmt = select(Device).where(Device.owner_id == owner_id).order_by(Device.public_id).limit(limit)
    if after:
        stmt = stmt.where(Device.public_id > after)
    return session.execute(stmt).scalars().all()


def _apply(
    ctx: Ctx, device: Device, changes: dict[str, Any], fields: Sequence[str], action: str
) -> Device:
    unknown = set(changes) - set(fields)
    if unknown:
        raise InvalidInput(f"fields not writable here: {sorted(unknown)}")
    before = view(device, fields)
    for name, value in changes.items():
        setattr(device, name, value)
    b, a = audit.changed_fields(before, view(device, fields))
    if a:
        writes.record_write(ctx, action)
        device.updated_at = ctx.now
        audit.append(
            ctx.session,
            actor=ctx.actor,
            action=action,
            entity_kind="device",
            entity_id=device.public_id,
            before=b,
            after=a,
            now=ctx.now,
            address=ctx.address,
        )
    return device


def update_by_owner(ctx: Ctx, public_id: str, changes: dict[str, Any]) -> Device:
    assert ctx.actor.owner_id is not None
    device = owned(ctx.session, ctx.actor.owner_id, public_id, lock=True)
    return _apply(ctx, device, changes, OWNER_FIELDS, "device.update_owner_fields")


def update_by_device(ctx: Ctx, changes: dict[str, Any]) -> Device:
    """A device changes its own worker metadata; it has no way to name another device."""
    device = calling_device(ctx.session, ctx.actor.device_id, ctx.now, lock=True)
    return _apply(ctx, device, changes, WORKER_FIELDS, "device.update_metadata")


def authenticate_request(
    session: Session,
    *,
    header: str,
    method: str,
    path: str,
    body: bytes,
    now: dt.datetime,
    window_s: int,
) -> Principal:
    """Check a device-signed request; return the device's principal.

    Order matters for cost: parse and clock checks first, then one indexed lookup, then
    one Ed25519 verify, and only a request that passes all of them spends a row on its
    nonce. A nonce seen before within the window is a replay.
    """
    auth = signing.parse_auth_header(header)
    if auth is None:
        raise Unauthenticated("malformed device signature")
    offset = auth.timestamp - int(now.timestamp())
    if abs(offset) > window_s:
        # Say by how much and what fixes it: a drifting clock is the usual cause.
        side = "ahead of" if offset > 0 else "behind"
        raise Unauthenticated(
            f"device signature timestamp outside the allowed window: this machine's clock "
            f"is {abs(offset)} s {side} the coordinator's (allowed: {window_s} s); "
            "synchronise it with NTP (e.g. `timedatectl set-ntp true`)"
        )
    device = session.execute(
        select(Device).where(Device.public_id == auth.device_id)
    ).scalar_one_or_none()
    if device is None:
        raise Unauthenticated("invalid device signature")
    msg = signing.request_message(
        device_id=auth.device_id,
        method=method,
        path=path,
        timestamp=auth.timestamp,
        nonce=auth.nonce,
        body=body,
    )
    if not signing.verify(signing.load_public_key(device.public_key), auth.signature, msg):
        raise Unauthenticated("invalid device signature")
    # A retired key authenticates nothing, on any route; only its holder learns why.
    if device.status == DeviceStatus.RETIRED.value:
        raise Forbidden(RETIRED)
    try:
        with session.begin_nested():
            session.add(
                DeviceNonce(
                    device_id=device.id,
                    nonce=auth.nonce,
                    expires_at=now + dt.timedelta(seconds=2 * window_s),
                )
            )
    except IntegrityError as exc:
        raise Unauthenticated("replayed device request") from exc
    return Principal(
        PrincipalKind.DEVICE, device.public_id, owner_id=device.owner_id, device_id=device.id
    )


def rotate_key(
    ctx: Ctx,
    *,
    new_public_key: str,
    timestamp: int,
    old_key_signature: bytes,
    new_key_signature: bytes,
) -> Device:
    """Hand a device's identity (and uptime) to a new key: the old key signs the new one."""
    device = calling_device(ctx.session, ctx.actor.device_id, ctx.now, lock=True)
    if abs(timestamp - int(ctx.now.timestamp())) > ctx.settings.device_signature_window_s:
        raise InvalidInput("rotation timestamp outside the allowed window")
    try:
        new_key = signing.load_public_key(new_public_key)
    except ValueError as exc:
        raise InvalidInput(f"bad new public key: {exc}") from exc
    msg = signing.rotation_message(
        device_id=device.public_id, new_public_key=new_public_key, timestamp=timestamp
    )
    old_key = signing.load_public_key(device.public_key)
    if not (
        signing.verify(old_key, old_key_signature, msg)
        and signing.verify(new_key, new_key_signature, msg)
    ):
        raise Unauthenticated("key rotation must be signed by both the old and the new key")
    if new_public_key == device.public_key:
        raise Conflict("the new key is the current key")
    before = device.public_key
    device.public_key = new_public_key
    device.updated_at = ctx.now
    audit.append(
        ctx.session,
        actor=ctx.actor,
        action="device.rotate_key",
        entity_kind="device",
        entity_id=device.public_id,
        before={"public_key": before},
        after={"public_key": new_public_key},
        now=ctx.now,
        address=ctx.address,
    )
    return device


def prune_nonces(session: Session, now: dt.datetime) -> int:
    result = session.execute(delete(DeviceNonce).where(DeviceNonce.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


def get_self(ctx: Ctx) -> Device:
    # Not touched: a status request is not a sign of life. `gpunet worker status` run
    # beside a dead agent must not make it look alive in the owner's list or the
    # explorer (issue 12); heartbeats, handshakes and proofs are what count as contact.
    return calling_device(ctx.session, ctx.actor.device_id, ctx.now)
