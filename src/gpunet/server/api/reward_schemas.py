"""Bodies of the uptime and rewards API. Amounts are decimal strings (exact above 2**53);
public classes carry wallets and public device ids only, never an owner id (T2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict

EpochParam = Annotated[int, Path(ge=0, le=2**62)]
WalletParam = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeartbeatOut(BaseModel):
    status: str
    # Only a verified device that answers its challenges earns uptime (services.liveness).
    counted: bool
    epoch: int
    slot: int
    slot_seconds: int
    # A challenge waiting for this device (its clock is already running): fetch it now.
    challenge: str | None = None


class EpochOut(BaseModel):
    epoch: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    emission: str
    paid: str
    unallocated: str
    root: str
    wallets: int
    devices: int
    counted_slots: int
    incidents: int
    schedule_sha256: str
    closed_at: dt.datetime


class EpochList(BaseModel):
    items: list[EpochOut]
    next_before: int | None


class PayoutOut(BaseModel):
    wallet: str
    amount: str


class PayoutList(BaseModel):
    epoch: int
    root: str
    items: list[PayoutOut]
    next_after: str | None


class ProofOut(BaseModel):
    root: str
    proof: dict[str, Any]  # PayoutProof.to_dict(): check offline with `gpunet rewards verify`


class IncidentOut(BaseModel):
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str
    declared_at: dt.datetime


class IncidentList(BaseModel):
    items: list[IncidentOut]
    next_before: dt.datetime | None  # pass as `before` for the next (older) page


class ScheduleOut(BaseModel):
    schedule: dict[str, Any]
    schedule_sha256: str
    incident_lookback_slots: int
    incident_max_credit_slots: int
    settle_seconds: float
    weights: dict[str, str]  # catalog profile -> exact weight as a fraction "p/q"


class DeviceUptimeOut(BaseModel):
    device_id: str
    epoch: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    slots_per_epoch: int
    online_slots: int  # slots with a heartbeat flushed so far
    counted_slots: int  # of those (plus incident credit), slots that count
    counted_bitmap: str  # hex of the integer; bit i = slot i of the epoch
    weight: str
    closed: bool


class MyPayoutsOut(BaseModel):
    epoch: int
    closed: bool
    root: str | None
    emission: str | None
    payouts: list[PayoutOut]
