"""The public emission schedule: how many base units each epoch pays, fixed in advance.

Emission per epoch is a function of the schedule and the epoch index only, never of how
many devices take part (T6: whatever happens, the epoch pays the same).

* **Seasons** ``[start, end)`` (epoch-aligned, non-overlapping, gaps allowed) each spread
  a total ``budget`` over their ``N`` epochs: with ``q, r = divmod(budget, N)`` the first
  ``r`` epochs of the season pay ``q + 1`` and the others ``q``, so a season sums exactly
  to its budget.
* **Base emission** pays every epoch at or after genesis that no season covers:
  ``per_epoch >> (epoch // halving_epochs)`` (halved, rounded down, every
  ``halving_epochs`` epochs counted from genesis; 0 means no decay).
* Epochs before genesis pay 0.

All amounts are integers in base units, bounded by ``MAX_AMOUNT`` (< 2**256).
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpunet.core.errors import InvalidInput
from gpunet.core.rewards.clock import EpochClock

MAX_AMOUNT = 10**60
MAX_SEASONS = 1000
SCHEDULE_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Season:
    """A reward season over epochs ``[start_epoch, end_epoch)`` paying `budget` in total."""

    name: str
    start_epoch: int
    end_epoch: int
    budget: int

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.start_epoch

    def emission(self, epoch: int) -> int:
        """Exact share of `epoch`: the first ``budget % epochs`` epochs get one unit more."""
        if not self.start_epoch <= epoch < self.end_epoch:
            raise ValueError("epoch outside the season")
        q, r = divmod(self.budget, self.epochs)
        return q + 1 if epoch - self.start_epoch < r else q


@dataclass(frozen=True, slots=True)
class BaseEmission:
    """Outside seasons: ``per_epoch`` halved (rounded down) every ``halving_epochs``.

    ``emission(e) = per_epoch >> (e // halving_epochs)`` for ``e >= 0`` (epochs counted
    from genesis); ``halving_epochs == 0`` means no decay.
    """

    per_epoch: int = 0
    halving_epochs: int = 0

    def emission(self, epoch: int) -> int:
        if epoch < 0:
            return 0
        if self.halving_epochs == 0:
            return self.per_epoch
        halvings = epoch // self.halving_epochs
        return self.per_epoch >> halvings if halvings < 256 else 0


@dataclass(frozen=True, slots=True)
class EmissionSchedule:
    """Clock, seasons (sorted, non-overlapping) and the base emission."""

    clock: EpochClock
    seasons: tuple[Season, ...]
    base: BaseEmission

    def season_for(self, epoch: int) -> Season | None:
        i = bisect.bisect_right([s.start_epoch for s in self.seasons], epoch) - 1
        if i >= 0 and epoch < self.seasons[i].end_epoch:
            return self.seasons[i]
        return None


def emission_for_epoch(schedule: EmissionSchedule, epoch: int) -> int:
    """Base units paid for `epoch` (an index; use ``clock.epoch_index(ts)`` for a time)."""
    if type(epoch) is not int:
        raise InvalidInput("epoch must be an integer index")
    if epoch < 0:
        return 0
    season = schedule.season_for(epoch)
    return season.emission(epoch) if season else schedule.base.emission(epoch)


# -- loading -----------------------------------------------------------------------------


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    """An integer given as a JSON number or a decimal string (for values above 2**53)."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,80}", value):
        value = int(value)
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidInput(f"{field} must be an integer within {lo}..{hi}", field=field)
    return value


def _time(value: Any, field: str) -> int:
    """Unix seconds, or an ISO 8601 string with an explicit offset (e.g. ...T00:00:00Z)."""
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        if len(value) > 40:
            raise InvalidInput(f"{field} is too long", field=field)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{field} is not an ISO 8601 time", field=field) from None
        if parsed.tzinfo is None:
            raise InvalidInput(f"{field} needs an explicit UTC offset", field=field)
        if parsed.microsecond:
            raise InvalidInput(f"{field} must be whole seconds", field=field)
        return int(parsed.timestamp())
    return _int(value, field, -(2**62), 2**62)


def _keys(data: Mapping[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be an object")
    unknown = set(data) - allowed
    if unknown:
        raise InvalidInput(f"{where}: unknown fields {sorted(unknown)}")
    missing = required - set(data)
    if missing:
        raise InvalidInput(f"{where}: missing fields {sorted(missing)}")


def load_schedule(data: Mapping[str, Any] | str | bytes) -> EmissionSchedule:
    """Validate a schedule given as a dict or JSON text; see docs/rewards.md for the shape.

    Rejects unknown fields, unaligned or empty seasons, overlapping seasons, more than
    ``MAX_SEASONS`` seasons, and amounts above ``MAX_AMOUNT``.
    """
    if isinstance(data, str | bytes):
        if len(data) > 1_000_000:
            raise InvalidInput("schedule is too large")
        try:
            parsed: Any = json.loads(data)
        except ValueError:
            raise InvalidInput("schedule is not valid JSON") from None
        if not isinstance(parsed, Mapping):
            raise InvalidInput("schedule must be an object")
        return load_schedule(parsed)
    _keys(data, {"version", "genesis", "epoch_seconds", "slot_seconds", "seasons", "base"},
          {"version", "genesis"}, "schedule")
    if data["version"] != SCHEDULE_VERSION:
        raise InvalidInput(f"unsupported schedule version (expected {SCHEDULE_VERSION})")
    clock = EpochClock(
        genesis=_time(data["genesis"], "genesis"),
        epoch_seconds=_int(data.get("epoch_seconds", 3600), "epoch_seconds", 1, 366 * 86400),
        slot_seconds=_int(data.get("slot_seconds", 60), "slot_seconds", 1, 366 * 86400),
    )
    raw_seasons = data.get("seasons", [])
    if not isinstance(raw_seasons, list) or len(raw_seasons) > MAX_SEASONS:
        raise InvalidInput(f"seasons must be a list of at most {MAX_SEASONS}")
    seasons = [_season(clock, s, i) for i, s in enumerate(raw_seasons)]
    seasons.sort(key=lambda s: s.start_epoch)
    for prev, nxt in itertools.pairwise(seasons):
        if nxt.start_epoch < prev.end_epoch:
            raise InvalidInput(f"seasons {prev.name!r} and {nxt.name!r} overlap")
    if len({s.name for s in seasons}) != len(seasons):
        raise InvalidInput("season names must be unique")
    return EmissionSchedule(clock=clock, seasons=tuple(seasons), base=_base(data.get("base")))


def _season(clock: EpochClock, raw: Any, i: int) -> Season:
    where = f"seasons[{i}]"
    _keys(raw, {"name", "start", "end", "budget"}, {"name", "start", "end", "budget"}, where)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"{where}.name must be 1..64 letters, digits, ' ._-'")
    start, end = _time(raw["start"], f"{where}.start"), _time(raw["end"], f"{where}.end")
    for t, field in ((start, "start"), (end, "end")):
        if (t - clock.genesis) % clock.epoch_seconds:
            raise InvalidInput(f"{where}.{field} is not on an epoch boundary")
    s_epoch, e_epoch = clock.epoch_index(start), clock.epoch_index(end)
    if s_epoch < 0:
        raise InvalidInput(f"{where} starts before genesis")
    if e_epoch <= s_epoch:
        raise InvalidInput(f"{where} must end after it starts")
    budget = _int(raw["budget"], f"{where}.budget", 0, MAX_AMOUNT)
    return Season(name=name, start_epoch=s_epoch, end_epoch=e_epoch, budget=budget)


def _base(raw: Any) -> BaseEmission:
    if raw is None:
        return BaseEmission()
    _keys(raw, {"per_epoch", "halving_epochs"}, {"per_epoch"}, "base")
    return BaseEmission(
        per_epoch=_int(raw["per_epoch"], "base.per_epoch", 0, MAX_AMOUNT),
        halving_epochs=_int(raw.get("halving_epochs", 0), "base.halving_epochs", 0, 10**9),
    )


def dump_schedule(schedule: EmissionSchedule) -> dict[str, Any]:
    """The canonical dict form (times as Unix seconds, amounts as decimal strings)."""
    c = schedule.clock
    return {
        "version": SCHEDULE_VERSION,
        "genesis": c.genesis,
        "epoch_seconds": c.epoch_seconds,
        "slot_seconds": c.slot_seconds,
        "seasons": [
            {"name": s.name, "start": c.epoch_start(s.start_epoch),
             "end": c.epoch_start(s.end_epoch), "budget": str(s.budget)}
            for s in schedule.seasons
        ],
        "base": {
            "per_epoch": str(schedule.base.per_epoch),
            "halving_epochs": schedule.base.halving_epochs,
        },
    }
