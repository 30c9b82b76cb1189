"""The catalog of GPU models: sizes, budgets and reward weights, loaded from catalog.json.

The catalog is data so that operators recalibrate budgets or add a model without a code
change. Each figure carries its source; budgets say whether they were measured with
`gpunet calibrate` on the real part (`calibrated: true`) or are datasheet estimates.

`cpu-dev` is the development profile: tiny sizes, a NumPy prover, and never eligible for
anything unless the coordinator itself runs in development mode (`reward_eligible`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpunet.core.models import GpuVendor, HardwareClaim
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.verdict import Failure, FailureReason, Success, Verdict

DEV_PROFILE = "cpu-dev"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Data):
    expected_s: float = Field(gt=0)
    budget_s: float = Field(gt=0, le=600)
    open_budget_s: float = Field(gt=0, le=600)
    calibrated: bool
    source: str = Field(max_length=400)


class ModelProfile(_Data):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=48)
    name: str = Field(max_length=64)
    vendor: GpuVendor
    backend: Literal["cuda", "mps", "cpu"]
    match: tuple[str, ...] = Field(description="substrings of reported model names")
    vram_mib: int = Field(ge=1)
    peak_int8_tops: float | None = None
    peak_fp32_tflops: float | None = None
    mem_bandwidth_gbs: float | None = None
    # One direction of the link to host memory (PCIe x16 of the card's generation):
    # what a device that offloads part of the working set can stream back per second.
    host_link_gbs: float | None = None
    reward_weight: float = Field(ge=0)
    dev_only: bool = False
    params: ChallengeParams
    budget: Budget
    sources: dict[str, str]


class Catalog(_Data):
    version: int
    protocol: str
    models: tuple[ModelProfile, ...]

    def get(self, key: str) -> ModelProfile | None:
        return next((m for m in self.models if m.key == key), None)

    def for_claim(self, claim: HardwareClaim) -> ModelProfile | None:
        """The profile a claimed device is challenged with (longest match wins, so that
        "H100 PCIe" is not taken for a generic "H100")."""
        best: tuple[int, ModelProfile] | None = None
        for m in self.models:
            if m.vendor != claim.vendor:
                continue
            for pattern in m.match:
                if pattern.lower() in claim.model.lower() and (
                    best is None or len(pattern) > best[0]
                ):
                    best = (len(pattern), m)
        return best[1] if best else None


def reward_eligible(profile: ModelProfile, *, development: bool) -> bool:
    """Whether a device verified under `profile` may count for supply, rewards, scheduling."""
    if profile.dev_only:
        return development
    return profile.reward_weight > 0


def check_eligible(profile: ModelProfile | None, *, development: bool) -> Verdict:
    if profile is None:
        return Failure(FailureReason.UNKNOWN_PROFILE, "model not in the catalog")
    if not reward_eligible(profile, development=development):
        return Failure(FailureReason.NOT_ELIGIBLE, f"{profile.key} counts only in development")
    return Success()


def parse_catalog(text: str) -> Catalog:
    return Catalog.model_validate(json.loads(text))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The packaged catalog.json."""
    return parse_catalog(resources.files("gpunet.core.pog").joinpath("catalog.json").read_text())


def load_catalog(path: str | Path | None = None) -> Catalog:
    """An operator's catalog file, or the packaged one."""
    if path is None:
        return default_catalog()
    return parse_catalog(Path(path).read_text())
