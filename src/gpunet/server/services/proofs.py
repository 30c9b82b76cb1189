"""Proof of GPU on the coordinator: hand out challenges, take commitments and openings,
and turn each verdict into the device's next status.

The exchange is three signed calls by the device, any of which may reach any replica:

    GET  worker/challenge                  -> the Challenge (clock starts at delivery)
    POST worker/challenge/{id}/commitment  -> roots in; rows to open out (drawn now)
    POST worker/challenge/{id}/openings    -> rows in; verdict out

Cheap checks come first (ownership, state, deadline, shape, hardware), the exact
recomputation last. A challenge must be fetched within a short grace after issue:
devices challenged at one moment (same owner, host or network; roll-calls) therefore
start together, and one backend answering for two of them runs out of budget.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from gpunet.core.models import DeviceStatus, HardwareClaim
from gpunet.core.pog import (
    Catalog,
    Challenge,
    Commitment,
    Failure,
    FailureReason,
    HardwareReport,
    OpeningRequest,
    OpeningResponse,
    Success,
    Verdict,
    check_commitment_shape,
    check_eligible,
    check_hardware,
    check_timing,
    issue_challenge,
    new_opening_secret,
    plan_openings,
    verify,
)
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device, DeviceEvent
from gpunet.server.security.principal import Principal
from gpunet.server.services.attestation import (
    AttestationVerifier,
    Attested,
    NoAttestation,
    attestation_nonce,
)
from gpunet.server.services.device_status import switch_device_status
from gpunet.server.settings import Settings

OPEN, COMMITTED, PASSED, FAILED, MISSED = "open", "committed", "passed", "failed", "missed"
OUTSTANDING = (OPEN, COMMITTED)

# A device that no longer is what it enrolled as is not "suspect": it is suspended.
IDENTITY_REASONS = frozenset(
    {
        FailureReason.UUID_CHANGED,
        FailureReason.VRAM_CHANGED,
        FailureReason.MODEL_CHANGED,
        FailureReason.DUPLICATE_DEVICE,
        FailureReason.NOT_IN_KERNEL_LIST,
        FailureReason.SPOOFED_ENUMERATION,
    }
)
PENDING_FAILURES_BEFORE_SUSPENSION = 5
_rng = random.SystemRandom()


def next_spot_check(now: dt.datetime, mean_s: float) -> dt.datetime:
    """An unannounced time: exponential gaps, so the next check cannot be predicted."""
    return now + dt.timedelta(seconds=max(mean_s * 0.05, _rng.expovariate(1.0 / mean_s)))


@dataclass(frozen=True, slots=True)
class ProofPolicy:
    delivery_grace_s: float = 5.0
    spot_check_mean_s: float = 6 * 3600.0
    retry_after_failure_s: float = 60.0
    development: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ProofPolicy:
        return cls(
            delivery_grace_s=settings.challenge_delivery_grace_s,
            spot_check_mean_s=settings.spot_check_mean_s,
            retry_after_failure_s=settings.retry_after_failure_s,
            development=settings.development,
        )


def claim_of(device: Device) -> HardwareClaim:
    return HardwareClaim.model_validate(
        {
            "vendor": device.vendor,
            "model": device.model,
            "vram_mib": device.vram_mib,
            "gpu_uuid": device.gpu_uuid,
            "pci_bus_id": device.pci_bus_id,
            "driver_version": device.driver_version,
            "host_fingerprint": device.host_fingerprint,
        }
    )


def outstanding(session: Session, device_id: int) -> ChallengeRow | None:
    return session.execute(
        select(ChallengeRow).where(
            ChallengeRow.device_id == device_id, ChallengeRow.outcome.in_(OUTSTANDING)
        )
    ).scalar_one_or_none()


def issue(
    session: Session,
    device: Device,
    *,
    kind: str,
    batch: str,
    now: dt.datetime,
    catalog: Catalog,
    policy: ProofPolicy,
) -> ChallengeRow | None:
    """Issue a challenge unless the device already has one outstanding."""
    if outstanding(session, device.id) is not None:
        return None
    profile = catalog.for_claim(claim_of(device))
    if profile is None:
        apply_verdict(
            session,
            device,
            Failure(FailureReason.UNKNOWN_PROFILE, f"no catalog model matches {device.model!r}"),
            now=now,
            policy=policy,
        )
        return None
    msg = issue_challenge(profile, now=now)
    device.profile = profile.key
    row = ChallengeRow(
        id=msg.id,
        device_id=device.id,
        kind=kind,
        batch=batch,
        profile=profile.key,
        body=msg.model_dump_json(),
        issued_at=now,
        deadline=msg.deadline + dt.timedelta(seconds=policy.delivery_grace_s),
        outcome=OPEN,
    )
    session.add(row)
    session.flush()
    return row


def _mine(session: Session, device_id: int, challenge_id: str) -> ChallengeRow:
    row = session.execute(
        select(ChallengeRow).where(ChallengeRow.id == challenge_id).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.device_id != device_id:
        raise NotFound("no such challenge for this device")
    return row


def miss(row: ChallengeRow, device: Device, *, now: dt.datetime) -> None:
    """A challenge the device never received (it was offline): void, not failed.

    Being offline costs a device its uptime, not its status. It is due again at once,
    so it proves itself as soon as it is back, before its heartbeats count again. A
    device that received a challenge and did not answer has failed it (see `expire`):
    dropping the connection when challenged does not help a cheater.
    """
    row.outcome = MISSED
    row.completed_at = now
    row.detail = "not fetched within the delivery grace (device offline)"
    device.next_check_at = now


def speaking_device(session: Session, device_pk: int, now: dt.datetime) -> Device:
    """The device taking part in an exchange, locked; it was just heard from."""
    device = session.get(Device, device_pk, with_for_update=True)
    if device is None:
        raise Unauthenticated("unknown device")
    device.last_seen_at = now
    return device


def deliver(
    session: Session, device: Device, *, now: dt.datetime, policy: ProofPolicy
) -> Challenge | None:
    """The device's outstanding challenge, if it is waiting for a commitment."""
    row = session.execute(
        select(ChallengeRow)
        .where(ChallengeRow.device_id == device.id, ChallengeRow.outcome == OPEN)
        .with_for_update()
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.delivered_at is None:
        if (now - row.issued_at).total_seconds() > policy.delivery_grace_s:
            miss(row, device, now=now)
            return None
        row.delivered_at = now
    return Challenge.model_validate_json(row.body)


def accept_commitment(
    session: Session,
    device: Device,
    challenge_id: str,
    commitment: Commitment,
    hardware: HardwareReport,
    *,
    now: dt.datetime,
    policy: ProofPolicy,
    attestation: bytes | None = None,
    verifier: AttestationVerifier | None = None,
) -> OpeningRequest | Failure:
    row = _mine(session, device.id, challenge_id)
    if row.outcome != OPEN or row.delivered_at is None:
        raise Conflict("this challenge is not waiting for a commitment")
    msg = Challenge.model_validate_json(row.body)
    attested_ueid = None
    if attestation is not None:
        # Bound to this challenge's seed: a report made for another challenge is refused.
        attested = (verifier or NoAttestation()).verify(
            attestation, attestation_nonce(msg.seed), gpu_uuid=device.gpu_uuid
        )
        if not isinstance(attested, Attested):
            raise InvalidInput(f"attestation refused: {attested.reason}")
        attested_ueid = attested.ueid
    elapsed = (now - row.delivered_at).total_seconds()
    verdict = check_commitment_shape(msg, commitment)
    if verdict:
        verdict = check_timing(msg, elapsed)
    if verdict:
        verdict = check_hardware(
            claim_of(device),
            hardware,
            seen_elsewhere=_enrolled_elsewhere(session, device, hardware),
        )
    if verdict and attested_ueid is not None:
        verdict = _check_attestation(session, device, attested_ueid)
    row.hardware = json.dumps(
        {"report": hardware.model_dump(mode="json"), "attested_ueid": attested_ueid}
    )
    row.commit_elapsed_s = elapsed
    if not verdict:
        assert isinstance(verdict, Failure)
        finish(session, row, device, verdict, now=now, policy=policy)
        return verdict
    secret = new_opening_secret()
    row.opening_secret = secret.hex()
    row.commitment = commitment.model_dump_json()
    row.committed_at = now
    row.outcome = COMMITTED
    # From now on the pending step is the openings: they have their own, shorter budget
    # (plus the delivery grace as slack for the request in flight).
    row.deadline = now + dt.timedelta(seconds=msg.open_budget_s + policy.delivery_grace_s)
    return plan_openings(msg, secret).request()


def _check_attestation(session: Session, device: Device, ueid: str) -> Verdict:
    holder = session.execute(
        select(Device.id).where(Device.attestation_ueid == ueid, Device.id != device.id)
    ).first()
    if holder is not None:
        return Failure(FailureReason.DUPLICATE_DEVICE, "this GPU attested for another device")
    return Success()


def _enrolled_elsewhere(session: Session, device: Device, hardware: HardwareReport) -> set[str]:
    """UUIDs in this report that belong to other enrolled devices (of anyone, anywhere)."""
    uuids = {g.gpu_uuid for g in hardware.devices}
    rows = session.execute(
        select(Device.gpu_uuid).where(Device.gpu_uuid.in_(uuids), Device.id != device.id)
    ).scalars()
    return set(rows)


def accept_openings(
    session: Session,
    device: Device,
    challenge_id: str,
    response: OpeningResponse,
    *,
    now: dt.datetime,
    policy: ProofPolicy,
    catalog: Catalog,
) -> Verdict:
    row = _mine(session, device.id, challenge_id)
    if row.outcome != COMMITTED or row.committed_at is None:
        raise Conflict("this challenge is not waiting for openings")
    assert row.commitment and row.opening_secret and row.commit_elapsed_s is not None
    msg = Challenge.model_validate_json(row.body)
    commitment = Commitment.model_validate_json(row.commitment)
    plan = plan_openings(msg, bytes.fromhex(row.opening_secret))
    started = time.process_time()
    verdict = verify(
        msg,
        commitment,
        plan,
        response,
        commit_elapsed_s=row.commit_elapsed_s,
        open_elapsed_s=(now - row.committed_at).total_seconds(),
    )
    row.verify_cpu_ms = (time.process_time() - started) * 1e3
    if verdict:
        verdict = check_eligible(catalog.get(row.profile), development=policy.development)
    finish(session, row, device, verdict, now=now, policy=policy)
    return verdict


def finish(
    session: Session,
    row: ChallengeRow,
    device: Device,
    verdict: Verdict,
    *,
    now: dt.datetime,
    policy: ProofPolicy,
) -> None:
    row.completed_at = now
    row.outcome = PASSED if verdict else FAILED
    if isinstance(verdict, Failure):
        row.reason = verdict.reason.value
        row.detail = verdict.detail[:255]
    if isinstance(verdict, Success):
        ueid = json.loads(row.hardware or "{}").get("attested_ueid")
        if ueid:
            device.attestation_ueid = ueid
            device.attested_at = now
    apply_verdict(session, device, verdict, now=now, policy=policy)


def apply_verdict(
    session: Session, device: Device, verdict: Verdict, *, now: dt.datetime, policy: ProofPolicy
) -> None:
    """What a verdict does to a device. Status changes go through switch_device_status.

    pass:  pending/suspect -> verified; the next spot check is drawn.
    fail:  verified -> suspect (checked again soon); suspect -> suspended;
           pending stays pending until repeated failures suspend it;
           a changed or duplicated identity suspends at once.
           Uptime since the last pass is forfeited (recorded for the uptime ledger).
    """
    actor = Principal.system("proof-of-gpu")
    status = DeviceStatus(device.status)
    if isinstance(verdict, Success):
        device.last_pass_at = now
        device.failures = 0
        device.next_check_at = next_spot_check(now, policy.spot_check_mean_s)
        if status in (DeviceStatus.PENDING, DeviceStatus.SUSPECT):
            switch_device_status(
                session,
                device,
                DeviceStatus.VERIFIED,
                reason="passed proof of GPU",
                actor=actor,
                now=now,
            )
        return
    assert isinstance(verdict, Failure)
    device.failures += 1
    session.add(
        DeviceEvent(
            device_id=device.id,
            at=now,
            kind="proof_failed",
            reason=f"{verdict.reason.value}: {verdict.detail}"[:255],
            forfeit_from=device.last_pass_at,
        )
    )
    device.next_check_at = now + dt.timedelta(
        seconds=policy.retry_after_failure_s * min(2 ** (device.failures - 1), 64)
    )
    reason = f"proof failed: {verdict.reason.value}"
    if status is DeviceStatus.SUSPENDED:
        return
    if (
        verdict.reason in IDENTITY_REASONS
        or status is DeviceStatus.SUSPECT
        or (
            status is DeviceStatus.PENDING and device.failures >= PENDING_FAILURES_BEFORE_SUSPENSION
        )
    ):
        switch_device_status(
            session, device, DeviceStatus.SUSPENDED, reason=reason, actor=actor, now=now
        )
    elif status is DeviceStatus.VERIFIED:
        switch_device_status(
            session, device, DeviceStatus.SUSPECT, reason=reason, actor=actor, now=now
        )


def expire(session: Session, *, now: dt.datetime, policy: ProofPolicy, limit: int = 1000) -> int:
    """Close challenges whose pending step ran out of time.

    Never received (the device was offline): void, see `miss`. Received and not
    committed, or committed and not opened: a failed check.
    """
    rows = (
        session.execute(
            select(ChallengeRow)
            .where(ChallengeRow.outcome.in_(OUTSTANDING), ChallengeRow.deadline < now)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for row in rows:
        device = session.get(Device, row.device_id, with_for_update=True)
        assert device is not None
        if row.outcome == OPEN and row.delivered_at is None:
            miss(row, device, now=now)
            continue
        what = "openings" if row.outcome == COMMITTED else "commitment"
        finish(
            session,
            row,
            device,
            Failure(FailureReason.TOO_SLOW, f"no {what} before the deadline"),
            now=now,
            policy=policy,
        )
    return len(rows)


def verdict_json(verdict: Verdict) -> dict[str, object]:
    if isinstance(verdict, Failure):
        return {"passed": False, "reason": verdict.reason.value, "detail": verdict.detail}
    return {"passed": True, "reason": None, "detail": None}
