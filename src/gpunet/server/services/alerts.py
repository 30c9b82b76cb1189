"""Alerts raised by detectors: stored once (deduplicated across replicas), logged, and
sent to an optional webhook after the transaction that raised them commits."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gpunet.core.errors import NotFound
from gpunet.server.db.tables import Alert

log = logging.getLogger("gpunet.alerts")


def raise_alert(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    message: str,
    details: dict[str, Any],
    now: dt.datetime,
    severity: str = "warning",
) -> bool:
    """Store an alert unless one with the same key exists; True if this call raised it."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Alert)
        .values(
            kind=kind,
            dedupe_key=dedupe_key,
            severity=severity,
            message=message[:500],
            details=json.dumps(details, sort_keys=True, default=str),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Alert.dedupe_key])
        .returning(Alert.id)
    )
    created = session.execute(stmt).scalar_one_or_none() is not None
    if created:
        log.warning("ALERT %s: %s %s", kind, message, json.dumps(details, default=str))
        pending = session.info.setdefault("gpunet_alerts", [])
        pending.append(
            {
                "kind": kind,
                "severity": severity,
                "message": message,
                "details": details,
                "at": now.isoformat(),
            }
        )
    return created


def deliver_pending(session_info: dict[str, Any], webhook_url: str | None) -> None:
    """After commit: post the alerts this transaction raised, off the request path."""
    pending = session_info.pop("gpunet_alerts", [])
    if not pending or not webhook_url:
        return

    def _send() -> None:
        for alert in pending:
            try:
                httpx.post(webhook_url, json=alert, timeout=5.0)
            except httpx.HTTPError as exc:  # alerts are stored anyway; never fail a request
                log.error("alert webhook failed: %s", exc)

    threading.Thread(target=_send, name="gpunet-alert-webhook", daemon=True).start()


def recent(
    session: Session, *, limit: int = 50, include_acknowledged: bool = False
) -> Sequence[Alert]:
    stmt = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if not include_acknowledged:
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    return session.execute(stmt).scalars().all()


def acknowledge(session: Session, alert_id: int, now: dt.datetime) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    alert.acknowledged_at = now
    return alert
