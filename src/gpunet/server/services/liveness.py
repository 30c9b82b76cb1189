"""Does a device's heartbeat count? One answer for HTTP and the control channel.

A heartbeat counts (earns uptime) only from a verified device that answers its
challenges (`core.lifecycle.heartbeat_counts`): not while a challenge for it is past
its deadline unanswered, and not while it owes a proof (it let a challenge lapse and
has not passed since). Hearing from a device is also how a challenge reaches it: any
authenticated contact while one is outstanding marks it received (services.proofs).

HTTP asks per heartbeat (`hear`); the control channel asks in batches, at a session's
handshake (`counting`, after `mark_heard`) and in the server's periodic refresh
(`changed_since`), and keeps the answer in memory between refreshes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from gpunet.core.lifecycle import heartbeat_counts
from gpunet.core.models import DeviceStatus
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.services.proofs import OUTSTANDING, ChallengeOutcome, hear_from

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Heard:
    counts: bool  # this heartbeat earns uptime
    challenge: str | None  # a challenge waiting for the device: fetch it now


def hear(session: Session, device: Device, now: dt.datetime) -> Heard:
    """A heartbeat from `device`: mark its outstanding challenge received, and say
    whether the heartbeat counts and which challenge is waiting."""
    row = hear_from(session, device, now)
    overdue = row is not None and row.deadline < now
    counts = heartbeat_counts(
        DeviceStatus(device.status), owes_proof=device.proof_owed_since is not None, overdue=overdue
    )
    waiting = row is not None and row.outcome == ChallengeOutcome.OPEN and not overdue
    return Heard(counts, row.id if waiting and row is not None else None)


def _chunks(ids: Collection[int]) -> Iterator[list[int]]:
    ordered = sorted(ids)
    for i in range(0, len(ordered), _CHUNK):
        yield ordered[i : i + _CHUNK]


def mark_heard(session: Session, ids: Collection[int], now: dt.datetime) -> None:
    """Devices just heard from in bulk (a control session's handshake): their open
    challenges still in time are received now."""
    for part in _chunks(ids):
        session.execute(
            update(ChallengeRow)
            .where(
                ChallengeRow.device_id.in_(part),
                ChallengeRow.outcome == ChallengeOutcome.OPEN.value,
                ChallengeRow.delivered_at.is_(None),
                ChallengeRow.deadline >= now,
            )
            .values(delivered_at=now)
        )


def counting(session: Session, ids: Collection[int], now: dt.datetime) -> set[int]:
    """Of `ids`, the devices whose heartbeats count at `now`."""
    out: set[int] = set()
    for part in _chunks(ids):
        overdue = set(
            session.execute(
                select(ChallengeRow.device_id).where(
                    ChallengeRow.device_id.in_(part),
                    ChallengeRow.outcome.in_(OUTSTANDING),
                    ChallengeRow.deadline < now,
                )
            ).scalars()
        )
        rows = session.execute(
            select(Device.id, Device.status, Device.proof_owed_since).where(Device.id.in_(part))
        )
        out.update(
            r.id
            for r in rows
            if heartbeat_counts(
                DeviceStatus(r.status),
                owes_proof=r.proof_owed_since is not None,
                overdue=r.id in overdue,
            )
        )
    return out


def changed_since(session: Session, since: dt.datetime, now: dt.datetime) -> list[tuple[int, bool]]:
    """(device, counts) for every device whose answer may have changed since `since`.

    A change of status, a proof newly owed or paid (a pass), and a challenge now past
    its deadline unanswered: each is on an indexed or small set, so a replica can ask
    every few seconds.
    """
    ids = set(
        session.execute(
            select(Device.id).where(
                or_(
                    Device.status_changed_at >= since,
                    Device.proof_owed_since >= since,
                    Device.last_pass_at >= since,
                )
            )
        ).scalars()
    )
    ids.update(
        session.execute(
            select(ChallengeRow.device_id).where(
                ChallengeRow.outcome.in_(OUTSTANDING), ChallengeRow.deadline < now
            )
        ).scalars()
    )
    counted = counting(session, ids, now)
    return [(pk, pk in counted) for pk in sorted(ids)]
