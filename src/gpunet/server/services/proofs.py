"""Proof of GPU on the coordinator: hand out challenges, take commitments and openings,
and turn each verdict into the device's next status.

The exchange is three signed calls by the device, any of which may reach any replica:

    GET  worker/challenge                  -> the Challenge (or pushed on the control channel)
    POST worker/challenge/{id}/commitment  -> roots in; rows to open out (drawn now)
    POST worker/challenge/{id}/openings    -> rows in; verdict out

Cheap checks come first (ownership, state, deadline, shape, hardware), the exact
recomputation last.

Clocks (docs/proof-of-gpu.md, "Coordinator: schedule, clocks and forfeits"):

- The clock starts at issue. The commitment is due by issue + budget + the delivery
  allowance (slack for the push or poll in flight), and the time charged against the
  budget is measured from issue less that allowance, never from when the device chose
  to fetch: devices challenged together start together, and a backend answering for
  two of them in turn runs out of budget.
- Heard from = received: any authenticated contact while a challenge is outstanding
  (heartbeat, fetch, control session, push) marks it delivered. A delivered challenge
  left unanswered past its deadline is a failure (too slow), with its forfeit.
- Not heard from at all before the deadline = lapsed (`missed`). A lapsed roll-call is
  a failure like any other. Any other lapsed challenge is void for status, but the
  device owes a proof: none of its heartbeats count until it passes again, and it is
  challenged again alone, at most once per `reissue_interval_s`.
- A failure forfeits uptime back to the last passed roll-call (or the enrollment pass):
  one GPU can pass staggered spot checks for several devices, never a roll-call.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import random
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.errors import Conflict, InvalidInput, NotFound
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
from gpunet.core.pog.wire import WireError, decode_openings
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
from gpunet.server.services.devices import calling_device
from gpunet.server.settings import Settings


class ChallengeOutcome(enum.StrEnum):
    """A challenge's state as stored in `challenges.outcome`."""

    OPEN = "open"  # issued, waiting for a commitment
    COMMITTED = "committed"  # roots in, waiting for openings
    PASSED = "passed"
    FAILED = "failed"
    MISSED = "missed"  # lapsed: the device was not heard from before the deadline


OUTSTANDING = (ChallengeOutcome.OPEN.value, ChallengeOutcome.COMMITTED.value)
ROLLCALL = "rollcall"

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
    delivery_allowance_s: float = 0.25
    spot_check_mean_s: float = 6 * 3600.0
    retry_after_failure_s: float = 60.0
    reissue_interval_s: float = 600.0
    min_challenge_gap_s: float = 900.0
    development: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ProofPolicy:
        return cls(
            delivery_allowance_s=settings.delivery_allowance_s,
            spot_check_mean_s=settings.spot_check_mean_s,
            retry_after_failure_s=settings.retry_after_failure_s,
            reissue_interval_s=settings.reissue_interval_s,
            min_challenge_gap_s=settings.min_challenge_gap_s,
            development=settings.development,
        )

    def charged_s(self, issued_at: dt.datetime, now: dt.datetime) -> float:
        """Seconds charged against a commitment's budget: from issue, less the
        allowance for the challenge in flight (so the verdict and the deadline agree)."""
        return max(0.0, (now - issued_at).total_seconds() - self.delivery_allowance_s)


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
    roll_call_seed: bytes | None = None,
) -> ChallengeRow | None:
    """Issue a challenge unless the device already has one outstanding; its clock runs
    from now. Devices challenged together share `roll_call_seed` (one per batch)."""
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
    msg = issue_challenge(profile, now=now, roll_call_seed=roll_call_seed)
    device.profile = profile.key
    row = ChallengeRow(
        id=msg.id,
        device_id=device.id,
        kind=kind,
        batch=batch,
        profile=profile.key,
        body=msg.model_dump_json(),
        issued_at=now,
        deadline=msg.deadline + dt.timedelta(seconds=policy.delivery_allowance_s),
        outcome=ChallengeOutcome.OPEN.value,
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


def lapse(
    session: Session, row: ChallengeRow, device: Device, *, now: dt.datetime, policy: ProofPolicy
) -> None:
    """A challenge whose device was not heard from at all before its deadline.

    A roll-call costs what a failure costs: otherwise the one device of two on a GPU
    that cannot answer in time would just stay silent. Any other challenge is void for
    status (being offline costs uptime, not standing), but the device owes a proof:
    none of its heartbeats count until it passes, and it is challenged again alone,
    once per reissue interval, not at every scheduler pass.
    """
    row.outcome = ChallengeOutcome.MISSED.value
    row.completed_at = now
    if row.kind == ROLLCALL:
        verdict = Failure(FailureReason.TOO_SLOW, "roll-call lapsed: not heard from in time")
        row.reason = verdict.reason.value
        row.detail = verdict.detail
        apply_verdict(session, device, verdict, now=now, policy=policy)
        return
    row.detail = "lapsed: not heard from before the deadline (device offline)"
    if device.proof_owed_since is None:
        device.proof_owed_since = now
    device.next_check_at = max(now, row.issued_at + dt.timedelta(seconds=policy.reissue_interval_s))


def settle_overdue(
    session: Session, row: ChallengeRow, device: Device, *, now: dt.datetime, policy: ProofPolicy
) -> None:
    """Close an outstanding challenge past its deadline: lapsed if its device was never
    heard from while it was outstanding, otherwise failed as too slow."""
    if row.outcome == ChallengeOutcome.OPEN and row.delivered_at is None:
        lapse(session, row, device, now=now, policy=policy)
        return
    what = "openings" if row.outcome == ChallengeOutcome.COMMITTED else "commitment"
    finish(
        session,
        row,
        device,
        Failure(FailureReason.TOO_SLOW, f"no {what} before the deadline"),
        now=now,
        policy=policy,
    )


def speaking_device(session: Session, device_pk: int, now: dt.datetime) -> Device:
    """The device taking part in an exchange, locked; it was just heard from."""
    return calling_device(session, device_pk, now, lock=True, touch=True)


def hear_from(session: Session, device: Device, now: dt.datetime) -> ChallengeRow | None:
    """The device was just heard from: a challenge outstanding for it is received (its
    clock has been running since issue). Returns that challenge, overdue or not."""
    row = outstanding(session, device.id)
    if (
        row is not None
        and row.outcome == ChallengeOutcome.OPEN
        and row.delivered_at is None
        and now <= row.deadline
    ):
        row.delivered_at = now
    return row


def deliver(
    session: Session, device: Device, *, now: dt.datetime, policy: ProofPolicy
) -> Challenge | None:
    """The device's outstanding challenge, if it is waiting for a commitment.

    Fetching late gains nothing: the clock started at issue, and a challenge past its
    deadline is settled here and then (failed if it had been received, else lapsed).
    """
    row = session.execute(
        select(ChallengeRow)
        .where(
            ChallengeRow.device_id == device.id,
            ChallengeRow.outcome == ChallengeOutcome.OPEN.value,
        )
        .with_for_update()
    ).scalar_one_or_none()
    if row is None:
        return None
    if now > row.deadline:
        settle_overdue(session, row, device, now=now, policy=policy)
        return None
    if row.delivered_at is None:
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
    if row.outcome != ChallengeOutcome.OPEN:
        raise Conflict("this challenge is not waiting for a commitment")
    if row.delivered_at is None:
        row.delivered_at = now  # a commitment is contact too (pushed and answered at once)
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
    elapsed = policy.charged_s(row.issued_at, now)
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
    row.outcome = ChallengeOutcome.COMMITTED.value
    # From now on the pending step is the openings: they have their own budget (plus
    # the delivery allowance as slack for the request in flight).
    row.deadline = now + dt.timedelta(seconds=msg.open_budget_s + policy.delivery_allowance_s)
    return plan_openings(msg, secret, commitment).request()


def _check_attestation(session: Session, device: Device, ueid: str) -> Verdict:
    holder = session.execute(
        select(Device.id).where(
            Device.attestation_ueid == ueid,
            Device.id != device.id,
            Device.status != DeviceStatus.RETIRED.value,  # a replaced device's old self
        )
    ).first()
    if holder is not None:
        return Failure(FailureReason.DUPLICATE_DEVICE, "this GPU attested for another device")
    return Success()


def _enrolled_elsewhere(session: Session, device: Device, hardware: HardwareReport) -> set[str]:
    """UUIDs in this report that belong to other devices in service (of anyone, anywhere);
    a retired device no longer holds its GPU."""
    uuids = {g.gpu_uuid for g in hardware.devices}
    rows = session.execute(
        select(Device.gpu_uuid).where(
            Device.gpu_uuid.in_(uuids),
            Device.id != device.id,
            Device.status != DeviceStatus.RETIRED.value,
        )
    ).scalars()
    return set(rows)


def read_openings(
    session: Session, device: Device, challenge_id: str, body: bytes
) -> OpeningResponse:
    """Parse a binary opening response (core.pog.wire) for the device's committed
    challenge: rows exactly as wide as the challenge's, and no more of them than it
    asked for. Bytes that are not such a response are refused (InvalidInput) and change
    nothing: the challenge still waits for its openings until its deadline."""
    row = _mine(session, device.id, challenge_id)
    if row.outcome != ChallengeOutcome.COMMITTED or not (row.commitment and row.opening_secret):
        raise Conflict("this challenge is not waiting for openings")
    msg = Challenge.model_validate_json(row.body)
    commitment = Commitment.model_validate_json(row.commitment)
    wanted = plan_openings(msg, bytes.fromhex(row.opening_secret), commitment).row_refs()
    try:
        return decode_openings(body, n=msg.params.n, max_rows=len(wanted))
    except WireError as exc:
        raise InvalidInput(f"openings: {exc}") from exc


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
    if row.outcome != ChallengeOutcome.COMMITTED or row.committed_at is None:
        raise Conflict("this challenge is not waiting for openings")
    assert row.commitment and row.opening_secret and row.commit_elapsed_s is not None
    msg = Challenge.model_validate_json(row.body)
    commitment = Commitment.model_validate_json(row.commitment)
    plan = plan_openings(msg, bytes.fromhex(row.opening_secret), commitment)
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
    row.outcome = (ChallengeOutcome.PASSED if verdict else ChallengeOutcome.FAILED).value
    if isinstance(verdict, Failure):
        row.reason = verdict.reason.value
        row.detail = verdict.detail[:255]
    if isinstance(verdict, Success):
        ueid = json.loads(row.hardware or "{}").get("attested_ueid")
        if ueid:
            device.attestation_ueid = ueid
            device.attested_at = now
    apply_verdict(session, device, verdict, now=now, policy=policy, rollcall=row.kind == ROLLCALL)


def apply_verdict(
    session: Session,
    device: Device,
    verdict: Verdict,
    *,
    now: dt.datetime,
    policy: ProofPolicy,
    rollcall: bool = False,
) -> None:
    """What a verdict does to a device. Status changes go through switch_device_status.

    pass:  pending/suspect -> verified; the next spot check is drawn; a proof owed is
           paid. A roll-call pass (or the enrollment pass) confirms uptime up to now.
    fail:  verified -> suspect (checked again soon); suspect -> suspended;
           pending stays pending until repeated failures suspend it;
           a changed or duplicated identity suspends at once.
           Uptime since the last passed roll-call is forfeited (recorded for the uptime
           ledger): spot checks alone do not confirm it, since one GPU can pass
           staggered spot checks for several devices.
    """
    actor = Principal.system("proof-of-gpu")
    status = DeviceStatus(device.status)
    if status is DeviceStatus.RETIRED:
        return  # out of service for good: a late verdict changes nothing (services.retire)
    if isinstance(verdict, Success):
        device.last_pass_at = now
        if rollcall or status is DeviceStatus.PENDING:
            device.last_rollcall_pass_at = now
        device.proof_owed_since = None
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
            forfeit_from=device.last_rollcall_pass_at or device.last_pass_at,
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
    """Close challenges whose pending step ran out of time (see `settle_overdue`)."""
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
        settle_overdue(session, row, device, now=now, policy=policy)
    return len(rows)
