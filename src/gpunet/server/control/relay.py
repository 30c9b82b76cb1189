"""The proof-of-GPU exchange over the control channel, on the services the HTTP routes
use (services.proofs). Every function here runs in a worker thread, in its own
transaction, and keeps nothing in memory: a host that reconnects to another replica
mid-proof carries on there, because the challenge's state is all in its row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from gpunet.core.errors import Forbidden, Unauthenticated
from gpunet.core.models import DeviceStatus, parse_json
from gpunet.core.pog import Challenge, OpeningRequest
from gpunet.core.pog.messages import CommitmentEnvelope, VerdictMessage
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.services import liveness, proofs
from gpunet.server.state import AppState

_CHUNK = 500


def waiting(state: AppState, connected: Collection[int], fresh: Collection[int]) -> list[int]:
    """Devices connected here that have a challenge to push.

    Undelivered open challenges are few at any moment, so they are read whole and
    matched against this replica's devices in memory (no IN list of every connected
    device). Devices that just joined also get their open challenge even though it is
    already marked received (by their handshake, or a previous session that dropped
    mid-proof): its clock runs from issue either way.
    """
    found: set[int] = set()
    with state.database.read() as session:
        rows = session.execute(
            select(ChallengeRow.device_id).where(
                ChallengeRow.outcome == proofs.ChallengeOutcome.OPEN.value,
                ChallengeRow.delivered_at.is_(None),
            )
        ).scalars()
        found.update(d for d in rows if d in connected)
        fresh_ids = list(fresh)
        for i in range(0, len(fresh_ids), _CHUNK):
            found.update(
                session.execute(
                    select(ChallengeRow.device_id).where(
                        ChallengeRow.outcome == proofs.ChallengeOutcome.OPEN.value,
                        ChallengeRow.device_id.in_(fresh_ids[i : i + _CHUNK]),
                    )
                ).scalars()
            )
    return sorted(found)


def status_changes(state: AppState, since: dt.datetime) -> list[tuple[int, bool]]:
    """(device, whether its heartbeats count) for every device whose answer may have
    changed since `since`: status changes, proofs owed or paid, challenges overdue."""
    with state.database.read() as session:
        return liveness.changed_since(session, since, state.clock.now())


def retired(state: AppState, device_pks: Collection[int]) -> set[int]:
    """Of `device_pks` (few: devices connected here whose status just changed), those
    retired, whose sessions must let them go."""
    if not device_pks:
        return set()
    with state.database.read() as session:
        return set(
            session.execute(
                select(Device.id).where(
                    Device.id.in_(sorted(device_pks)),
                    Device.status == DeviceStatus.RETIRED.value,
                )
            ).scalars()
        )


def deliver(state: AppState, device_pk: int) -> Challenge | None:
    """Hand out the device's open challenge (its clock has run since issue), or None."""
    with state.database.transaction() as session:
        now = state.clock.now()
        try:
            device = proofs.speaking_device(session, device_pk, now)
        except (Unauthenticated, Forbidden):
            return None
        return proofs.deliver(session, device, now=now, policy=state.proof_policy)


def commit(state: AppState, device_pk: int, body: bytes) -> tuple[str, dict[str, Any]]:
    """("open", OpeningRequest JSON) or ("verdict", verdict) for a commitment."""
    data = parse_json(CommitmentEnvelope, body)
    challenge_id = data.commitment.challenge_id
    with state.database.transaction() as session:
        now = state.clock.now()
        device = proofs.speaking_device(session, device_pk, now)
        result = proofs.accept_commitment(
            session,
            device,
            challenge_id,
            data.commitment,
            data.hardware,
            now=now,
            policy=state.proof_policy,
            attestation=data.attestation,
            verifier=state.attestation,
        )
        if isinstance(result, OpeningRequest):
            return "open", {"body": result.model_dump_json().encode()}
        return "verdict", VerdictMessage.of(challenge_id, result, device.status).model_dump()


def open_rows(state: AppState, device_pk: int, challenge_id: str, body: bytes) -> dict[str, Any]:
    """The verdict on a whole binary opening response, reassembled from its frames."""
    with state.database.transaction() as session:
        now = state.clock.now()
        device = proofs.speaking_device(session, device_pk, now)
        response = proofs.read_openings(session, device, challenge_id, body)
        result = proofs.accept_openings(
            session,
            device,
            challenge_id,
            response,
            now=now,
            policy=state.proof_policy,
            catalog=state.catalog,
        )
        return VerdictMessage.of(challenge_id, result, device.status).model_dump()
