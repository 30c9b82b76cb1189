"""Read one epoch's reward inputs from the database, as the pure close wants them.

For every device that counted slots in the epoch this yields a `Counted`: the
`DeviceUptime` the allocation takes (wallet, catalog profile, counted slots) and the
counted bitmap; the caller adds up whatever totals it wants. Each kind of device has
its own path:
- steady: a device whose status has not changed since before the bits we read
  (`status_changed_at`) was verified the whole time, so its counted slots are its
  heartbeat bits (one row per device when the epoch lies in one chunk);
- steady, with incident windows or several chunks: the same, plus the incident credit,
  computed once per pattern of bits in the windows' look-back;
- by the rules: `core.rewards.device_uptime` for devices whose status changed and for
  steady devices with a failed proof in the epoch (forfeits).

Wallets: the owner's `wallet_address`. Devices of owners without a (valid) wallet are
paid to ``unset.<public device id>``; an account wallet can never contain a dot, so no
owner can claim that name, and no internal id appears in the public snapshot.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

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
# Failures in the epoch, and later ones whose forfeit reaches back into it (a failure
# forfeits back to the last roll-call pass, and epochs close only after a later
# roll-call has resolved: services.rewards.due_epochs).
_FORFEITS = (
    text(
        "SELECT device_id, at, forfeit_from FROM device_events "
        "WHERE kind = 'proof_failed' AND at >= :start AND (at < :end OR forfeit_from < :end)"
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
    # Every reading of an epoch starts here: refuse one whose times cannot be datetimes.
    clock.check_epoch(epoch)
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


class Counted(NamedTuple):
    """One device that counted slots in the epoch: its allocation input, and which
    slots counted (bit i = slot i of the epoch)."""

    device_id: int
    bitmap: int
    uptime: DeviceUptime


@dataclass
class _Read:
    """What every path of one epoch's read shares."""

    session: Session
    clock: EpochClock
    policy: IncidentPolicy
    weights: dict[str, Fraction]
    plan: Plan
    forfeits: dict[int, list[Forfeit]]
    params: dict[str, object]
    one_device: str  # an extra WHERE clause restricting the read to one device, or ""
    lo: int  # first and last chunk read
    hi: int

    @property
    def width(self) -> int:
        return self.plan.e_last - self.plan.first

    @property
    def mask(self) -> int:
        return (1 << self.clock.slots_per_epoch) - 1

    @property
    def since_s(self) -> int:
        """Just before the first slot read: the time steady devices' history starts."""
        return self.clock.slot_start(self.plan.first) - 1

    def rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        return _raw_rows(self.session, sql + self.one_device, self.params)


def device_uptimes(
    session: Session,
    clock: EpochClock,
    policy: IncidentPolicy,
    weights: dict[str, Fraction],
    p: Plan,
    *,
    device_id: int | None = None,
) -> Iterator[Counted]:
    """Every device that counted a slot in the epoch, once each, read in a streaming
    pass; `device_id` restricts the read to one device (the owner's view).

    Steady devices (verified since before the bits read) take a cheap path; the ones
    among them with a forfeit in the epoch are handed on, with the devices whose status
    changed, to the exact rules.
    """
    lo, hi = chunk_span(p.first, p.e_last)
    params: dict[str, object] = {
        "since": dt.datetime.fromtimestamp(clock.slot_start(p.first), dt.UTC),
        "lo": lo,
        "hi": hi,
        "verified": VERIFIED,
        "device": device_id,
    }
    one = " AND d.id = :device" if device_id is not None else ""
    forfeits = _forfeits(session, clock, p.epoch)
    read = _Read(session, clock, policy, weights, p, forfeits, params, one, lo, hi)
    # The one-row-per-device path needs the epoch inside one chunk and no incident
    # window reaching into it (windows send every device through the rules).
    steady = _steady_in_one_chunk if lo == hi and not p.windows else _steady_by_pattern
    forfeited = yield from steady(read)
    yield from _by_the_rules(read, forfeited)


def _steady_in_one_chunk(read: _Read) -> Generator[Counted, None, dict[int, _Slow]]:
    """Counted slots are the heartbeat bits themselves. Returns the forfeited devices."""
    p = read.plan
    shift = read.lo * CHUNK_SLOTS - p.e_first
    mask = read.mask
    forfeited: dict[int, _Slow] = {}
    valid: dict[str | None, bool] = {}  # owners share wallets: check each one once
    for dev, bits, profile, wallet, public_id in read.rows(_STEADY):
        if not read.weights.get(profile):
            continue
        if dev in read.forfeits:
            payee = payout_wallet(wallet, public_id)
            bitmap = place(read.lo, bits, p.first, read.width)
            forfeited[dev] = _Slow(VERIFIED, profile, payee, True, bitmap)
            continue
        got = (bits << shift if shift >= 0 else bits >> -shift) & mask
        if got:
            ok = valid.get(wallet)
            if ok is None:
                ok = valid[wallet] = bool(wallet) and valid_wallet(wallet)
            payee = wallet if ok else UNSET_PREFIX + public_id
            yield Counted(dev, got, DeviceUptime(payee, profile, got.bit_count()))
    return forfeited


def _steady_by_pattern(read: _Read) -> Generator[Counted, None, dict[int, _Slow]]:
    """Steady devices share one status history, so their incident credit depends only
    on their bits in the windows' look-back slots: computed once per pattern. Returns
    the forfeited devices."""
    p = read.plan
    grouped: dict[int, list[Any]] = {}
    for dev, chunk, bits, profile, wallet, public_id in read.rows(_STEADY_CHUNKS):
        if not read.weights.get(profile):
            continue
        g = grouped.get(dev)
        if g is None:
            g = grouped[dev] = [0, profile, payout_wallet(wallet, public_id)]
        g[0] |= place(chunk, bits, p.first, read.width)
    looked = _looked_back(read)
    credit: dict[int, int] = {}
    offset = p.e_first - p.first
    mask = read.mask
    forfeited: dict[int, _Slow] = {}
    for dev, (bitmap, profile, wallet) in grouped.items():
        if dev in read.forfeits:
            forfeited[dev] = _Slow(VERIFIED, profile, wallet, True, bitmap)
            continue
        key = bitmap & looked
        extra = credit.get(key)
        if extra is None:
            extra = credit[key] = _steady_credit(read, key)
        got = ((bitmap >> offset) & mask) | extra
        if got:
            yield Counted(dev, got, DeviceUptime(wallet, profile, got.bit_count()))
    return forfeited


def _looked_back(read: _Read) -> int:
    """The slots (bit 0 = the first slot read) that some window looks back on."""
    p = read.plan
    looked = 0
    for w in p.windows:
        w_first = read.clock.global_slot(w.start)
        looked |= range_mask(w_first - read.policy.lookback_slots - p.first, w_first - p.first)
    return looked


def _steady_credit(read: _Read, looked_bits: int) -> int:
    p = read.plan
    if not p.windows:
        return 0
    return incident_credit(
        read.clock,
        p.epoch,
        _per_epoch(read.clock, looked_bits, p.first, p.epoch),
        [StatusChange(read.since_s, DeviceStatus.VERIFIED)],
        p.windows,
        read.policy,
    )


def _by_the_rules(read: _Read, forfeited: dict[int, _Slow]) -> Iterator[Counted]:
    """The exact rules of `core.rewards.device_uptime`, for the devices whose status
    changed since before the bits read and for the steady ones that forfeited."""
    p = read.plan
    slow = forfeited
    for dev, chunk, bits, status, profile, wallet, public_id in read.rows(_EXACT):
        if not read.weights.get(profile):
            continue
        entry = slow.get(dev)
        if entry is None:
            entry = slow[dev] = _Slow(status, profile, payout_wallet(wallet, public_id), False)
        entry.bitmap |= place(chunk, bits, p.first, read.width)
    end = dt.datetime.fromtimestamp(read.clock.slot_start(p.e_last), dt.UTC)
    _load_changes(read.session, slow, end)
    for dev, s in slow.items():
        steady = [StatusChange(read.since_s, DeviceStatus(s.status))]
        changes = steady if s.stable else s.changes
        got = device_uptime(
            read.clock,
            p.epoch,
            _per_epoch(read.clock, s.bitmap, p.first, p.epoch),
            changes,
            windows=p.windows,
            forfeits=read.forfeits.get(dev, ()),
            policy=read.policy,
        )
        if got:
            yield Counted(dev, got, DeviceUptime(s.wallet, s.profile, got.bit_count()))
