"""What the coordinator pays by: the public schedule, the incident policy and weights.

Built once at start-up from settings. The schedule file is public data; settings may
override its epoch and slot lengths, and the schedule published by the explorer (and
hashed into every closed epoch) is the one in force after those overrides, so anyone
can recompute an epoch from public inputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any

from gpunet.core.pog import Catalog
from gpunet.core.pog.catalog import ModelProfile, reward_eligible
from gpunet.core.rewards import EmissionSchedule, IncidentPolicy, dump_schedule, load_schedule
from gpunet.server.settings import Settings


@dataclass(frozen=True)
class RewardConfig:
    schedule: EmissionSchedule
    published: dict[str, Any]  # the canonical schedule in force (dump_schedule)
    schedule_sha256: str
    policy: IncidentPolicy
    weights: dict[str, Fraction]  # catalog profile key -> exact reward weight
    settle_s: float
    # Close an epoch only once a roll-call started after its end has resolved.
    await_rollcall: bool = False


def exact_weight(value: float) -> Fraction:
    """The catalog's decimal weight, exactly as written (1.25 -> 5/4, 0.6 -> 3/5): the
    shortest repr of a float is its literal, so no binary rounding enters the split."""
    return Fraction(repr(float(value))).limit_denominator(10**6)


def catalog_weights(
    catalog: Catalog, *, development: bool, dev_weight: float = 0.0
) -> dict[str, Fraction]:
    """Each profile's weight; `dev_weight` stands in for a development-only profile's
    catalog weight, and only in development (reward_eligible refuses them otherwise)."""

    def weight(p: ModelProfile) -> Fraction:
        if not reward_eligible(p, development=development):
            return Fraction(0)
        return exact_weight(dev_weight if p.dev_only else p.reward_weight)

    return {p.key: weight(p) for p in catalog.models}


def schedule_text(settings: Settings) -> str:
    if settings.rewards_schedule_path is not None:
        return settings.rewards_schedule_path.read_text()
    return resources.files("gpunet.core.rewards").joinpath("schedule.json").read_text()


def load_config(settings: Settings, catalog: Catalog) -> RewardConfig:
    raw = json.loads(schedule_text(settings))
    if settings.rewards_epoch_seconds is not None:
        raw["epoch_seconds"] = settings.rewards_epoch_seconds
    if settings.rewards_slot_seconds is not None:
        raw["slot_seconds"] = settings.rewards_slot_seconds
    schedule = load_schedule(raw)
    published = dump_schedule(schedule)
    digest = hashlib.sha256(
        json.dumps(published, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return RewardConfig(
        schedule=schedule,
        published=published,
        schedule_sha256=digest,
        policy=IncidentPolicy(
            lookback_slots=settings.incident_lookback_slots,
            max_credit_slots=settings.incident_max_credit_slots,
        ),
        weights=catalog_weights(
            catalog, development=settings.development, dev_weight=settings.dev_reward_weight
        ),
        settle_s=settings.rewards_settle_s,
        await_rollcall=settings.await_rollcall,
    )
