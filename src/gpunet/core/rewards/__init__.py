"""Verified uptime and reward math: pure, exact (integers and Fractions), deterministic.

Modules: `clock` (epochs, slots), `uptime` (slot bitmaps, status and forfeit rules),
`incidents` (operator-declared outage credit), `emission` (public schedule),
`allocation` (exact per-wallet split), `snapshot` (Merkle root and payout proofs),
`close` (the two calls the coordinator makes). Rules for suppliers: docs/rewards.md.
"""

from gpunet.core.rewards.allocation import (
    Allocation,
    DeviceUptime,
    Weight,
    allocate,
    split,
    wallet_scores,
)
from gpunet.core.rewards.clock import EpochClock
from gpunet.core.rewards.close import EpochClose, close_epoch, device_uptime, to_device_uptime
from gpunet.core.rewards.emission import (
    BaseEmission,
    EmissionSchedule,
    Season,
    dump_schedule,
    emission_for_epoch,
    load_schedule,
)
from gpunet.core.rewards.incidents import IncidentPolicy, IncidentWindow, incident_credit
from gpunet.core.rewards.snapshot import (
    PayoutProof,
    Snapshot,
    build_snapshot,
    encode_leaf,
    snapshot_from_payouts,
    verify_payout,
)
from gpunet.core.rewards.uptime import (
    Forfeit,
    StatusChange,
    bitmap_from_heartbeats,
    count_slots,
    forfeit_range,
    merge_heartbeats,
    verified_mask,
)

__all__ = [
    "Allocation",
    "BaseEmission",
    "DeviceUptime",
    "EmissionSchedule",
    "EpochClock",
    "EpochClose",
    "Forfeit",
    "IncidentPolicy",
    "IncidentWindow",
    "PayoutProof",
    "Season",
    "Snapshot",
    "StatusChange",
    "Weight",
    "allocate",
    "bitmap_from_heartbeats",
    "build_snapshot",
    "close_epoch",
    "count_slots",
    "device_uptime",
    "dump_schedule",
    "emission_for_epoch",
    "encode_leaf",
    "forfeit_range",
    "incident_credit",
    "load_schedule",
    "merge_heartbeats",
    "snapshot_from_payouts",
    "split",
    "to_device_uptime",
    "verified_mask",
    "verify_payout",
    "wallet_scores",
]
