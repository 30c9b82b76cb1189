"""When devices are challenged: at enrollment, at random unannounced times, together
with everything they share an owner, a host or a network with, and in network-wide
roll-calls (T8, T9).

A due device never goes alone: its cohort (same owner, same host fingerprint, same
/24 or /48 it enrolled from) is challenged in the same instant, so a box that makes one
GPU look like eight must answer eight challenges at once. Every challenge of one batch
(a cohort, a roll-call) carries one `roll_call_seed`.

No challenge storms. Proof load per device is bounded whatever its neighbours do:

    spot checks + cohort co-challenges <= 1 + T / min_challenge_gap_s in any T seconds
                                          (<= 96 a day at the default 900 s)
    + roll-calls                          (network-wide, ~ 86400 / rollcall_mean_s a day)
    + its own failure retries             (back-off retry_after_failure_s * 2^k, k <= 6)
    + its own lapse re-issues             (<= 1 per reissue_interval_s while it is silent)

because a cohort co-challenge skips every member issued any challenge within the last
`min_challenge_gap_s`, a due spot check waits out that gap too, and a device that let a
challenge lapse (it owes a proof) is re-issued alone, never with its cohort, and never
pulled into another's. The last two terms are the device's own doing; only the first
depends on its neighbours, and it is capped.

Roll-calls confirm uptime for rewards (services.rewards waits for one after an epoch);
`rollcall_confirmed_until` says up to when they have.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from gpunet.core.models import DeviceStatus
from gpunet.core.pog import Catalog, new_challenge_id, new_roll_call_seed
from gpunet.server.db.cluster_tables import ClusterMember
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.services.proofs import (
    OUTSTANDING,
    ROLLCALL,
    ChallengeOutcome,
    ProofPolicy,
    issue,
)

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
            select(Device).where(
                Device.status.in_(CHALLENGEABLE),
                _heard_from_if_pending(),
                _not_serving(),
                or_(*conditions),
            )
        ).scalars()
    )
    if net is not None:
        # Addresses are few per network; compare in Python rather than per dialect.
        prefix = net.split("/")[0].rsplit("." if ":" not in net else ":", 1)[0]
        nearby = session.execute(
            select(Device).where(
                Device.status.in_(CHALLENGEABLE),
                _heard_from_if_pending(),
                _not_serving(),
                Device.enrolled_from.startswith(prefix),
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
    """Challenge `devices` in one instant, as one batch with one roll-call seed."""
    batch = new_challenge_id().replace("pog_", "batch_")
    seed = new_roll_call_seed()
    issued = 0
    for device in devices:
        member_kind = "enrollment" if device.status == DeviceStatus.PENDING.value else kind
        row = issue(
            session,
            device,
            kind=member_kind,
            batch=batch,
            now=now,
            catalog=catalog,
            policy=policy,
            roll_call_seed=seed,
        )
        issued += row is not None
    return issued


def last_issued(session: Session, ids: Sequence[int], since: dt.datetime) -> dict[int, dt.datetime]:
    """When each of `ids` was last issued a challenge, for those issued one after `since`."""
    if not ids:
        return {}
    rows = session.execute(
        select(ChallengeRow.device_id, func.max(ChallengeRow.issued_at))
        .where(ChallengeRow.device_id.in_(ids), ChallengeRow.issued_at > since)
        .group_by(ChallengeRow.device_id)
    ).all()
    return {device_id: at for device_id, at in rows}


def _heard_from_if_pending() -> ColumnElement[bool]:
    """A new device is first challenged once its agent has been heard from (it signed a
    request or joined a control session): a challenge issued before the agent runs would
    lapse or fail through no fault of the supplier, since the clock starts at issue."""
    return or_(Device.status != DeviceStatus.PENDING.value, Device.last_seen_at.is_not(None))


def _not_serving() -> ColumnElement[bool]:
    """Spot checks and cohort co-challenges leave a device alone while it serves a
    customer's cluster, unless it owes a proof or is not verified (docs/clusters.md:
    roll-calls still reach it, and it is checked as soon as it is released)."""
    serving = select(ClusterMember.device_id).where(ClusterMember.released_at.is_(None))
    return or_(
        Device.id.not_in(serving),
        Device.status != DeviceStatus.VERIFIED.value,
        Device.proof_owed_since.is_not(None),
    )


def _due(session: Session, now: dt.datetime, limit: int) -> Sequence[Device]:
    return (
        session.execute(
            select(Device)
            .where(
                Device.status.in_(CHALLENGEABLE),
                or_(Device.next_check_at.is_(None), Device.next_check_at <= now),
                _heard_from_if_pending(),
                _not_serving(),
            )
            .order_by(Device.next_check_at.nulls_first(), Device.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )


def schedule_due(
    session: Session, *, now: dt.datetime, catalog: Catalog, policy: ProofPolicy, limit: int = 200
) -> int:
    """Challenge devices whose time has come, each with its cohort (see the module's
    docstring for who is left out, and the bound that gives)."""
    gap = dt.timedelta(seconds=policy.min_challenge_gap_s)
    done: set[int] = set()
    issued = 0
    for device in _due(session, now, limit):
        if device.id in done:
            continue
        done.add(device.id)
        if device.proof_owed_since is not None:
            # It let a challenge lapse: again alone, so its absence never makes its
            # neighbours re-prove (lapse() spaced these by the reissue interval).
            issued += issue_batch(
                session, [device], kind="spot", now=now, catalog=catalog, policy=policy
            )
            continue
        members = [m for m in cohort(session, device) if m.id not in done]
        recent = last_issued(session, [device.id] + [m.id for m in members], now - gap)
        if device.failures == 0 and device.id in recent:
            # A plain spot check within the gap of its last challenge waits it out.
            device.next_check_at = recent[device.id] + gap
            continue
        together = [device] + [
            m
            for m in members
            if m.id != device.id and m.id not in recent and m.proof_owed_since is None
        ]
        done.update(m.id for m in together)
        issued += issue_batch(
            session, together, kind="spot", now=now, catalog=catalog, policy=policy
        )
    return issued


def rollcall(
    session: Session, *, fraction: float, now: dt.datetime, catalog: Catalog, policy: ProofPolicy
) -> int:
    """Challenge a random sample (by default all) of the verified devices in one
    instant, as one batch: one GPU behind several devices must answer them all at once."""
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
    _supersede_unheard(session, [d.id for d in devices], now)
    return issue_batch(session, devices, kind=ROLLCALL, now=now, catalog=catalog, policy=policy)


def _supersede_unheard(session: Session, device_ids: Sequence[int], now: dt.datetime) -> None:
    """A roll-call replaces any challenge its devices have not heard of yet (a spot check
    or a re-issue of this very pass): otherwise an owed proof would excuse a device from
    the one check that must be simultaneous. Challenges a device has received stay: it
    is working on them, and its next roll-call finds it."""
    for i in range(0, len(device_ids), 1000):
        session.execute(
            update(ChallengeRow)
            .where(
                ChallengeRow.device_id.in_(device_ids[i : i + 1000]),
                ChallengeRow.outcome == ChallengeOutcome.OPEN,
                ChallengeRow.delivered_at.is_(None),
            )
            .values(
                outcome=ChallengeOutcome.MISSED,
                completed_at=now,
                detail="superseded by a roll-call before the device heard of it",
            )
        )


def rollcall_confirmed_until(session: Session) -> dt.datetime | None:
    """The start of the latest roll-call whose every challenge is resolved (passed,
    failed or lapsed): uptime before it has been confirmed, or forfeited by now."""
    unresolved = select(ChallengeRow.batch).where(ChallengeRow.outcome.in_(OUTSTANDING))
    return session.execute(
        select(func.max(ChallengeRow.issued_at)).where(
            ChallengeRow.kind == ROLLCALL, ChallengeRow.batch.not_in(unresolved)
        )
    ).scalar_one_or_none()
