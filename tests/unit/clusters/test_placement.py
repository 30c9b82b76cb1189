"""Placement on its own: which devices a request gets, and why one is refused."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpunet.core.clusters import ClusterRequest
from gpunet.core.placement import Candidate, Placement, Refusal, place, widest_scope

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def dev(i: int, **kw: Any) -> Candidate:
    values: dict[str, Any] = {
        "id": i,
        "profile": "h100-sxm",
        "vram_mib": 81559,
        "int8_tops": 1979.0,
        "region": "eu-west",
        "host": f"host-{i}",
        "network": f"net-{i}",
        "verified": True,
        "verified_since": NOW - dt.timedelta(days=2),
        "online": True,
        "free": True,
        "proof_clear": True,
    }
    values.update(kw)
    return Candidate(**values)


def req(count: int, **kw: Any) -> ClusterRequest:
    return ClusterRequest(count=count, **kw)


def test_places_exactly_the_count_and_prefers_one_host() -> None:
    devices = [dev(1), dev(2, host="h", network="n"), dev(3, host="h", network="n"), dev(4)]
    got = place(req(2), devices, NOW)
    assert isinstance(got, Placement)
    assert [c.id for c in got.devices] == [2, 3]
    assert got.scope == "host"


def test_then_one_network_then_one_region() -> None:
    devices = [
        dev(1, network="a", region="us-east"),
        dev(2, network="b", region="eu-west"),
        dev(3, network="b", region="eu-west"),
        dev(4, network="c", region="eu-west"),
    ]
    got = place(req(2), devices, NOW)
    assert isinstance(got, Placement) and got.scope == "network"
    assert {c.id for c in got.devices} == {2, 3}
    got = place(req(3), devices, NOW)
    assert isinstance(got, Placement) and got.scope == "region"
    assert {c.id for c in got.devices} == {2, 3, 4}
    got = place(req(4), devices, NOW)
    assert isinstance(got, Placement) and got.scope == "any"


def test_best_fit_leaves_the_big_host_for_a_big_request() -> None:
    big = [dev(i, host="big", network="n1") for i in range(1, 5)]
    small = [dev(i, host="small", network="n2") for i in range(5, 7)]
    got = place(req(2), big + small, NOW)
    assert isinstance(got, Placement)
    assert {c.host for c in got.devices} == {"small"}


def test_fewest_hosts_when_spread() -> None:
    devices = [dev(1, host="a"), dev(2, host="b"), dev(3, host="b"), dev(4, host="c")]
    got = place(req(3), devices, NOW)
    assert isinstance(got, Placement)
    assert [c.host for c in got.devices].count("b") == 2


@pytest.mark.parametrize(
    ("change", "request_kw", "constraint"),
    [
        ({"profile": "rtx4090"}, {"gpu_model": "h100-sxm"}, "gpu_model"),
        ({"vram_mib": 1024}, {"min_vram_mib": 2048}, "min_vram_mib"),
        ({"int8_tops": None}, {"min_int8_tops": 10}, "min_int8_tops"),
        ({"region": "us-east"}, {"region": "eu-west"}, "region"),
        ({"verified": False}, {}, "verified"),
        (
            {"verified_since": NOW - dt.timedelta(hours=1)},
            {"min_verified_hours": 2},
            "min_verified_hours",
        ),
        ({"online": False}, {}, "online"),
        ({"free": False}, {}, "free"),
        ({"proof_clear": False}, {}, "proof_clear"),
    ],
)
def test_refusal_names_the_constraint_and_how_many_fit(
    change: dict[str, Any], request_kw: dict[str, Any], constraint: str
) -> None:
    devices = [dev(1), dev(2, **change), dev(3, **change)]
    got = place(req(2, **request_kw), devices, NOW)
    assert isinstance(got, Refusal) and not got
    assert (got.constraint, got.wanted, got.fit) == (constraint, 2, 1)
    assert "only 1 is" in got.reason


def test_refusal_for_latency() -> None:
    devices = [dev(1), dev(2)]  # two hosts, two networks, one region
    got = place(req(2, max_latency_ms=5), devices, NOW)
    assert isinstance(got, Refusal)
    assert (got.constraint, got.fit) == ("max_latency_ms", 1)
    assert "within one network" in got.reason
    assert isinstance(place(req(2, max_latency_ms=50), devices, NOW), Placement)
    got = place(req(2, max_latency_ms=0.01), devices, NOW)
    assert isinstance(got, Refusal) and got.fit == 0


def test_widest_scope() -> None:
    assert widest_scope(None, 4) == "any"
    assert widest_scope(0.01, 1) == "any"  # one node has no latency to anyone
    assert widest_scope(0.5, 2) == "host"
    assert widest_scope(1, 2) == "network"
    assert widest_scope(100, 2) == "region"
    assert widest_scope(0.01, 2) is None


def test_requests_are_strict() -> None:
    for bad in (
        {"count": 0},
        {"count": 65},
        {"count": True},
        {"count": "2"},
        {"count": 2, "min_vram_mib": True},
        {"count": 2, "gpu_model": "H100; DROP TABLE"},
        {"count": 2, "duration_s": 10},
        {"count": 2, "engine": "spark"},
        {"count": 2, "extra": 1},
    ):
        with pytest.raises(ValidationError):
            ClusterRequest.model_validate(bad)


flags = st.fixed_dictionaries(
    {
        "verified": st.booleans(),
        "online": st.booleans(),
        "free": st.booleans(),
        "proof_clear": st.booleans(),
        "host": st.sampled_from(["h1", "h2", "h3", "h4"]),
        "network": st.sampled_from(["n1", "n2", None]),
        "region": st.sampled_from(["eu-west", "us-east", None]),
        "profile": st.sampled_from(["h100-sxm", "cpu-dev", None]),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(flags, max_size=24),
    st.integers(1, 8),
    st.sampled_from([None, 0.5, 1.0, 50.0]),
)
def test_placement_is_sound(
    specs: list[dict[str, Any]], count: int, latency: float | None
) -> None:
    devices = [dev(i, **s) for i, s in enumerate(specs)]
    got = place(req(count, max_latency_ms=latency), devices, NOW)
    usable = [
        d for d in devices if d.verified and d.online and d.free and d.proof_clear
    ]
    if isinstance(got, Placement):
        ids = [c.id for c in got.devices]
        assert len(ids) == count == len(set(ids))
        assert all(c in usable for c in got.devices)
        if got.scope == "host":
            assert len({c.host for c in got.devices}) == 1
    else:
        assert got.fit < count or got.constraint == "max_latency_ms"
        if got.constraint != "max_latency_ms":
            usable_refusal = ("verified", "online", "free", "proof_clear")
            assert len(usable) < count or got.constraint not in usable_refusal


def test_deterministic() -> None:
    devices = [dev(i, host=f"h{i % 3}") for i in range(12)]
    first = place(req(5), devices, NOW)
    assert first == place(req(5), list(reversed(devices)), NOW)
    assert replace(devices[0]) == devices[0]
