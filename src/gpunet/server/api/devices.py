"""Owners' view of their devices, and enrollment."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from gpunet.core.errors import Unauthenticated
from gpunet.core.signing import unb64u
from gpunet.server.api import schemas as s
from gpunet.server.api.deps import AnonCtx, OwnerCtx, State, owner, tighter_limit
from gpunet.server.api.paging import page_of
from gpunet.server.security.principal import Scope
from gpunet.server.services import devices, enrollment, retire

router = APIRouter(prefix="/api/v1", tags=["devices"])
ReadCtx = Annotated[OwnerCtx, Depends(owner(Scope.DEVICES_READ))]
WriteCtx = Annotated[OwnerCtx, Depends(owner(Scope.DEVICES_WRITE))]
EnrollCtx = Annotated[OwnerCtx, Depends(owner(Scope.ENROLL))]
Cursor = Annotated[str | None, Query(pattern=r"^dev_[a-z2-7]{16}$")]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/enrollment-codes", status_code=201, response_model=s.EnrollmentCodeOut)
def create_enrollment_code(
    ctx: EnrollCtx, st: State, body: s.EnrollmentCodeRequest | None = None
) -> s.EnrollmentCodeOut:
    body = body or s.EnrollmentCodeRequest()  # no body means the defaults, like {}
    code, row = enrollment.create_code(
        ctx, st.enrollment_key, owner_id=ctx.owner_id, max_devices=body.max_devices
    )
    return s.EnrollmentCodeOut(code=code, max_devices=row.max_devices, expires_at=row.expires_at)


async def reject_forged_codes(request: Request, st: State) -> None:
    """Cheapest first (T1 at scale, docs/threat-model.md): a code without our MAC is
    refused here, before any rate-limit counter, database lookup, signature check or
    worker thread."""
    try:
        code = json.loads(await request.body()).get("code")
    except (ValueError, AttributeError):
        return  # not JSON, or not an object: request validation will say what is wrong
    if isinstance(code, str) and not enrollment.code_is_well_formed(st.enrollment_key, code):
        st.metrics.auth_failures.labels("/api/v1/enroll", "enrollment").inc()
        raise Unauthenticated("invalid or expired enrollment code")


@router.post(
    "/enroll",
    status_code=201,
    response_model=s.EnrollOut,
    dependencies=[Depends(reject_forged_codes), Depends(tighter_limit("enroll"))],
)
def enroll(body: s.EnrollRequest, ctx: AnonCtx, st: State) -> s.EnrollOut:
    """Called by the agent with the owner's code: no bearer token, no device key yet."""
    new = [
        enrollment.NewDevice(
            public_key=d.public_key,
            claim=d.hardware,
            claim_json=d.hardware.model_dump_json().encode(),
            proof=unb64u(d.proof),
            replaces=d.replaces,
        )
        for d in body.devices
    ]
    done = enrollment.enroll(ctx, st.enrollment_key, code=body.code, devices=new)
    return s.EnrollOut(
        devices=[
            s.EnrolledDevice(gpu_uuid=e.gpu_uuid, device_id=e.device_id, status=e.status.value)
            for e in done
        ],
        control=st.control_address,
    )


@router.get("/devices", response_model=s.OwnerDeviceList)
def list_my_devices(ctx: ReadCtx, limit: Limit = 50, cursor: Cursor = None) -> s.OwnerDeviceList:
    rows = devices.list_owned(ctx.session, ctx.owner_id, limit=limit + 1, after=cursor)
    page, next_cursor = page_of(rows, limit, lambda d: d.public_id)
    return s.OwnerDeviceList(
        items=[s.OwnerDeviceOut.model_validate(d) for d in page], next_cursor=next_cursor
    )


@router.get("/devices/{device_id}", response_model=s.OwnerDeviceOut)
def get_my_device(device_id: s.PublicDeviceId, ctx: ReadCtx) -> s.OwnerDeviceOut:
    return s.OwnerDeviceOut.model_validate(devices.owned(ctx.session, ctx.owner_id, device_id))


@router.patch("/devices/{device_id}", response_model=s.OwnerDeviceOut)
def update_my_device(
    device_id: s.PublicDeviceId, body: s.OwnerDeviceUpdate, ctx: WriteCtx
) -> s.OwnerDeviceOut:
    changes = body.model_dump(exclude_unset=True)
    return s.OwnerDeviceOut.model_validate(devices.update_by_owner(ctx, device_id, changes))


@router.post("/devices/{device_id}/retire", response_model=s.OwnerDeviceOut)
def retire_my_device(device_id: s.PublicDeviceId, ctx: WriteCtx) -> s.OwnerDeviceOut:
    """Take a device out of service for good; its history stays public."""
    return s.OwnerDeviceOut.model_validate(retire.retire_by_owner(ctx, device_id))
