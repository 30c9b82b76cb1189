"""A discrete-event model of what one GPU behind N devices is paid (issue 13, item 4,
"One GPU, one device").

Pure and fast: no database, no clock, seeded `random.Random` streams. It mirrors the
coordinator's rules (services/proofs.py, services/proof_schedule.py,
background/proofs.py, services/rewards.py; docs/proof-of-gpu.md, "Coordinator:
schedule, clocks and forfeits"; docs/rewards.md sections 2 and 8) with the real
defaults of `Settings` and the packaged reward schedule:

* the scheduler runs every `scheduler_tick_s`; in one pass it settles overdue
  challenges, issues due spot checks, then calls the roll if its time has come;
* a spot check per device at `max(0.05 m, Exp(m))` after each pass (m =
  `spot_check_mean_s`), waiting out `min_challenge_gap_s` after the device's last
  challenge of any kind (unless it is being retried after a failure);
* roll-calls at exponential gaps of mean `rollcall_mean_s`: every *verified* device that
  has no challenge outstanding, in one instant; an outstanding challenge the device has
  not heard of is superseded first;
* a challenge's clock starts at issue: the commitment must arrive by
  `issue + budget_s + delivery_allowance_s`; openings then have `open_budget_s`, upload
  only, so the GPU is free to start another chain as soon as it has committed;
* `apply_verdict`: a pass makes the device verified, resets its failures, draws its
  next spot check, and (roll-call) confirms its uptime; a failure forfeits every slot
  after the one holding the last passed roll-call (the enrollment pass counts as one)
  up to and including the failure's, makes a verified device suspect (retried after
  `retry_after_failure_s * 2^(k-1)`, k capped at 7) and a suspect one suspended for
  good; a lapsed roll-call is such a failure; any other lapse is void for status but
  the device owes a proof (none of its heartbeats count) and is re-issued one alone
  `reissue_interval_s` after the lapsed one was issued;
* a slot counts when the device was verified for the whole of it, could send a
  heartbeat that counts in it, and is not forfeited; an epoch is paid only once a
  roll-call started after the epoch's end has resolved, i.e. slots before the start
  of the epoch holding the latest resolved roll-call's start;
* payout is proportional to counted slots times the catalog weight (the emission of an
  epoch is split over the whole network, so for one backend's share only slots x
  weight matter).

The backend (`Backend`) runs one chain at a time, each taking the profile's
`expected_s`, first-in first-out by issue time; within a roll-call it picks whom to
answer first: always the same device (`Order.FIRST_COME`) or the next one each time
(`Order.ROTATE`). A chain it cannot finish in time it either still answers
(`Answer.LATE`: the coordinator fails it as too slow) or lets lapse without a word
(`Answer.LAZY`: it never hears of it). It holds every spot check's openings to the end
of their window (`hold_openings`), so that each spot check stays outstanding as long as
the rules allow (see the exception below).

Why at most one device's uptime per roll-call interval survives (the expected-value
argument). Let R_1 < R_2 < ... be the roll-calls and a the delivery allowance. At R_k
the coordinator challenges every verified device, all clocks starting at R_k. One GPU
finishes its j-th chain no earlier than R_k + j e (e = expected_s; the budget is 1.2 e),
so the j-th device passes only if j e <= 1.2 e + a, i.e. j = 1 whenever 0.8 e > a:
0.8 x 1.235 s > 0.25 s for the fastest catalog GPU. Every other device fails R_k (late
or lapsed: the same failure), and its forfeit reaches back to its last passed roll-call,
no later than R_{k-1}: all its uptime in (R_{k-1}, R_k] is gone. The epochs of that
interval close only after a roll-call started after their end has resolved, which is
R_k at the earliest, and by then the forfeit is recorded: nothing of it was paid
before. Devices not challenged at R_k because they are suspect earn nothing while
suspect, and their uptime before was forfeited by the failure that made them so. So
per interval the N devices keep at most one device's uptime (the one that passed R_k),
which is at most what one honest device keeps (all of it), and since the bound holds
for every k, E[paid(N devices on one GPU)] <= E[paid(one honest device)], whichever
device the backend favours and however it times its answers. Rotating who goes first
only makes it worse: the device answered first at R_k failed R_{k-1}, so it spent a
retry's 1-2 slots suspect in the interval.

The one exception, and the bound on it: a device with a challenge outstanding at R_k is
not issued the roll-call (`proofs.issue` skips it; docs/proof-of-gpu.md lists it under
what remains), so it neither passes nor fails R_k and keeps its interval, and the
epochs close on R_k's resolution before R_{k+1} can forfeit them. A device's challenge
is outstanding for at most w = budget_s + open_budget_s + 2a after each spot check
(about 10-22 s for the catalog), and spot checks come on average every
E[max(0.05 m, Exp(m))] = 0.05 m + m e^(-0.05) (about 21,600 s), so each of the other
N - 1 devices escapes a roll-call with probability about w / 21,600 <= 0.1 %, adding
its interval. In expectation that is at most (N - 1) x 0.1 % of one device (0.3 % at
N = 4), less than what the backend loses elsewhere: a spot check of the favoured device
that arrives while the GPU runs another device's chain is answered late and forfeits
back to the last roll-call, at a rate of (N - 1) e / 21,600 per check (the same order)
and costing on average half an interval instead of one. The tests count both
(`DeviceRecord.escaped`, `DeviceRecord.failures`) and allow, per seed, exactly the
intervals escaped.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources

from gpunet.core.pog import ModelProfile
from gpunet.server.settings import Settings

ROLLCALL = "rollcall"
SPOT = "spot"
DAY = 86400.0
ENROLL_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Rules:
    """The coordinator's schedule (Settings' defaults) and the reward clock."""

    spot_check_mean_s: float
    min_challenge_gap_s: float
    rollcall_mean_s: float
    retry_after_failure_s: float
    reissue_interval_s: float
    delivery_allowance_s: float
    scheduler_tick_s: float
    epoch_s: int
    slot_s: int

    @classmethod
    def defaults(cls, *, slot_s: int | None = None) -> Rules:
        f = Settings.model_fields

        def d(name: str) -> float:
            value = f[name].default
            assert isinstance(value, int | float), name
            return float(value)

        schedule = json.loads(
            resources.files("gpunet.core.rewards").joinpath("schedule.json").read_text()
        )
        epoch_s = int(schedule["epoch_seconds"])
        slot = int(slot_s if slot_s is not None else schedule["slot_seconds"])
        assert epoch_s % slot == 0
        return cls(
            spot_check_mean_s=d("spot_check_mean_s"),
            min_challenge_gap_s=d("min_challenge_gap_s"),
            rollcall_mean_s=d("rollcall_mean_s"),
            retry_after_failure_s=d("retry_after_failure_s"),
            reissue_interval_s=d("reissue_interval_s"),
            delivery_allowance_s=d("delivery_allowance_s"),
            scheduler_tick_s=d("scheduler_tick_s"),
            epoch_s=epoch_s,
            slot_s=slot,
        )

    def tick_at_or_after(self, t: float) -> float:
        return math.ceil(t / self.scheduler_tick_s - 1e-9) * self.scheduler_tick_s

    def tick_after(self, t: float) -> float:
        """The first scheduler pass strictly after `t` (expire: `deadline < now`)."""
        k = math.floor(t / self.scheduler_tick_s + 1e-9) + 1
        return k * self.scheduler_tick_s

    def next_spot_gap(self, rng: random.Random) -> float:
        m = self.spot_check_mean_s
        return max(m * 0.05, rng.expovariate(1.0 / m))

    def mean_spot_gap(self) -> float:
        m = self.spot_check_mean_s
        return 0.05 * m + m * math.exp(-0.05)


@dataclass(frozen=True, slots=True)
class Work:
    """What the model needs of a catalog profile."""

    key: str
    expected_s: float
    budget_s: float
    open_budget_s: float
    weight: float

    @classmethod
    def of(cls, profile: ModelProfile) -> Work:
        b = profile.budget
        return cls(profile.key, b.expected_s, b.budget_s, b.open_budget_s, profile.reward_weight)

    def outstanding_at_most(self, rules: Rules) -> float:
        """The longest a challenge can stay outstanding (commit, then openings)."""
        return self.budget_s + self.open_budget_s + 2 * rules.delivery_allowance_s


class Order(enum.StrEnum):
    FIRST_COME = "first-come"  # a roll-call's challenges answered in device order
    ROTATE = "rotate"  # roll-call k answered starting from device k mod N


class Answer(enum.StrEnum):
    LATE = "late"  # a chain that cannot make its deadline is still run and answered
    LAZY = "lazy"  # such a challenge is never heard of: it lapses


class Status(enum.StrEnum):
    VERIFIED = "verified"
    SUSPECT = "suspect"
    SUSPENDED = "suspended"


OPEN, COMMITTED, PASSED, FAILED, MISSED = "open", "committed", "passed", "failed", "missed"
OUTSTANDING = (OPEN, COMMITTED)


@dataclass(slots=True)
class Check:
    """One challenge row."""

    device: DeviceRecord
    kind: str
    batch: int
    issued_at: float
    deadline: float
    delivered: bool = False
    outcome: str = OPEN
    resolved_at: float | None = None
    committed_at: float | None = None

    @property
    def outstanding(self) -> bool:
        return self.outcome in OUTSTANDING


@dataclass(slots=True)
class DeviceRecord:
    name: str
    index: int  # position on its backend
    rng: random.Random
    status: Status = Status.VERIFIED
    failures: int = 0  # consecutive, as `devices.failures`
    next_check_at: float = 0.0
    last_rollcall_pass_at: float = 0.0
    last_issued_at: float | None = None
    owed_since: float | None = None
    current: Check | None = None
    # Intervals [a, b) not verified, and [a, b) when no heartbeat of it counts.
    down: list[tuple[float, float | None]] = field(default_factory=list)
    silent: list[tuple[float, float | None]] = field(default_factory=list)
    forfeits: list[tuple[float, float]] = field(default_factory=list)
    passes: int = 0
    fails: list[tuple[float, str]] = field(default_factory=list)  # (time, kind)
    lapses: int = 0
    escaped: list[int] = field(default_factory=list)  # roll-calls skipped (outstanding)
    backend: Backend | None = None

    @property
    def failures_total(self) -> int:
        return len(self.fails)

    @property
    def outstanding(self) -> Check | None:
        c = self.current
        return c if c is not None and c.outstanding else None


@dataclass(slots=True)
class Backend:
    """One GPU: one chain at a time, FIFO by issue time."""

    work: Work
    devices: list[DeviceRecord]
    order: Order = Order.FIRST_COME
    answer: Answer = Answer.LATE
    hold_openings: bool = True
    free_at: float = 0.0
    rollcalls: int = 0

    def arrange(self, checks: Sequence[Check]) -> list[Check]:
        """The order it answers checks issued in one instant."""
        if self.order is Order.ROTATE and checks and checks[0].kind == ROLLCALL:
            n = len(self.devices)
            k = self.rollcalls
            return sorted(checks, key=lambda c: (c.device.index - k) % n)
        return sorted(checks, key=lambda c: c.device.index)


@dataclass(frozen=True, slots=True)
class RollCall:
    at: float
    checks: tuple[Check, ...]

    @property
    def resolved_at(self) -> float | None:
        if any(c.outstanding for c in self.checks):
            return None
        return max((c.resolved_at or self.at) for c in self.checks)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one device was paid, and how it fared."""

    name: str
    slots: int  # counted slots in paid epochs
    weight: float
    passes: int
    failures: int
    lapses: int
    escaped: tuple[int, ...]
    suspended: bool

    @property
    def paid(self) -> float:
        return self.slots * self.weight


class Network:
    """The coordinator and every backend, advanced event by event."""

    def __init__(self, rules: Rules, seed: int | str) -> None:
        self.rules = rules
        self.seed = seed
        self.backends: list[Backend] = []
        self.devices: list[DeviceRecord] = []
        self.rollcalls: list[RollCall] = []
        self.rollcall_rng = random.Random(f"{seed}/rollcall")
        self._events: list[tuple[float, int, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self.end = 0.0

    # -- set-up -----------------------------------------------------------------------

    def add_backend(
        self,
        work: Work,
        names: Sequence[str],
        *,
        order: Order = Order.FIRST_COME,
        answer: Answer = Answer.LATE,
        hold_openings: bool = True,
    ) -> Backend:
        """Devices enrolled one after another (`ENROLL_EVERY_S` apart, so the one GPU
        passes every enrollment; that pass counts as a roll-call pass), each in a cohort
        of its own; each draws its spot checks from its own stream of the seed, so the
        same name sees the same draws in every network."""
        backend = Backend(work, [], order, answer, hold_openings)
        for i, name in enumerate(names):
            dev = DeviceRecord(name, i, random.Random(f"{self.seed}/{name}"), backend=backend)
            enrolled = ENROLL_EVERY_S * (i + 1)
            dev.down.append((0.0, enrolled))  # pending until then
            dev.last_rollcall_pass_at = enrolled
            backend.devices.append(dev)
            self.devices.append(dev)
            self._set_next_check(dev, self.rules.next_spot_gap(dev.rng), base=enrolled)
        self.backends.append(backend)
        return backend

    # -- the event loop ---------------------------------------------------------------
    # Phases within one instant follow a scheduler pass: settle, issue due, roll-call;
    # device messages (commitments, openings) come at their own times.

    def _at(self, t: float, phase: int, fn: Callable[[float], None]) -> None:
        heapq.heappush(self._events, (t, phase, next(self._seq), fn))

    def run(self, days: float) -> float:
        end = days * DAY
        self._at(self.rules.tick_at_or_after(self._rollcall_gap()), 2, self._rollcall)
        while self._events and self._events[0][0] <= end:
            t, _, _, fn = heapq.heappop(self._events)
            fn(t)
        self.end = end
        return end

    def _rollcall_gap(self) -> float:
        return self.rollcall_rng.expovariate(1.0 / self.rules.rollcall_mean_s)

    # -- the coordinator --------------------------------------------------------------

    def _set_next_check(self, dev: DeviceRecord, gap: float, *, base: float = 0.0) -> None:
        dev.next_check_at = base + gap
        due = dev.next_check_at
        self._at(self.rules.tick_at_or_after(due), 1, lambda t: self._due(dev, due, t))

    def _due(self, dev: DeviceRecord, due: float, now: float) -> None:
        """`proof_schedule.schedule_due` for one device (it is alone in its cohort)."""
        if dev.next_check_at != due or dev.status is Status.SUSPENDED:
            return  # superseded by a later draw, or no longer challengeable
        if dev.owed_since is None:
            last = dev.last_issued_at
            gap = self.rules.min_challenge_gap_s
            if dev.failures == 0 and last is not None and last > now - gap:
                self._set_next_check(dev, gap, base=last)
                return
        if dev.outstanding is not None:
            # `issue` declines; the device stays due and is looked at every pass.
            tick = self.rules.scheduler_tick_s
            self._at(now + tick, 1, lambda t: self._due(dev, due, t))
            return
        self._issue([dev], SPOT, batch=-1, now=now)

    def _issue(
        self, devices: Sequence[DeviceRecord], kind: str, *, batch: int, now: float
    ) -> list[Check]:
        checks = []
        for dev in devices:
            assert dev.backend is not None
            deadline = now + dev.backend.work.budget_s + self.rules.delivery_allowance_s
            check = Check(dev, kind, batch, now, deadline)
            dev.current = check
            dev.last_issued_at = now
            checks.append(check)
            self._at(self.rules.tick_after(deadline), 0, partial(self._expire, check))
        by_backend: dict[int, list[Check]] = {}
        for c in checks:
            assert c.device.backend is not None
            by_backend.setdefault(id(c.device.backend), []).append(c)
        for group in by_backend.values():
            backend = group[0].device.backend
            assert backend is not None
            # Pushed once the scheduler's pass is over: a spot check issued in the same
            # pass as a roll-call is still unheard of when the roll-call supersedes it.
            self._at(now, 3, partial(self._serve, backend, group))
        return checks

    def _rollcall(self, now: float) -> None:
        """`proof_schedule.rollcall` with fraction 1, then the next draw."""
        k = len(self.rollcalls)
        called = []
        for dev in self.devices:
            if dev.status is not Status.VERIFIED:
                continue
            c = dev.outstanding
            if c is not None and c.outcome == OPEN and not c.delivered:
                c.outcome, c.resolved_at = MISSED, now  # superseded, nothing owed for it
                c = None
            if c is not None:
                dev.escaped.append(k)
                continue
            called.append(dev)
        checks = self._issue(called, ROLLCALL, batch=k, now=now) if called else []
        if checks:
            self.rollcalls.append(RollCall(now, tuple(checks)))
        else:
            self.rollcalls.append(RollCall(now, ()))
        self._at(self.rules.tick_at_or_after(now + self._rollcall_gap()), 2, self._rollcall)

    def _expire(self, check: Check, now: float) -> None:
        """`proofs.expire` / `settle_overdue`."""
        if not check.outstanding or not now > check.deadline:
            return
        if check.outcome == OPEN and not check.delivered:
            self._lapse(check, now)
        else:
            self._fail(check, now)

    def _lapse(self, check: Check, now: float) -> None:
        dev = check.device
        check.outcome, check.resolved_at = MISSED, now
        dev.lapses += 1
        if check.kind == ROLLCALL:
            self._verdict(dev, passed=False, now=now, kind=check.kind)
            return
        if dev.owed_since is None:
            dev.owed_since = now
            # It kept silent from the issue on (any contact would have been delivery).
            dev.silent.append((check.issued_at, None))
        self._set_next_check(dev, max(now, check.issued_at + self.rules.reissue_interval_s))

    def _fail(self, check: Check, now: float) -> None:
        check.outcome, check.resolved_at = FAILED, now
        self._verdict(check.device, passed=False, now=now, kind=check.kind)

    def _commit(self, check: Check, now: float) -> None:
        """`accept_commitment`: timed from issue less the allowance."""
        if check.outcome != OPEN:
            return  # settled as too slow by a pass that came first
        charged = now - check.issued_at - self.rules.delivery_allowance_s
        backend = check.device.backend
        assert backend is not None
        if charged > backend.work.budget_s:
            self._fail(check, now)
            return
        check.outcome, check.committed_at = COMMITTED, now
        check.deadline = now + backend.work.open_budget_s + self.rules.delivery_allowance_s
        hold = backend.work.open_budget_s if backend.hold_openings and check.kind == SPOT else 0
        self._at(now + hold, 3, lambda t: self._openings(check, t))
        self._at(self.rules.tick_after(check.deadline), 0, lambda t: self._expire(check, t))

    def _openings(self, check: Check, now: float) -> None:
        if check.outcome != COMMITTED:
            return
        check.outcome, check.resolved_at = PASSED, now
        self._verdict(check.device, passed=True, now=now, kind=check.kind)

    def _verdict(self, dev: DeviceRecord, *, passed: bool, now: float, kind: str) -> None:
        """`proofs.apply_verdict`."""
        if passed:
            dev.passes += 1
            if kind == ROLLCALL:
                dev.last_rollcall_pass_at = now
            if dev.owed_since is not None:
                a, _ = dev.silent.pop()
                dev.silent.append((a, now))
                dev.owed_since = None
            dev.failures = 0
            self._set_next_check(dev, self.rules.next_spot_gap(dev.rng), base=now)
            if dev.status is Status.SUSPECT:
                a, _ = dev.down.pop()
                dev.down.append((a, now))
                dev.status = Status.VERIFIED
            return
        dev.failures += 1
        dev.fails.append((now, kind))
        dev.forfeits.append((dev.last_rollcall_pass_at, now))
        backoff = self.rules.retry_after_failure_s * min(2 ** (dev.failures - 1), 64)
        self._set_next_check(dev, backoff, base=now)
        if dev.status is Status.SUSPENDED:
            return
        if dev.status is Status.SUSPECT:
            dev.status = Status.SUSPENDED  # its `down` interval stays open for good
        else:
            dev.status = Status.SUSPECT
            dev.down.append((now, None))

    # -- the backend ------------------------------------------------------------------

    def _serve(self, backend: Backend, checks: Sequence[Check], now: float) -> None:
        """Queue the chains in the backend's order. Arrivals come in issue order and
        the queue is FIFO, so each chain's start is known when it arrives."""
        e = backend.work.expected_s
        ordered = backend.arrange([c for c in checks if c.outcome == OPEN])
        if ordered and ordered[0].kind == ROLLCALL:
            backend.rollcalls += 1
        for check in ordered:
            start = max(now, backend.free_at)
            finish = start + e
            if backend.answer is Answer.LAZY and finish > check.deadline:
                continue  # it stays silent until the deadline: never heard of it
            check.delivered = True
            backend.free_at = finish
            self._at(finish, 3, partial(self._commit, check))

    # -- rewards ----------------------------------------------------------------------

    def confirmed_until(self, end: float) -> float | None:
        """`rollcall_confirmed_until` at `end`: the start of the latest roll-call (with
        rows) whose every challenge had resolved by then."""
        best = None
        for rc in self.rollcalls:
            resolved = rc.resolved_at
            if rc.checks and resolved is not None and resolved <= end:
                best = rc.at
        return best

    def paid_slots_end(self, end: float) -> int:
        """Slots before this are in epochs that are closed (paid) at `end`."""
        until = self.confirmed_until(end)
        if until is None:
            return 0
        epochs = math.floor(until / self.rules.epoch_s)  # epoch_index(until) - 1 closes
        return epochs * self.rules.epoch_s // self.rules.slot_s

    def counted_slots(self, dev: DeviceRecord, end: float) -> int:
        s = self.rules.slot_s
        n = self.paid_slots_end(end)
        mask = (1 << n) - 1
        for a, b in dev.down:  # any slot touched by a non-verified instant
            lo, hi = math.floor(a / s), (n if b is None else math.ceil(b / s))
            mask &= ~_range(lo, hi)
        for a, b in dev.silent:  # slots with no instant at which a heartbeat counts
            lo, hi = math.ceil(a / s), (n if b is None else math.floor(b / s))
            mask &= ~_range(lo, hi)
        for last_rc, failed in dev.forfeits:
            mask &= ~_range(math.floor(last_rc / s) + 1, math.floor(failed / s) + 1)
        return (mask & ((1 << n) - 1)).bit_count()

    def outcome(self, dev: DeviceRecord) -> Outcome:
        assert dev.backend is not None
        return Outcome(
            dev.name,
            self.counted_slots(dev, self.end),
            dev.backend.work.weight,
            dev.passes,
            dev.failures_total,
            dev.lapses,
            tuple(dev.escaped),
            dev.status is Status.SUSPENDED,
        )


def _range(lo: int, hi: int) -> int:
    lo = max(lo, 0)
    return ((1 << (hi - lo)) - 1) << lo if hi > lo else 0


@dataclass(frozen=True, slots=True)
class Run:
    """One seed: the honest device and the N devices of the shared backend, in one
    network (so they see the same roll-calls)."""

    honest: Outcome
    shared: tuple[Outcome, ...]
    rollcalls: tuple[RollCall, ...]
    shared_names: tuple[str, ...]

    @property
    def honest_paid(self) -> float:
        return self.honest.paid

    @property
    def shared_paid(self) -> float:
        return sum(o.paid for o in self.shared)

    @property
    def ratio(self) -> float:
        return self.shared_paid / self.honest_paid

    def first_rollcall(self) -> dict[str, str]:
        """Each shared device's outcome at the first roll-call ('not called' if none)."""
        first = self.rollcalls[0]
        got = {c.device.name: c.outcome for c in first.checks}
        return {name: got.get(name, "not called") for name in self.shared_names}

    def escaped_slots(self, rules: Rules) -> int:
        """Slots of the intervals ending at roll-calls one of the N escaped (the bound
        on what escaping can add: one interval per escape)."""
        starts = [0.0] + [rc.at for rc in self.rollcalls]
        total = 0
        for o in self.shared:
            for k in o.escaped:
                total += math.ceil((starts[k + 1] - starts[k]) / rules.slot_s)
        return total


def simulate(
    work: Work,
    n: int,
    *,
    seed: int,
    days: float = 14,
    order: Order = Order.FIRST_COME,
    answer: Answer = Answer.LATE,
    rules: Rules | None = None,
) -> Run:
    rules = rules or Rules.defaults(slot_s=60)
    net = Network(rules, seed)
    honest = net.add_backend(work, ["honest"])
    names = [f"shared-{i}" for i in range(n)]
    shared = net.add_backend(work, names, order=order, answer=answer)
    net.run(days)
    return Run(
        net.outcome(honest.devices[0]),
        tuple(net.outcome(d) for d in shared.devices),
        tuple(net.rollcalls),
        tuple(names),
    )


def mean(values: Iterable[float]) -> float:
    vs = list(values)
    return sum(vs) / len(vs)
