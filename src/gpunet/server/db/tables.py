"""The coordinator's tables (mapped classes only; the schema itself is made and changed by
the Alembic migrations in db/migrations). Queries live in the services that use them,
and nothing here commits: the request or job that owns the transaction does."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gpunet.server.db.amount import Amount
from gpunet.server.db.types import BigId, UTCDateTime


class Base(DeclarativeBase):
    pass


class Owner(Base):
    """A supplier or customer account. Never shown to the public (T2)."""

    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(64))
    wallet_address: Mapped[str | None] = mapped_column(String(128))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ExternalIdentity(Base):
    """Maps an OIDC (issuer, subject) pair to exactly one owner."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuthSession(Base):
    """One login. Access tokens name it, so revoking it revokes them all at once.

    The refresh token rotates on every use; presenting an already-used refresh token
    means it was stolen, and revokes the session.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginThrottle(Base):
    """Failed password sign-ins against one account (services.login_throttle).

    One row per account that has failed at least once; every replica reads and bumps
    the same row, so the back-off holds however many replicas an attacker spreads over.
    `failures` counts since the last success or unlock.
    """

    __tablename__ = "login_throttle"

    owner_id: Mapped[int] = mapped_column(
        ForeignKey("owners.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    locked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The e-mailed one-time unlock token, kept only as its digest.
    unlock_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    unlock_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginAddress(Base):
    """An address (an IPv6 /64) that signed in to an account with its password, or
    redeemed its unlock token: it is never held back by that account's back-off."""

    __tablename__ = "login_addresses"

    owner_id: Mapped[int] = mapped_column(
        ForeignKey("owners.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    address_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_success_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class EnrollmentCode(Base):
    """A one-time, short-lived code an owner hands to the agent on one host."""

    __tablename__ = "enrollment_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    max_devices: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# The rows the one-GPU-one-device indexes cover (the literal is DeviceStatus.RETIRED).
IN_SERVICE = "status <> 'retired'"


class Device(Base):
    """One GPU. `status` changes only in `services.device_status.switch_device_status`."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_status_model", "status", "model"),
        Index("ix_devices_host", "host_fingerprint"),
        # One GPU, one device in service: a retired device keeps its GPU's identity
        # (its history names it) while a replacement enrolls the same GPU anew.
        Index(
            "uq_devices_gpu_uuid_in_service",
            "gpu_uuid",
            unique=True,
            postgresql_where=text(IN_SERVICE),
            sqlite_where=text(IN_SERVICE),
        ),
        Index(
            "uq_devices_attestation_ueid_in_service",
            "attestation_ueid",
            unique=True,
            postgresql_where=text(IN_SERVICE),
            sqlite_where=text(IN_SERVICE),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    # Claimed hardware, fixed at enrollment; later proofs must match it.
    vendor: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    vram_mib: Mapped[int] = mapped_column(Integer)
    gpu_uuid: Mapped[str] = mapped_column(String(64))
    pci_bus_id: Mapped[str] = mapped_column(String(32))
    host_fingerprint: Mapped[str] = mapped_column(String(128))
    # Worker metadata (device-signed updates).
    driver_version: Mapped[str] = mapped_column(String(32))
    agent_version: Mapped[str | None] = mapped_column(String(32))
    cuda_version: Mapped[str | None] = mapped_column(String(32))
    os_name: Mapped[str | None] = mapped_column(String(64))
    # Owner-editable fields.
    label: Mapped[str | None] = mapped_column(String(48))
    region: Mapped[str | None] = mapped_column(String(32), index=True)
    enrolled_from: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The last heartbeat received (HTTP or control channel), written by the uptime flush
    # at most every services.uptime.HEARD_EVERY; `gpunet worker status` shows it. Unlike
    # last_seen_at, no other contact (a handshake, a proof, a status request) moves it.
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Proof of GPU bookkeeping (see services.proofs).
    profile: Mapped[str | None] = mapped_column(String(48))
    last_pass_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Failures forfeit uptime back to here: the last passed roll-call (or enrollment),
    # since one GPU can pass staggered spot checks for several devices.
    last_rollcall_pass_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when a challenge lapsed unheard; until the next pass no heartbeat counts.
    proof_owed_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Confidential-computing attestation (the higher tier), when the GPU offers it.
    attested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attestation_ueid: Mapped[str | None] = mapped_column(String(128))


class DeviceEvent(Base):
    """Status changes and other notable facts about a device, in order."""

    __tablename__ = "device_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255))
    # On a failed proof: uptime from this moment (the last pass) on is forfeited.
    forfeit_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Challenge(Base):
    """One proof-of-GPU challenge to one device, from issue to verdict.

    Everything the exchange needs between its three requests lives here, so any replica
    can take any step. Times are the coordinator's own; the agent's figures are only
    informative.
    """

    __tablename__ = "challenges"
    __table_args__ = (
        Index("ix_challenges_device_outcome", "device_id", "outcome"),
        Index("ix_challenges_outcome_deadline", "outcome", "deadline"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # enrollment | spot | rollcall | manual
    batch: Mapped[str] = mapped_column(String(64), index=True)  # challenged at one moment
    profile: Mapped[str] = mapped_column(String(48))
    body: Mapped[str] = mapped_column(Text)  # the Challenge message as sent (JSON)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The deadline of the pending step: the commitment while open, the openings once
    # committed (set anew at commitment). `expire` reads only this.
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    committed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    commitment: Mapped[str | None] = mapped_column(Text)
    hardware: Mapped[str | None] = mapped_column(Text)
    opening_secret: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # services.proofs.ChallengeOutcome: open | committed | passed | failed | missed
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    commit_elapsed_s: Mapped[float | None] = mapped_column(Float)
    verify_cpu_ms: Mapped[float | None] = mapped_column(Float)


class DeviceNonce(Base):
    """Nonces of signed device requests seen within the signature window (replay guard)."""

    __tablename__ = "device_nonces"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class AuditRecord(Base):
    """Append-only, hash-chained log of every change (T5).

    `hash` = SHA-256 over `prev_hash` and the canonical JSON of this record, so editing
    or deleting any record breaks every hash after it.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_actor_at", "actor_kind", "actor_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_kind: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row: the chain's tip. Appenders lock it, so replicas append in turn."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(BigId)


class RateCounter(Base):
    """Fixed-window counters shared by all replicas (rate limits and surge detection)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigId, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class Block(Base):
    """An operator's block on an address, a network range or a principal."""

    __tablename__ = "blocks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    lifted_by: Mapped[str | None] = mapped_column(String(64))


class Alert(Base):
    """An alert raised by a detector; `dedupe_key` makes replicas raise it once."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(500))
    details: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# --- verified uptime and rewards (issue 5; see services.uptime, services.rewards) -------


class UptimeSlots(Base):
    """60 one-minute uptime slots of one device as the bits of one integer.

    `chunk` is the global slot index (counted from the schedule's genesis) // 60, so a
    row covers one aligned hour. Replicas merge their buffered bits with a bitwise OR
    upsert, which makes every flush idempotent. The key leads with `chunk` because an
    epoch close reads whole chunks; an owner's view adds the device to the same key.
    """

    __tablename__ = "uptime_slots"

    chunk: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    device_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    bits: Mapped[int] = mapped_column(BigInteger)


class RewardEpoch(Base):
    """A closed epoch: the published totals and Merkle root. Written once, never updated;
    its primary key is what makes two closers (replicas, a retried CLI) pay once."""

    __tablename__ = "reward_epochs"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    emission: Mapped[int] = mapped_column(Amount)
    paid: Mapped[int] = mapped_column(Amount)
    unallocated: Mapped[int] = mapped_column(Amount)
    root: Mapped[str] = mapped_column(String(64))
    wallets: Mapped[int] = mapped_column(Integer)
    devices: Mapped[int] = mapped_column(Integer)  # devices with a positive score
    counted_slots: Mapped[int] = mapped_column(BigInteger)
    incidents: Mapped[int] = mapped_column(Integer)  # windows that overlapped the epoch
    schedule_sha256: Mapped[str] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RewardPayout(Base):
    """One wallet's amount in one closed epoch (amount > 0): the snapshot's leaves."""

    __tablename__ = "reward_payouts"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    wallet: Mapped[str] = mapped_column(String(128), primary_key=True)
    amount: Mapped[int] = mapped_column(Amount)


class IncidentWindowRow(Base):
    """An operator-declared outage [starts_at, ends_at): public, and credited at close."""

    __tablename__ = "incident_windows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200))
    declared_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    declared_by: Mapped[str] = mapped_column(String(64))  # operator; never published


# The epoch close reads proof failures and status changes by kind and time.
Index("ix_device_events_kind_at", DeviceEvent.kind, DeviceEvent.at)


# --- the explorer's kept history (issue 10; see services.explorer_history) -------------


class NetworkSnapshot(Base):
    """The network at the end of one hour, written once by the explorer's history job so
    that the public plots read a few hundred small rows instead of recounting 600,000
    devices and a month of challenges per request. `period` is unix time // 3600."""

    __tablename__ = "network_snapshots"

    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the hour's start
    taken_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    verified: Mapped[int] = mapped_column(Integer)
    pending: Mapped[int] = mapped_column(Integer)
    suspect: Mapped[int] = mapped_column(Integer)
    suspended: Mapped[int] = mapped_column(Integer)
    verified_vram_mib: Mapped[int] = mapped_column(BigInteger)
    verified_int8_tops: Mapped[float] = mapped_column(Float)
    # Devices with any verified uptime in the hour, and their slots (heartbeat minutes).
    online_devices: Mapped[int] = mapped_column(Integer)
    online_slots: Mapped[int] = mapped_column(BigInteger)
    proofs_passed: Mapped[int] = mapped_column(Integer)
    proofs_failed: Mapped[int] = mapped_column(Integer)
    proofs_missed: Mapped[int] = mapped_column(Integer)


class EpochScore(Base):
    """An epoch's total score as its close computed it, over `scale` (the weights' common
    denominator times the cluster bonus's): a device's share of the emission is
    weight x slots / (total_score / scale). Written with the epoch, never updated."""

    __tablename__ = "epoch_scores"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    total_score: Mapped[int] = mapped_column(Amount)
    scale: Mapped[int] = mapped_column(Amount)


# A device page lists its proofs newest first; the history job counts verdicts per hour.
Index("ix_challenges_device_issued", Challenge.device_id, Challenge.issued_at)
Index("ix_challenges_completed_at", Challenge.completed_at)

# The customers' clusters live in their own module on the same Base; importing it here
# keeps Base.metadata whole wherever the tables are used (migrations' checks, tests).
from gpunet.server.db import cluster_tables as _cluster_tables  # noqa: E402, F401
