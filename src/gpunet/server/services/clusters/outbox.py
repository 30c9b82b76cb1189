"""The outbox of commands to agents, kept in the database.

A command is written in the transaction that decides it (so it exists exactly when the
decision does), and delivered by whichever replica holds the control session of the
device's host (server.control.clusters): that replica claims it (delivered_at), sends
it, and writes the agent's answer back. A command delivered without an answer within
`command_timeout_s` (the session dropped, the replica died) is delivered again, so
every command handler on the agent is idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gpunet.core.ids import new_public_id
from gpunet.server.db.cluster_tables import Cluster, ClusterCommand

_CHUNK = 500


def enqueue(
    session: Session,
    cluster: Cluster,
    device_id: int,
    name: str,
    args: Mapping[str, Any],
    now: dt.datetime,
) -> ClusterCommand:
    assert "token" not in args, "the token is never written to the outbox"
    command = ClusterCommand(
        id=new_public_id("cmd"),
        cluster_id=cluster.id,
        device_id=device_id,
        name=name,
        args=json.dumps(dict(args), sort_keys=True),
        created_at=now,
        attempts=0,
    )
    session.add(command)
    return command


def pending(session: Session, cluster_id: int) -> list[ClusterCommand]:
    return list(
        session.execute(
            select(ClusterCommand).where(
                ClusterCommand.cluster_id == cluster_id, ClusterCommand.done_at.is_(None)
            )
        ).scalars()
    )


@dataclass(frozen=True)
class Delivery:
    """A command claimed for sending: what the replica puts on the wire."""

    id: str
    device_id: int
    cluster_id: int
    name: str
    args: dict[str, Any]


def claim(
    session: Session, device_ids: Collection[int], now: dt.datetime, timeout_s: float
) -> list[Delivery]:
    """Claim the undelivered (or long unanswered) commands of devices connected here.

    SKIP LOCKED on PostgreSQL: two replicas that both think they hold a host (one of
    them about to notice its session is gone) never claim one command together."""
    stale = now - dt.timedelta(seconds=timeout_s)
    ids = list(device_ids)
    out: list[Delivery] = []
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(ClusterCommand)
            .where(
                ClusterCommand.device_id.in_(ids[i : i + _CHUNK]),
                ClusterCommand.done_at.is_(None),
                or_(ClusterCommand.delivered_at.is_(None), ClusterCommand.delivered_at < stale),
            )
            .order_by(ClusterCommand.created_at)
            .with_for_update(skip_locked=True)
        ).scalars()
        for row in rows:
            row.delivered_at = now
            row.attempts += 1
            out.append(Delivery(row.id, row.device_id, row.cluster_id, row.name,
                                json.loads(row.args)))
    return out


def settle(
    session: Session, command_id: str, *, ok: bool, result: Any, now: dt.datetime
) -> ClusterCommand | None:
    """Record the agent's answer; None if the command is unknown or already answered
    (a redelivered command answered twice counts once)."""
    row = session.execute(
        select(ClusterCommand).where(ClusterCommand.id == command_id).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.done_at is not None:
        return None
    row.done_at = now
    row.ok = ok
    row.result = json.dumps(result, sort_keys=True, default=str)[:4000]
    return row


def cancel_pending(session: Session, cluster_id: int, now: dt.datetime, *, keep: str) -> None:
    """Close every open command of the cluster except those named `keep` (the stop
    commands of a terminating cluster must not wait behind a start that never ends)."""
    for row in pending(session, cluster_id):
        if row.name != keep:
            row.done_at = now
            row.ok = False
            row.result = json.dumps("cancelled")
