from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet.core.errors import InvalidInput
from gpunet.core.rewards.emission import (
    MAX_AMOUNT,
    Season,
    dump_schedule,
    emission_for_epoch,
    load_schedule,
)

GENESIS = "2027-01-01T00:00:00Z"
G = 1798761600  # the same instant in Unix seconds
DAY = 86400


def schedule_dict(**over):
    d = {
        "version": 1,
        "genesis": GENESIS,
        "seasons": [
            {"name": "season-1", "start": GENESIS, "end": "2027-01-31T00:00:00Z",
             "budget": "1000000000000000000000001"},
            {"name": "season-2", "start": G + 40 * DAY, "end": G + 70 * DAY, "budget": 719},
        ],
        "base": {"per_epoch": 1000, "halving_epochs": 24},
    }
    d.update(over)
    return d


def test_load_and_emission():
    s = load_schedule(schedule_dict())
    assert s.clock.genesis == G and s.clock.epoch_seconds == 3600
    s1, s2 = s.seasons
    assert s1.epochs == 30 * 24 and s2.start_epoch == 40 * 24
    # season 1 sums exactly to its budget; the first `budget % epochs` epochs get one more
    q, r = divmod(10**24 + 1, 720)
    amounts = [emission_for_epoch(s, e) for e in range(720)]
    assert sum(amounts) == 10**24 + 1
    assert amounts[:r] == [q + 1] * r and amounts[r:] == [q] * (720 - r)
    # season 2: 719 over 720 epochs -> 1 each, last one 0
    assert sum(emission_for_epoch(s, e) for e in range(960, 960 + 720)) == 719
    assert emission_for_epoch(s, 960 + 719) == 0
    # gap between the seasons: base emission halved every 24 epochs from genesis
    assert emission_for_epoch(s, 720) == 1000 >> 30
    assert emission_for_epoch(s, 70 * 24 + 5) == 1000 >> 70 == 0
    assert emission_for_epoch(s, -1) == 0


def test_base_without_decay_and_halving():
    s = load_schedule({"version": 1, "genesis": 0, "base": {"per_epoch": 1024,
                                                            "halving_epochs": 10}})
    assert [emission_for_epoch(s, e) for e in (0, 9, 10, 19, 20, 105)] == [
        1024, 1024, 512, 512, 256, 1]
    assert emission_for_epoch(s, 10**9) == 0
    flat = load_schedule({"version": 1, "genesis": 0, "base": {"per_epoch": 7}})
    assert emission_for_epoch(flat, 10**12) == 7
    assert emission_for_epoch(load_schedule({"version": 1, "genesis": 0}), 5) == 0


def test_json_text_and_roundtrip():
    s = load_schedule(json.dumps(schedule_dict()))
    again = load_schedule(json.dumps(dump_schedule(s)))
    assert again == s


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(version=2),
    lambda d: d.update(extra=1),
    lambda d: d.pop("genesis"),
    lambda d: d["seasons"][1].update(start=G + 20 * DAY),  # overlaps season-1
    lambda d: d["seasons"][1].update(name="season-1"),
    lambda d: d["seasons"][0].update(end=GENESIS),  # empty
    lambda d: d["seasons"][0].update(end=G + 100),  # not on an epoch boundary
    lambda d: d["seasons"][0].update(start=G - 3600),  # before genesis
    lambda d: d["seasons"][0].update(budget=-1),
    lambda d: d["seasons"][0].update(budget=1.5),
    lambda d: d["seasons"][0].update(budget=MAX_AMOUNT + 1),
    lambda d: d["seasons"][0].update(budget=True),
    lambda d: d["seasons"][0].update(start="2027-01-01T00:00:00"),  # no offset
    lambda d: d["seasons"][0].update(start="yesterday"),
    lambda d: d["seasons"][0].update(name="<script>"),
    lambda d: d["seasons"][0].update(colour="red"),
    lambda d: d.update(seasons=[dict(d["seasons"][1], name=f"s{i}") for i in range(1001)]),
    lambda d: d["base"].update(halving_epochs=-1),
    lambda d: d["base"].update(decay=0.5),
    lambda d: d.update(slot_seconds=7),
])
def test_rejects_bad_schedules(mutate):
    d = schedule_dict()
    mutate(d)
    with pytest.raises(InvalidInput):
        load_schedule(d)


@pytest.mark.parametrize("text", ["[]", "{", "1", '"x"', " " * 1_000_001])
def test_rejects_bad_json(text):
    with pytest.raises(InvalidInput):
        load_schedule(text)


def test_emission_requires_int_epoch():
    s = load_schedule(schedule_dict())
    with pytest.raises(InvalidInput):
        emission_for_epoch(s, 1.0)  # type: ignore[arg-type]


@settings(deadline=None)
@given(st.integers(0, MAX_AMOUNT), st.integers(1, 5000))
def test_season_spreads_budget_exactly(budget, epochs):
    season = Season("s", 100, 100 + epochs, budget)
    amounts = [season.emission(e) for e in range(100, 100 + epochs)]
    assert sum(amounts) == budget
    assert max(amounts) - min(amounts) <= 1
    assert amounts == sorted(amounts, reverse=True)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20), st.integers(0, 10**30)),
                max_size=6),
       st.integers(0, 10**20), st.integers(0, 100))
def test_emission_is_a_function_of_schedule_and_epoch_only(seasons, base, halving):
    """Valid schedules: every season sums to its budget; rejected ones overlap."""
    raw = [{"name": f"s{i}", "start": 3600 * a, "end": 3600 * (a + n), "budget": b}
           for i, (a, n, b) in enumerate(seasons)]
    spans = sorted((a, a + n) for a, n, _ in seasons)
    overlap = any(x[1] > y[0] for x, y in itertools.pairwise(spans))
    d = {"version": 1, "genesis": 0, "seasons": raw,
         "base": {"per_epoch": base, "halving_epochs": halving}}
    if overlap:
        with pytest.raises(InvalidInput):
            load_schedule(d)
        return
    s = load_schedule(d)
    for a, n, b in seasons:
        assert sum(emission_for_epoch(s, e) for e in range(a, a + n)) == b
    covered = {e for a, n, _ in seasons for e in range(a, a + n)}
    for e in range(0, 80):
        if e not in covered:
            assert emission_for_epoch(s, e) == (base >> (e // halving) if halving else base)
