"""The append-only, hash-chained audit log (T5) and the revert that uses it.

Each record's hash covers the previous record's hash and this record's canonical
JSON, so deleting, reordering or editing any record breaks every hash after it.
Appenders lock the single `audit_head` row (FOR UPDATE on PostgreSQL; SQLite has one
writer at a time), so records from several replicas still form one chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.server.db.tables import AuditHead, AuditRecord
from gpunet.server.security.principal import Principal

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _record_hash(prev_hash: str, record: AuditRecord) -> str:
    body = canonical(
        {
            "at": record.at.astimezone(dt.UTC).isoformat(),
            "actor_kind": record.actor_kind,
            "actor_id": record.actor_id,
            "action": record.action,
            "entity_kind": record.entity_kind,
            "entity_id": record.entity_id,
            "before": record.before,
            "after": record.after,
            "address": record.address,
        }
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, so a record says exactly what changed."""
    keys = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def append(
    session: Session,
    *,
    actor: Principal,
    action: str,
    entity_kind: str,
    entity_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: dt.datetime,
    address: str | None = None,
) -> AuditRecord:
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    record = AuditRecord(
        at=now,
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        action=action,
        entity_kind=entity_kind,
        entity_id=entity_id,
        before=None if before is None else canonical(before),
        after=None if after is None else canonical(after),
        address=address,
        prev_hash=head.last_hash,
        hash="",
    )
    record.hash = _record_hash(head.last_hash, record)
    session.add(record)
    head.last_hash = record.hash
    head.count += 1
    session.flush()
    return record


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    records: int
    first_bad_id: int | None = None
    reason: str | None = None


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    """Recompute every hash in order; the last one must be the recorded tip."""
    prev = GENESIS
    count = 0
    last_id = 0
    while True:
        rows = (
            session.execute(
                select(AuditRecord)
                .where(AuditRecord.id > last_id)
                .order_by(AuditRecord.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for record in rows:
            if record.prev_hash != prev:
                return ChainReport(
                    False, count, record.id, "record does not follow its predecessor"
                )
            if _record_hash(prev, record) != record.hash:
                return ChainReport(
                    False, count, record.id, "record content does not match its hash"
                )
            prev = record.hash
            count += 1
            last_id = record.id
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is None or head.last_hash != prev or head.count != count:
        return ChainReport(False, count, None, "records are missing after the last one checked")
    return ChainReport(True, count)


def records_by(
    session: Session, *, actor_kind: str, actor_id: str, since: dt.datetime
) -> Iterable[AuditRecord]:
    return (
        session.execute(
            select(AuditRecord)
            .where(
                AuditRecord.actor_kind == actor_kind,
                AuditRecord.actor_id == actor_id,
                AuditRecord.at >= since,
            )
            .order_by(AuditRecord.id.desc())
        )
        .scalars()
        .all()
    )
