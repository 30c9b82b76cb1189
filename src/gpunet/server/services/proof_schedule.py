"""When devices are challenged: at enrollment, at random unannounced times, together
with everything they share an owner, a host or a network with, and in network-wide
roll-calls (T8, T9).

A due device never goes alone: its whole cohort (same owner, same host fingerprint,
same /24 or /48 it enrolled from) is challenged in the same instant, so a box that
makes one GPU look like eight must answer eight challenges at once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gpunet.core.models import DeviceStatus
from gpunet.core.pog import Catalog, new_challenge_id
from gpunet.server.db.tables import Device
from gpunet.server.services.proofs import ProofPolicy, issue

CHALLENGEABLE = (
    DeviceStatus.PENDING.value,
    DeviceStatus.VERIFIED.value,
    DeviceStatus.SUSPECT.value,
)
_rng = random.SystemRandom()


def network_of(address: str | None) -> str | None:
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def cohort(session: Session, device: Device) -> Sequence[Device]:
    """Every challengeable device sharing an owner, a host or a network with `device`."""
    conditions = [
        Device.owner_id == device.owner_id,
        Device.host_fingerprint == device.host_fingerprint,
    ]
    net = network_of(device.enrolled_from)
    members = list(
        session.execute(
            select(Device).where(Device.status.in_(CHALLENGEABLE), or_(*conditions))
        ).scalars()
    )
    if net is not None:
        # Addresses are few per network; compare in Python rather than per dialect.
        prefix = net.split("/")[0].rsplit("." if ":" not in net else ":", 1)[0]
        nearby = session.execute(
            select(Device).where(
                Device.status.in_(CHALLENGEABLE), Device.enrolled_from.startswith(prefix)
            )
        ).scalars()
        members += [d for d in nearby if network_of(d.enrolled_from) == net]
    unique = {d.id: d for d in members}
    return [unique[k] for k in sorted(unique)]


def issue_batch(
    session: Session,
    devices: Sequence[Device],
    *,
    kind: str,
    now: dt.datetime,
    catalog: Catalog,
    policy: ProofPolicy,
) -> int:
    batch = new_challenge_id().replace("pog_", "batch_")
    issued = 0
    for device in devices:
        member_kind = "enrollment" if device.status == DeviceStatus.PENDING.value else kind
        if (
            issue(
                session,
                device,
                kind=member_kind,
                batch=batch,
                now=now,
                catalog=catalog,
                policy=policy,
            )
            is not None
        ):
            issued += 1
    return issued


def schedule_due(
    session: Session, *, now: dt.datetime, catalog: Catalog, policy: ProofPolicy, limit: int = 200
) -> int:
    """Challenge devices whose time has come, each with its whole cohort."""
    due = (
        session.execute(
            select(Device)
            .where(
                Device.status.in_(CHALLENGEABLE),
                or_(Device.next_check_at.is_(None), Device.next_check_at <= now),
            )
            .order_by(Device.next_check_at.nulls_first(), Device.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    done: set[int] = set()
    issued = 0
    for device in due:
        if device.id in done:
            continue
        members = cohort(session, device)
        done.update(d.id for d in members)
        issued += issue_batch(
            session, members, kind="spot", now=now, catalog=catalog, policy=policy
        )
    return issued


def rollcall(
    session: Session, *, fraction: float, now: dt.datetime, catalog: Catalog, policy: ProofPolicy
) -> int:
    """Challenge a random sample of all verified devices in one instant."""
    if not 0 < fraction <= 1:
        raise ValueError("a roll-call samples a fraction in (0, 1]")
    ids = (
        session.execute(select(Device.id).where(Device.status == DeviceStatus.VERIFIED.value))
        .scalars()
        .all()
    )
    if not ids:
        return 0
    chosen = _rng.sample(list(ids), max(1, round(len(ids) * fraction)))
    devices = (
        session.execute(select(Device).where(Device.id.in_(chosen)).with_for_update())
        .scalars()
        .all()
    )
    return issue_batch(session, devices, kind="rollcall", now=now, catalog=catalog, policy=policy)
