"""Read one epoch's reward inputs from the database, as the pure close wants them.

For every device with uptime bits in the epoch this yields a `DeviceUptime` (wallet,
catalog profile, counted slots). Most devices take the fast path: a device whose status
has not changed since before the bits we read (`status_changed_at`) was in that status
the whole time, so its counted slots are its heartbeat bits when it is `verified` and
nothing otherwise. The exact rules of `core.rewards.device_uptime` run for the others:
devices whose status changed, devices with a failed proof in the epoch (forfeits), and
every device when an incident window can credit slots of the epoch.

Wallets: the owner's `wallet_address`. Devices of owners without a (valid) wallet are
paid to ``unset.<public device id>``; an account wallet can never contain a dot, so no
owner can claim that name, and no internal id appears in the public snapshot.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.orm import Session

from gpunet.core.models import DeviceStatus
from gpunet.core.rewards import (
    DeviceUptime,
    EpochClock,
    Forfeit,
    IncidentPolicy,
    IncidentWindow,
    StatusChange,
    device_uptime,
    incident_credit,
)
from gpunet.core.rewards.allocation import valid_wallet
from gpunet.core.rewards.uptime import ELIGIBLE_STATUSES, range_mask
from gpunet.server.db.types import UTCDateTime
from gpunet.server.services import incidents
from gpunet.server.services.uptime import CHUNK_SLOTS, chunk_span, place

UNSET_PREFIX = "unset."
VERIFIED = DeviceStatus.VERIFIED.value
_BATCH = 5000
_FETCH = 20_000  # rows per fetchmany: no per-row driver round trip

_FROM = """
FROM uptime_slots u
JOIN devices d ON d.id = u.device_id
JOIN owners o ON o.id = d.owner_id
WHERE u.chunk BETWEEN :lo AND :hi AND d.profile IS NOT NULL
"""
# Verified since before the bits we read: the fast path (one row per device).
_STEADY = (
    "SELECT u.device_id, u.bits, d.profile, o.wallet_address, d.public_id"
    + _FROM
    + " AND d.status = :verified AND d.status_changed_at <= :since"
)
# The same devices when the epoch spans chunks or windows look back (rows per chunk).
_STEADY_CHUNKS = (
    "SELECT u.device_id, u.chunk, u.bits, d.profile, o.wallet_address, d.public_id"
    + _FROM
    + " AND d.status = :verified AND d.status_changed_at <= :since"
)
# Devices whose status changed: the exact rules, with their status history.
_EXACT = (
    "SELECT u.device_id, u.chunk, u.bits, d.status, d.profile, o.wallet_address, d.public_id"
    + _FROM
    + " AND d.status_changed_at > :since"
)
_FORFEITS = (
    text(
        "SELECT device_id, at, forfeit_from FROM device_events "
        "WHERE kind = 'proof_failed' AND at >= :start AND at < :end"
    )
    .bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
    .columns(device_id=BigInteger(), at=UTCDateTime(), forfeit_from=UTCDateTime())
)
_CHANGES = (
    "SELECT device_id, at, to_status FROM device_events "
    "WHERE kind = 'status' AND at < :end AND device_id IN ({ids}) ORDER BY device_id, at, id"
)


def _raw_rows(session: Session, sql: str, params: dict[str, object]) -> Iterator[tuple[Any, ...]]:
    """Rows straight from the driver, fetched in batches: a million-row read without a
    Row object per row. Parameters are bound by the driver (never formatted in)."""
    conn = session.connection()
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        bound = {k: _sqlite_time(v) if isinstance(v, dt.datetime) else v for k, v in params.items()}
        cur = raw.execute(sql, bound)  # sqlite3 takes :name parameters as written
    else:
        cur = raw.cursor()
        cur.execute(re.sub(r":(\w+)", r"%(\1)s", sql), params)
    try:
        while rows := cur.fetchmany(_FETCH):
            yield from rows
    finally:
        cur.close()


def _sqlite_time(moment: dt.datetime) -> str:
    """How UTCDateTime stores a time on SQLite (naive UTC, SQLAlchemy's text format)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def payout_wallet(wallet: str | None, public_id: str) -> str:
    return wallet if wallet and valid_wallet(wallet) else UNSET_PREFIX + public_id


@dataclass
class Plan:
    """Which global slots to read for `epoch`, and the windows that may credit it."""

    epoch: int
    e_first: int  # global slot 0 of the epoch
    e_last: int  # exclusive
    first: int  # first global slot read (earlier than e_first when windows look back)
    windows: list[IncidentWindow]


@dataclass
class Totals:
    devices: int = 0  # devices with counted slots and a positive weight
    counted_slots: int = 0


@dataclass
class _Slow:
    status: str
    profile: str
    wallet: str
    stable: bool
    bitmap: int = 0
    changes: list[StatusChange] = field(default_factory=list)


def credit_range(clock: EpochClock, policy: IncidentPolicy, w: IncidentWindow) -> tuple[int, int]:
    first = clock.global_slot(w.start)
    return first, min(clock.global_slot_ceil(w.end), first + policy.max_credit_slots)


def relevant_windows(
    clock: EpochClock,
    policy: IncidentPolicy,
    e_first: int,
    e_last: int,
    windows: list[IncidentWindow],
) -> list[IncidentWindow]:
    """Windows whose credit reaches into the epoch, plus the earlier ones they chain from
    (whose credit lies in a chosen window's look-back), to a fixed point."""
    ranges = {w: credit_range(clock, policy, w) for w in windows}
    chosen = {w for w, (lo, hi) in ranges.items() if lo < hi and lo < e_last and hi > e_first}
    grew = True
    while grew:
        grew = False
        for w, (lo, hi) in ranges.items():
            if w in chosen or lo >= hi:
                continue
            for c in list(chosen):
                c_lo = ranges[c][0]
                if lo < c_lo and hi > c_lo - policy.lookback_slots:
                    chosen.add(w)
                    grew = True
                    break
    return sorted(chosen, key=lambda w: (w.start, w.end, w.reason))


def plan(session: Session, clock: EpochClock, policy: IncidentPolicy, epoch: int) -> Plan:
    e_first = clock.first_slot(epoch)
    e_last = e_first + clock.slots_per_epoch
    start = dt.datetime.fromtimestamp(clock.epoch_start(epoch), dt.UTC)
    end = dt.datetime.fromtimestamp(clock.epoch_end(epoch), dt.UTC)
    near = [incidents.to_core(r) for r in incidents.near(session, start, end)]
    windows = relevant_windows(clock, policy, e_first, e_last, near)
    first = e_first
    if windows:
        first = min(e_first, *(credit_range(clock, policy, w)[0] for w in windows))
        first -= policy.lookback_slots
    return Plan(epoch, e_first, e_last, first, windows)


def _time(ts: dt.datetime, eligible: bool) -> int:
    """Whole seconds for the pure rules: a change *to* an eligible status rounds up and
    one away from it rounds down, so a partly-verified second never counts."""
    t = ts.timestamp()
    return math.ceil(t) if eligible else math.floor(t)


def _forfeits(session: Session, clock: EpochClock, epoch: int) -> dict[int, list[Forfeit]]:
    start = dt.datetime.fromtimestamp(clock.epoch_start(epoch), dt.UTC)
    end = dt.datetime.fromtimestamp(clock.epoch_end(epoch), dt.UTC)
    out: dict[int, list[Forfeit]] = {}
    for device_id, failed, since in session.execute(_FORFEITS, {"start": start, "end": end}):
        failed_s = math.floor(failed.timestamp())
        # Never passed: everything of the epoch up to the failure goes.
        pass_s = (
            math.floor(since.timestamp())
            if since is not None
            else clock.epoch_start(epoch) - clock.slot_seconds
        )
        out.setdefault(device_id, []).append(Forfeit(min(pass_s, failed_s), failed_s))
    return out


def _load_changes(session: Session, slow: dict[int, _Slow], end: dt.datetime) -> None:
    ids = [d for d, s in slow.items() if not s.stable]
    for i in range(0, len(ids), _BATCH):
        part = ids[i : i + _BATCH]
        # The ids are integers from our own query, bound as literals (no user input).
        q = (
            text(_CHANGES.format(ids=", ".join(str(int(d)) for d in part)))
            .bindparams(bindparam("end", type_=UTCDateTime()))
            .columns(device_id=BigInteger(), at=UTCDateTime(), to_status=String())
        )
        for device_id, when, to_status in session.execute(q, {"end": end}):
            status = DeviceStatus(to_status)
            changes = slow[device_id].changes
            t = _time(when, status in ELIGIBLE_STATUSES)
            if changes:
                t = max(t, changes[-1].at)  # keep the recorded order
            changes.append(StatusChange(t, status))


def _per_epoch(clock: EpochClock, bitmap: int, first: int, epoch: int) -> dict[int, int]:
    """A bitmap whose bit 0 is global slot `first`, cut into the per-epoch bitmaps the
    pure rules take (epochs from the one holding `first` up to `epoch`)."""
    mask = (1 << clock.slots_per_epoch) - 1
    out = {}
    for e in range(first // clock.slots_per_epoch, epoch + 1):
        shift = clock.first_slot(e) - first
        out[e] = (bitmap >> shift if shift >= 0 else bitmap << -shift) & mask
    return out


def device_uptimes(
    session: Session,
    clock: EpochClock,
    policy: IncidentPolicy,
    weights: dict[str, Fraction],
    p: Plan,
    totals: Totals,
    *,
    device_id: int | None = None,
    counted: dict[int, int] | None = None,
) -> Iterator[DeviceUptime]:
    """The allocation input of every device that counted a slot in the epoch.

    `device_id` restricts the read to one device (the owner's view); `counted`, when
    given, receives each device's counted bitmap.
    """
    n = clock.slots_per_epoch
    width = p.e_last - p.first
    lo, hi = chunk_span(p.first, p.e_last)
    since = dt.datetime.fromtimestamp(clock.slot_start(p.first), dt.UTC)
    end = dt.datetime.fromtimestamp(clock.slot_start(p.e_last), dt.UTC)
    forfeits = _forfeits(session, clock, p.epoch)
    one = " AND d.id = :device" if device_id is not None else ""
    params: dict[str, object] = {
        "since": since,
        "lo": lo,
        "hi": hi,
        "verified": VERIFIED,
        "device": device_id,
    }
    # The fast path needs one row per device: the epoch lies inside one chunk and no
    # incident window reaches into it (windows send every device through the rules).
    steady = lo == hi and not p.windows
    slow: dict[int, _Slow] = {}
    mask = (1 << n) - 1
    since_s = clock.slot_start(p.first) - 1
    if steady:
        shift = lo * CHUNK_SLOTS - p.e_first
        valid: dict[str | None, bool] = {}  # owners share wallets: check each one once
        for dev, bits, profile, wallet, public_id in _raw_rows(session, _STEADY + one, params):
            if not weights.get(profile):
                continue
            if dev in forfeits:
                slow[dev] = _Slow(
                    VERIFIED,
                    profile,
                    payout_wallet(wallet, public_id),
                    True,
                    place(lo, bits, p.first, width),
                )
                continue
            got = (bits << shift if shift >= 0 else bits >> -shift) & mask
            if got:
                totals.devices += 1
                slots = got.bit_count()
                totals.counted_slots += slots
                if counted is not None:
                    counted[dev] = got
                ok = valid.get(wallet)
                if ok is None:
                    ok = valid[wallet] = bool(wallet) and valid_wallet(wallet)
                yield DeviceUptime(wallet if ok else UNSET_PREFIX + public_id, profile, slots)
    else:
        # Steady devices share one status history, so their incident credit depends only
        # on their bits in the windows' look-back slots: computed once per pattern.
        grouped: dict[int, list[Any]] = {}
        for dev, chunk, bits, profile, wallet, public_id in _raw_rows(
            session, _STEADY_CHUNKS + one, params
        ):
            if not weights.get(profile):
                continue
            g = grouped.get(dev)
            if g is None:
                g = grouped[dev] = [0, profile, payout_wallet(wallet, public_id)]
            g[0] |= place(chunk, bits, p.first, width)
        steady_changes = [StatusChange(since_s, DeviceStatus.VERIFIED)]
        looked = 0
        for w in p.windows:
            w_first = clock.global_slot(w.start)
            looked |= range_mask(w_first - policy.lookback_slots - p.first, w_first - p.first)
        credit: dict[int, int] = {}
        offset = p.e_first - p.first
        for dev, (bitmap, profile, wallet) in grouped.items():
            if dev in forfeits:
                slow[dev] = _Slow(VERIFIED, profile, wallet, True, bitmap)
                continue
            key = bitmap & looked
            extra = credit.get(key)
            if extra is None:
                extra = credit[key] = (
                    incident_credit(
                        clock,
                        p.epoch,
                        _per_epoch(clock, key, p.first, p.epoch),
                        steady_changes,
                        p.windows,
                        policy,
                    )
                    if p.windows
                    else 0
                )
            got = ((bitmap >> offset) & mask) | extra
            if got:
                totals.devices += 1
                slots = got.bit_count()
                totals.counted_slots += slots
                if counted is not None:
                    counted[dev] = got
                yield DeviceUptime(wallet, profile, slots)
    for dev, chunk, bits, status, profile, wallet, public_id in _raw_rows(
        session, _EXACT + one, params
    ):
        if not weights.get(profile):
            continue
        entry = slow.get(dev)
        if entry is None:
            entry = slow[dev] = _Slow(status, profile, payout_wallet(wallet, public_id), False)
        entry.bitmap |= place(chunk, bits, p.first, width)
    _load_changes(session, slow, end)
    for dev, s in slow.items():
        changes = s.changes if not s.stable else [StatusChange(since_s, DeviceStatus(s.status))]
        got = device_uptime(
            clock,
            p.epoch,
            _per_epoch(clock, s.bitmap, p.first, p.epoch),
            changes,
            windows=p.windows,
            forfeits=forfeits.get(dev, ()),
            policy=policy,
        )
        if got:
            totals.devices += 1
            slots = got.bit_count()
            totals.counted_slots += slots
            if counted is not None:
                counted[dev] = got
            yield DeviceUptime(s.wallet, s.profile, slots)
