"""The worker API: every call is signed by the calling device's own key (T3).

No route takes a device id: a device can only ever act on itself.
"""

from __future__ import annotations

from fastapi import APIRouter

from gpunet.core.errors import InvalidInput
from gpunet.core.signing import unb64u
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import DeviceCtx
from gpunet.server.services import devices

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])


def _out(device: devices.Device) -> s.WorkerDeviceOut:
    return s.WorkerDeviceOut(
        device_id=device.public_id,
        status=device.status,
        profile=device.profile,
        last_seen_at=device.last_seen_at,
        last_heartbeat_at=device.last_heartbeat_at,
        last_pass_at=device.last_pass_at,
        attested=device.attested_at is not None,
    )


@router.get("/device", response_model=s.WorkerDeviceOut)
def whoami(ctx: DeviceCtx) -> s.WorkerDeviceOut:
    return _out(devices.get_self(ctx))


@router.patch("/device", response_model=s.WorkerDeviceOut)
def update_metadata(body: s.WorkerMetadataUpdate, ctx: DeviceCtx) -> s.WorkerDeviceOut:
    changes = body.model_dump(exclude_unset=True)
    if not changes or any(v is None for v in changes.values()):
        raise InvalidInput("name at least one field, and no field may be null")
    return _out(devices.update_by_device(ctx, changes))


@router.post("/device/rotate-key", response_model=s.WorkerDeviceOut)
def rotate_key(body: s.KeyRotationRequest, ctx: DeviceCtx) -> s.WorkerDeviceOut:
    return _out(
        devices.rotate_key(
            ctx,
            new_public_key=body.new_public_key,
            timestamp=body.timestamp,
            old_key_signature=unb64u(body.old_key_signature),
            new_key_signature=unb64u(body.new_key_signature),
        )
    )
