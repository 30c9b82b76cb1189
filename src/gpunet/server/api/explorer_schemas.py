"""Public bodies of the explorer's history, proofs and per-epoch device figures.

Like every public schema (T2) these name devices by public id only. Proof times are
given to the hour: devices sharing an owner, host or network are challenged at the
same moment (T8), so exact times would let anyone group a stranger's devices by owner.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from gpunet.server.api.reward_schemas import EpochOut
from gpunet.server.api.schemas import ModelCount, NetworkStats


class NetworkPoint(BaseModel):
    at: dt.datetime  # the hour's start
    verified: int
    pending: int
    suspect: int
    suspended: int
    verified_vram_mib: int
    verified_int8_tops: float
    online_devices: int  # devices with verified uptime in the hour
    online_device_hours: float  # their verified uptime, summed
    proofs_passed: int
    proofs_failed: int
    proofs_missed: int


class NetworkHistory(BaseModel):
    period_seconds: int
    items: list[NetworkPoint]  # oldest first; an hour nobody recorded is absent


class Overview(BaseModel):
    stats: NetworkStats
    verified_by_model: list[ModelCount]  # verified devices only, by model and region
    verified_int8_tops: float
    # Clusters exist only once customer clusters are built (issue 9); None until then.
    clusters_running: int | None
    epochs: list[EpochOut]  # the latest closed epochs, newest first


class PublicProof(BaseModel):
    issued_hour: dt.datetime  # rounded down to the hour (see the module doc)
    kind: str  # enrollment | spot | rollcall | manual
    profile: str
    outcome: str  # open | committed | passed | failed | missed
    reason: str | None
    commit_seconds: float | None  # the timed work, from issue to commitment
    budget_seconds: float | None  # what the catalog allows the profile
    verify_cpu_ms: float | None  # what checking it cost the coordinator


class PublicProofList(BaseModel):
    items: list[PublicProof]
    next_before: dt.datetime | None  # pass as `before` for older proofs


class DeviceEpochOut(BaseModel):
    epoch: int
    starts_at: dt.datetime
    slots_per_epoch: int
    online_slots: int
    counted_slots: int
    closed: bool
    # The device's share of the emission, floor(E x its score / total score), in base
    # units; None while the epoch is open. Payouts go to wallets, which may round up.
    reward: str | None


class DeviceEpochList(BaseModel):
    device_id: str
    items: list[DeviceEpochOut]  # newest first
    next_before: int | None
