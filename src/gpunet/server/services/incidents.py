"""Operator-declared incident windows (T6): stored, audited, public, credited at close.

A window is validated by the pure `IncidentWindow` rules (non-empty, at most 7 days,
a printable reason) before it is stored. Closed epochs are final: a window declared
after an epoch closed does not change it, so `declare` reports which of the epochs it
overlaps are already closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.errors import InvalidInput
from gpunet.core.rewards import EpochClock, IncidentWindow
from gpunet.server.db.tables import IncidentWindowRow, RewardEpoch
from gpunet.server.security.principal import Principal
from gpunet.server.services import audit

MAX_REACH_S = 8 * 86400  # a window is at most 7 days; a day more covers look-backs


def to_core(row: IncidentWindowRow) -> IncidentWindow:
    return IncidentWindow(int(row.starts_at.timestamp()), int(row.ends_at.timestamp()), row.reason)


def declare(
    session: Session,
    *,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    reason: str,
    actor: Principal,
    now: dt.datetime,
) -> IncidentWindowRow:
    if starts_at.microsecond or ends_at.microsecond:
        raise InvalidInput("incident bounds are whole seconds")
    IncidentWindow(int(starts_at.timestamp()), int(ends_at.timestamp()), reason)  # validates
    row = IncidentWindowRow(
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        declared_at=now,
        declared_by=actor.key[:64],
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="incident.declare",
        entity_kind="incident",
        entity_id=str(row.id),
        before=None,
        after={"from": starts_at.isoformat(), "to": ends_at.isoformat(), "reason": reason},
        now=now,
    )
    return row


def closed_epochs_overlapping(
    session: Session, clock: EpochClock, starts_at: dt.datetime, ends_at: dt.datetime
) -> list[int]:
    first = clock.epoch_index(starts_at.timestamp())
    last = clock.epoch_index(ends_at.timestamp() - 1)
    return list(
        session.execute(
            select(RewardEpoch.epoch)
            .where(RewardEpoch.epoch.between(first, last))
            .order_by(RewardEpoch.epoch)
        ).scalars()
    )


def listing(
    session: Session, *, limit: int = 100, before_id: int | None = None
) -> Sequence[IncidentWindowRow]:
    q = select(IncidentWindowRow).order_by(IncidentWindowRow.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(IncidentWindowRow.id < before_id)
    return session.execute(q).scalars().all()


def public_listing(
    session: Session, *, limit: int, before: dt.datetime | None
) -> Sequence[IncidentWindowRow]:
    q = (
        select(IncidentWindowRow)
        .order_by(IncidentWindowRow.starts_at.desc(), IncidentWindowRow.id.desc())
        .limit(limit)
    )
    if before is not None:
        q = q.where(IncidentWindowRow.starts_at < before)
    return session.execute(q).scalars().all()


def near(session: Session, start: dt.datetime, end: dt.datetime) -> list[IncidentWindowRow]:
    """Windows that may credit slots in [start, end): those overlapping it, and earlier
    ones that a back-to-back chain could reach from (at most 8 days back)."""
    return list(
        session.execute(
            select(IncidentWindowRow)
            .where(
                IncidentWindowRow.starts_at < end,
                IncidentWindowRow.ends_at > start - dt.timedelta(seconds=MAX_REACH_S),
            )
            .order_by(IncidentWindowRow.starts_at, IncidentWindowRow.id)
        ).scalars()
    )
