"""Choosing devices for a cluster request: pure, deterministic, explainable.

`place(request, candidates, now)` either returns the devices to reserve or a `Refusal`
that names the first constraint too few devices got past and how many did. The
coordinator reads candidates from its database (services.clusters.reservation), calls
this, then reserves what it chose atomically; this module never sees a database.

Constraints are applied in a fixed order so a refusal always names the same one for the
same network: hardware (model, memory, int8 throughput), region, verified, verified
long enough, online, free, proof clear, then nearness (max latency). A device is "proof
clear" when it owes no proof and has passed one since it last left a cluster (the light
check between jobs, docs/clusters.md).

Nearness: the coordinator does not measure latency between hosts; it estimates it from
where devices are (`LATENCY_MS`): the same host, the same network (the /24 or /48 the
device enrolled from), the same region, or anywhere. Among the devices that fit it
prefers, in order, one host, one network, one region, and otherwise the fewest hosts;
within a scope it fills the fullest hosts first and leaves larger free groups for
larger requests (best fit).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gpunet.core.clusters import ClusterRequest

# Estimated round trip between two nodes, by what they share (milliseconds).
LATENCY_MS = {"host": 0.1, "network": 1.0, "region": 20.0, "any": 300.0}
SCOPES = ("host", "network", "region", "any")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One device as placement sees it (the coordinator fills it from its tables)."""

    id: int
    profile: str | None  # the catalog profile it proved (None: never proved)
    vram_mib: int
    int8_tops: float | None  # the profile's peak dense int8 throughput (catalog)
    region: str | None
    host: str
    network: str | None
    verified: bool
    verified_since: dt.datetime | None  # start of its current verified stretch
    online: bool  # heard from recently
    free: bool  # in no cluster
    proof_clear: bool  # owes no proof; passed one since its last cluster


@dataclass(frozen=True, slots=True)
class Placement:
    devices: tuple[Candidate, ...]
    scope: str  # the widest thing the chosen devices share: host | network | region | any

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request cannot be placed: `constraint` is the first that fewer than
    `wanted` devices got past; `fit` is how many did."""

    constraint: str
    wanted: int
    fit: int
    reason: str

    def __bool__(self) -> bool:
        return False


Check = tuple[str, str, Callable[[Candidate], bool]]


def _checks(request: ClusterRequest, now: dt.datetime) -> list[Check]:
    """(constraint name, what it asks, test) in the order they are applied."""
    r = request
    checks: list[Check] = []
    if r.gpu_model is not None:
        checks.append(("gpu_model", f"proven as {r.gpu_model}", lambda c: c.profile == r.gpu_model))
    if r.min_vram_mib is not None:
        vram = r.min_vram_mib
        checks.append(("min_vram_mib", f"at least {vram} MiB", lambda c: c.vram_mib >= vram))
    if r.min_int8_tops is not None:
        tops = r.min_int8_tops
        checks.append(
            (
                "min_int8_tops",
                f"at least {tops:g} int8 TOPS",
                lambda c: c.int8_tops is not None and c.int8_tops >= tops,
            )
        )
    if r.region is not None:
        checks.append(("region", f"in {r.region}", lambda c: c.region == r.region))
    checks.append(("verified", "verified", lambda c: c.verified))
    if r.min_verified_hours > 0:
        since = now - dt.timedelta(hours=r.min_verified_hours)
        checks.append(
            (
                "min_verified_hours",
                f"verified for {r.min_verified_hours:g} h",
                lambda c: c.verified_since is not None and c.verified_since <= since,
            )
        )
    checks.append(("online", "online", lambda c: c.online))
    checks.append(("free", "free (in no other cluster)", lambda c: c.free))
    checks.append(("proof_clear", "clear of proofs owed", lambda c: c.proof_clear))
    return checks


def widest_scope(max_latency_ms: float | None, count: int) -> str | None:
    """The widest scope whose estimated latency is within the limit (None: none is)."""
    if max_latency_ms is None or count == 1:
        return "any"
    allowed = [s for s in SCOPES if LATENCY_MS[s] <= max_latency_ms]
    return allowed[-1] if allowed else None


def _key(c: Candidate, scope: str) -> str | None:
    if scope == "host":
        return c.host
    if scope == "network":
        return c.network
    if scope == "region":
        return c.region
    return "*"


def _pick(group: Sequence[Candidate], count: int) -> tuple[Candidate, ...]:
    """`count` devices of one group, on as few hosts as possible: the fullest hosts
    first, then the host that fits the rest best."""
    by_host: dict[str, list[Candidate]] = defaultdict(list)
    for c in group:
        by_host[c.host].append(c)
    chosen: list[Candidate] = []
    hosts = sorted(by_host.values(), key=lambda h: (-len(h), h[0].id))
    while len(chosen) < count:
        need = count - len(chosen)
        # The smallest host that covers what is left, else the largest one there is.
        fitting = [h for h in hosts if len(h) >= need]
        host = min(fitting, key=lambda h: (len(h), h[0].id)) if fitting else hosts[0]
        hosts.remove(host)
        chosen.extend(sorted(host, key=lambda c: c.id)[:need])
    return tuple(chosen)


def _best_group(fit: Sequence[Candidate], count: int, scope: str) -> list[Candidate] | None:
    """The group (devices sharing `scope`) that fits `count` most tightly, or None."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in fit:
        key = _key(c, scope)
        if key is not None:
            groups[key].append(c)
    fitting = [g for g in groups.values() if len(g) >= count]
    if not fitting:
        return None
    return min(fitting, key=lambda g: (len(g), min(c.id for c in g)))


def place(
    request: ClusterRequest, candidates: Iterable[Candidate], now: dt.datetime
) -> Placement | Refusal:
    """The devices to reserve for `request`, or why there are not enough."""
    wanted = request.count
    fit = list(candidates)
    asked: list[str] = []
    for name, asks, test in _checks(request, now):
        fit = [c for c in fit if test(c)]
        asked.append(asks)
        if len(fit) < wanted:
            verb = "is" if len(fit) == 1 else "are"
            return Refusal(
                name,
                wanted,
                len(fit),
                f"{wanted} device(s) wanted; only {len(fit)} {verb} {', '.join(asked)}",
            )
    widest = widest_scope(request.max_latency_ms, wanted)
    if widest is None:
        return Refusal(
            "max_latency_ms",
            wanted,
            0,
            f"no two nodes can promise {request.max_latency_ms:g} ms "
            f"(same host: {LATENCY_MS['host']:g} ms)",
        )
    for scope in SCOPES[: SCOPES.index(widest) + 1]:
        group = _best_group(fit, wanted, scope)
        if group is not None:
            return Placement(_pick(group, wanted), scope)
    best = max(_largest(fit, s) for s in SCOPES[: SCOPES.index(widest) + 1])
    return Refusal(
        "max_latency_ms",
        wanted,
        best,
        f"{wanted} device(s) wanted within {request.max_latency_ms:g} ms of each other; "
        f"at most {best} fit within one {widest}",
    )


def _largest(fit: Sequence[Candidate], scope: str) -> int:
    sizes: dict[str | None, int] = defaultdict(int)
    for c in fit:
        sizes[_key(c, scope)] += 1
    sizes.pop(None, None)
    return max(sizes.values(), default=0)
