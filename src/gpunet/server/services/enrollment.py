"""Enrollment: an owner's one-time code turns an agent's fresh keys into pending devices.

The code is the only thing that ties new devices to an owner, so it is single-use,
short-lived, stored only as a digest, and carries a MAC under a server key: a flood of
fabricated codes (T1 at scale) is rejected before any database work.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpunet.core import signing
from gpunet.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from gpunet.core.ids import new_public_id
from gpunet.core.models import DeviceStatus, HardwareClaim
from gpunet.server.context import Ctx
from gpunet.server.db.tables import Device, EnrollmentCode
from gpunet.server.security.principal import Principal, PrincipalKind
from gpunet.server.security.secrets import digest, same, tag
from gpunet.server.services import audit
from gpunet.server.services.retire import retire

CODE_PREFIX = "gpn-enr-"
_RANDOM_BYTES = 15
_TAG_BYTES = 5
MAX_PENDING_PER_OWNER = 256


def _encode(raw: bytes) -> str:
    return CODE_PREFIX + base64.b32encode(raw).decode().lower()


def new_code(key: bytes) -> str:
    nonce = secrets.token_bytes(_RANDOM_BYTES)
    return _encode(nonce + tag(key, nonce, _TAG_BYTES))


def code_is_well_formed(key: bytes, code: str) -> bool:
    """Cheap, stateless check: right shape and a valid server MAC."""
    if not code.startswith(CODE_PREFIX) or len(code) != len(CODE_PREFIX) + 32:
        return False
    try:
        raw = base64.b32decode(code[len(CODE_PREFIX) :].upper())
    except ValueError:
        return False
    nonce, mac = raw[:_RANDOM_BYTES], raw[_RANDOM_BYTES:]
    return same(tag(key, nonce, _TAG_BYTES), mac)


def code_digest(code: str) -> bytes:
    """What a device's proof of possession signs: binds its key to this one code."""
    return hashlib.sha256(code.encode()).digest()


def create_code(
    ctx: Ctx, key: bytes, *, owner_id: int, max_devices: int
) -> tuple[str, EnrollmentCode]:
    if not 1 <= max_devices <= ctx.settings.enrollment_max_devices:
        raise InvalidInput(f"max_devices must be 1..{ctx.settings.enrollment_max_devices}")
    code = new_code(key)
    row = EnrollmentCode(
        owner_id=owner_id,
        code_hash=digest(code),
        max_devices=max_devices,
        created_at=ctx.now,
        expires_at=ctx.now + dt.timedelta(seconds=ctx.settings.enrollment_code_ttl_s),
    )
    ctx.session.add(row)
    ctx.session.flush()
    audit.append(
        ctx.session,
        actor=ctx.actor,
        action="enrollment_code.create",
        entity_kind="owner",
        entity_id=str(owner_id),
        before=None,
        after={"code": row.id, "max_devices": max_devices},
        now=ctx.now,
        address=ctx.address,
    )
    return code, row


@dataclass(frozen=True, slots=True)
class NewDevice:
    public_key: str
    claim: HardwareClaim
    claim_json: bytes  # the exact bytes the device signed over
    proof: bytes  # signature by the new key over `signing.enrollment_message`
    # The owner's device this one replaces (its keystore was lost): it is retired and its
    # GPU moves here. The code proves the owner asked for it; nothing else may.
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Enrolled:
    gpu_uuid: str
    device_id: str
    status: DeviceStatus


def _check_batch(code: str, devices: list[NewDevice]) -> None:
    if not devices:
        raise InvalidInput("enroll at least one device")
    if len({d.claim.gpu_uuid for d in devices}) != len(devices):
        raise InvalidInput("a GPU UUID appears twice in one enrollment")
    if len({d.public_key for d in devices}) != len(devices):
        raise InvalidInput("each device needs its own key")
    replaced = [d.replaces for d in devices if d.replaces is not None]
    if len(set(replaced)) != len(replaced):
        raise InvalidInput("a device is replaced twice in one enrollment")
    if len({d.claim.host_fingerprint for d in devices}) != 1:
        raise InvalidInput("one enrollment code enrolls the GPUs of one host")
    cd = code_digest(code)
    for d in devices:
        try:
            key = signing.load_public_key(d.public_key)
        except ValueError as exc:
            raise InvalidInput(f"bad public key for {d.claim.gpu_uuid}: {exc}") from exc
        msg = signing.enrollment_message(
            code_digest=cd, public_key=d.public_key, claim_json=d.claim_json
        )
        if not signing.verify(key, d.proof, msg):
            raise Unauthenticated(f"proof of key possession failed for {d.claim.gpu_uuid}")


def _taken(session: Session, devices: list[NewDevice], owner_id: int) -> dict[str, Device]:
    """Refuse GPUs already in service (except the devices being replaced) and reused keys;
    return the devices to replace, by GPU UUID, locked."""
    old: dict[str, Device] = {}
    for d in devices:
        if d.replaces is None:
            continue
        device = session.execute(
            select(Device)
            .where(Device.public_id == d.replaces, Device.owner_id == owner_id)
            .with_for_update()
        ).scalar_one_or_none()
        if device is None:
            # Another owner's device is not even admitted to (as in services.devices.owned).
            raise NotFound(f"no such device: {d.replaces}")
        if device.status == DeviceStatus.RETIRED.value:
            raise Conflict(f"device {d.replaces} is already retired: enroll without --replace")
        if device.gpu_uuid != d.claim.gpu_uuid:
            raise Conflict(
                f"device {d.replaces} is GPU {device.gpu_uuid}, not {d.claim.gpu_uuid}: "
                "replace it from the host that holds that GPU"
            )
        old[device.gpu_uuid] = device
    uuids = [d.claim.gpu_uuid for d in devices]
    for uuid, public_id, holder in session.execute(
        select(Device.gpu_uuid, Device.public_id, Device.owner_id).where(
            Device.gpu_uuid.in_(uuids), Device.status != DeviceStatus.RETIRED.value
        )
    ):
        if uuid in old:
            continue
        if holder != owner_id:
            raise Conflict(f"GPU {uuid} is already enrolled as another device")
        # The owner's own device: most likely its keystore was lost. Say how to recover.
        raise Conflict(
            f"GPU {uuid} is already enrolled as {public_id}; if this host lost its keys, "
            f"run `gpunet worker enroll --code CODE --replace {public_id}` "
            f"(or retire it first: `gpunet devices retire {public_id}`)"
        )
    keys = [d.public_key for d in devices]
    if session.execute(select(Device.id).where(Device.public_key.in_(keys))).first():
        raise Conflict("a device key is already in use")
    return old


def enroll(ctx: Ctx, key: bytes, *, code: str, devices: list[NewDevice]) -> list[Enrolled]:
    row = _redeem(ctx, key, code, devices)
    replaced = _taken(ctx.session, devices, row.owner_id)
    # The agent acts for the owner who made the code: that is who the audit names.
    actor = Principal(PrincipalKind.OWNER, str(row.owner_id), owner_id=row.owner_id)
    out: list[Enrolled] = []
    for d in devices:
        public_id = new_public_id("dev")
        previous = replaced.get(d.claim.gpu_uuid)
        if previous is not None:
            # Retired first: the GPU may be in service as one device only (the unique
            # index on in-service GPUs enforces it), and the old one stops counting now,
            # the instant the new one starts from pending.
            retire(
                ctx.session,
                previous,
                reason=f"replaced by {public_id} (new key, proved with a fresh code)",
                actor=actor,
                now=ctx.now,
            )
            ctx.session.flush()
        device = _new_device(ctx, row.owner_id, public_id, d)
        _audit_enrolled(ctx, actor, device)
        if previous is not None:
            _audit_replaced(ctx, actor, previous, device)
        out.append(Enrolled(d.claim.gpu_uuid, device.public_id, DeviceStatus.PENDING))
    return out


def _redeem(ctx: Ctx, key: bytes, code: str, devices: list[NewDevice]) -> EnrollmentCode:
    """The code's row, locked and marked used, once every check on the batch passed."""
    if not code_is_well_formed(key, code):
        raise Unauthenticated("invalid or expired enrollment code")
    _check_batch(code, devices)
    row = ctx.session.execute(
        select(EnrollmentCode).where(EnrollmentCode.code_hash == digest(code)).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= ctx.now:
        raise Unauthenticated("invalid or expired enrollment code")
    if len(devices) > row.max_devices:
        raise InvalidInput(f"this code enrolls at most {row.max_devices} devices")
    pending = ctx.session.execute(
        select(func.count())
        .select_from(Device)
        .where(Device.owner_id == row.owner_id, Device.status == DeviceStatus.PENDING.value)
    ).scalar_one()
    if pending + len(devices) > MAX_PENDING_PER_OWNER:
        raise Conflict(
            f"an owner may have at most {MAX_PENDING_PER_OWNER} pending devices; "
            "let some verify first"
        )
    row.used_at = ctx.now
    return row


def _new_device(ctx: Ctx, owner_id: int, public_id: str, d: NewDevice) -> Device:
    c = d.claim
    device = Device(
        public_id=public_id,
        owner_id=owner_id,
        status=DeviceStatus.PENDING.value,
        public_key=d.public_key,
        vendor=c.vendor.value,
        model=c.model,
        vram_mib=c.vram_mib,
        gpu_uuid=c.gpu_uuid,
        pci_bus_id=c.pci_bus_id,
        host_fingerprint=c.host_fingerprint,
        driver_version=c.driver_version,
        enrolled_from=ctx.address,
        created_at=ctx.now,
        updated_at=ctx.now,
        status_changed_at=ctx.now,
    )
    ctx.session.add(device)
    ctx.session.flush()
    return device


def _audit_enrolled(ctx: Ctx, actor: Principal, device: Device) -> None:
    audit.append(
        ctx.session,
        actor=actor,
        action="device.enroll",
        entity_kind="device",
        entity_id=device.public_id,
        before=None,
        after={
            "model": device.model,
            "vram_mib": device.vram_mib,
            "gpu_uuid": device.gpu_uuid,
            "status": device.status,
        },
        now=ctx.now,
        address=ctx.address,
    )


def _audit_replaced(ctx: Ctx, actor: Principal, previous: Device, device: Device) -> None:
    """The GPU's identity moves from the old key and device to the new ones."""
    audit.append(
        ctx.session,
        actor=actor,
        action="device.replace",
        entity_kind="device",
        entity_id=previous.public_id,
        before={
            "device_id": previous.public_id,
            "public_key": previous.public_key,
            "gpu_uuid": previous.gpu_uuid,
            "pci_bus_id": previous.pci_bus_id,
        },
        after={
            "device_id": device.public_id,
            "public_key": device.public_key,
            "gpu_uuid": device.gpu_uuid,
            "pci_bus_id": device.pci_bus_id,
        },
        now=ctx.now,
        address=ctx.address,
    )
