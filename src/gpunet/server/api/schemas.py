"""HTTP request and response bodies. Requests reject unknown fields and bound every
string (T4); public responses are separate classes so nothing private can slip in (T2).
Threats T1-T9 are described in docs/threat-model.md."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from gpunet.core.models import HardwareClaim, Label, Region, VersionText
from gpunet.server.security.principal import Scope

PublicDeviceId = Annotated[str, StringConstraints(pattern=r"^dev_[a-z2-7]{16}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
DisplayName = Label
Wallet = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9:_-]+$")
]
B64Key = Annotated[
    str, StringConstraints(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]{43}$")
]
B64Sig = Annotated[
    str, StringConstraints(min_length=86, max_length=86, pattern=r"^[A-Za-z0-9_-]{86}$")
]
OsName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()+-]*$")
]


class Request(BaseModel):
    # Every integer and boolean field is declared strict (`true` is not 1, "1" is not 1):
    # not `strict=True` here, because FastAPI validates the parsed JSON as Python
    # objects, and strict Python validation would refuse enum values and times given
    # as the strings JSON carries them in.
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- accounts --------------------------------------------------------------------------


class RegisterRequest(Request):
    email: EmailStr = Field(max_length=254)
    password: Password
    display_name: DisplayName | None = None


class AccountOut(Response):
    email: str | None
    display_name: str | None
    wallet_address: str | None
    created_at: dt.datetime


class AccountUpdate(Request):
    display_name: DisplayName | None = None
    wallet_address: Wallet | None = None


class PasswordChange(Request):
    current_password: Annotated[str, StringConstraints(max_length=256)]
    new_password: Password


class TokenRequest(Request):
    email: EmailStr = Field(max_length=254)
    password: Annotated[str, StringConstraints(max_length=256)]
    scopes: list[Scope] | None = Field(default=None, max_length=8)


class RefreshRequest(Request):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=128)]


class UnlockRequest(Request):
    # The one-time token e-mailed when an account is locked (services.login_throttle).
    token: Annotated[str, StringConstraints(min_length=10, max_length=128)]


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    scopes: list[str]


# --- enrollment ------------------------------------------------------------------------


class EnrollmentCodeRequest(Request):
    max_devices: int = Field(default=8, ge=1, le=64, strict=True)


class EnrollmentCodeOut(BaseModel):
    code: str
    max_devices: int
    expires_at: dt.datetime


class EnrollDevice(Request):
    public_key: B64Key
    hardware: HardwareClaim
    proof: B64Sig
    # The owner's device whose key was lost: it is retired and this GPU moves here.
    replaces: PublicDeviceId | None = None


class EnrollRequest(Request):
    code: Annotated[str, StringConstraints(min_length=8, max_length=64)]
    devices: list[EnrollDevice] = Field(min_length=1, max_length=64)


class EnrolledDevice(BaseModel):
    gpu_uuid: str
    device_id: str
    status: str


class EnrollOut(BaseModel):
    devices: list[EnrolledDevice]
    # HOST:PORT of the control channel; the agent stores it (`--control` overrides).
    control: str | None = None


# --- devices (owner and worker) --------------------------------------------------------


class OwnerDeviceOut(Response):
    """A device as its owner sees it."""

    device_id: str = Field(validation_alias="public_id")
    status: str
    vendor: str
    model: str
    vram_mib: int
    gpu_uuid: str
    pci_bus_id: str
    driver_version: str
    agent_version: str | None
    cuda_version: str | None
    os_name: str | None
    label: str | None
    region: str | None
    created_at: dt.datetime
    last_seen_at: dt.datetime | None


class OwnerDeviceList(BaseModel):
    items: list[OwnerDeviceOut]
    next_cursor: str | None


class OwnerDeviceUpdate(Request):
    label: Label | None = None
    region: Region | None = None


class WorkerMetadataUpdate(Request):
    agent_version: VersionText | None = None
    driver_version: VersionText | None = None
    cuda_version: VersionText | None = None
    os_name: OsName | None = None


class KeyRotationRequest(Request):
    new_public_key: B64Key
    timestamp: int = Field(ge=0, le=2**40, strict=True)
    old_key_signature: B64Sig
    new_key_signature: B64Sig


class WorkerDeviceOut(BaseModel):
    """A device's own view of itself, for `gpunet worker status`."""

    device_id: str
    status: str
    profile: str | None = None
    last_seen_at: dt.datetime | None = None
    # The last heartbeat the coordinator received (to within a minute); never the time
    # of this request.
    last_heartbeat_at: dt.datetime | None = None
    last_pass_at: dt.datetime | None = None
    attested: bool = False
    cluster: str | None = None  # set once customer clusters exist


# --- explorer (public) -----------------------------------------------------------------


class PublicDevice(BaseModel):
    """Everything the public may know about a device. No owner, key, UUID or label."""

    device_id: str
    vendor: str
    model: str
    vram_mib: int
    status: str
    region: str | None
    enrolled_on: dt.date
    last_seen_at: dt.datetime | None


class PublicDeviceList(BaseModel):
    items: list[PublicDevice]
    next_cursor: str | None


class NetworkStats(BaseModel):
    devices_by_status: dict[str, int]
    verified_gpus: int
    verified_vram_mib: int


class ModelCount(BaseModel):
    model: str
    region: str | None
    status: str
    count: int


class ModelBreakdown(BaseModel):
    items: list[ModelCount]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
