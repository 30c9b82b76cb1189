"""Models shared by the coordinator, the agent and the CLI.

Every string here is bounded and pattern-checked: these models are the first thing that
touches hostile input (T4), so they reject rather than sanitise.
"""

from __future__ import annotations

import enum
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gpunet.core.errors import InvalidInput


class DeviceStatus(enum.StrEnum):
    """Lifecycle of a device; transitions live in one function on the coordinator."""

    PENDING = "pending"
    VERIFIED = "verified"
    SUSPECT = "suspect"
    SUSPENDED = "suspended"
    # Taken out of service by its owner (or replaced by a new key): never counts, is
    # never challenged, cannot authenticate; its history stays public.
    RETIRED = "retired"


class GpuVendor(enum.StrEnum):
    NVIDIA = "nvidia"
    APPLE = "apple"
    AMD = "amd"
    CPU = "cpu"  # development profile only


# Printable ASCII only, no quotes or backslashes: enough for model names and versions,
# and nothing that needs escaping anywhere it is shown.
SafeText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()+/:-]*$",
    ),
]
GpuUuid = Annotated[
    str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
]
PciBusId = Annotated[
    str,
    StringConstraints(
        max_length=32, pattern=r"^([0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$|^none$"
    ),
]
HostFingerprint = Annotated[
    str, StringConstraints(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
]
VersionText = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
]
Region = Annotated[
    str, StringConstraints(min_length=2, max_length=32, pattern=r"^[a-z]{2}(-[a-z0-9]{1,12}){0,2}$")
]
Label = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=48, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$"
    ),
]

MAX_VRAM_MIB = 4 * 1024 * 1024  # 4 TiB: far above any single accelerator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HardwareClaim(Strict):
    """What an agent says a device is. Nothing here is trusted until a proof passes."""

    vendor: GpuVendor
    model: SafeText
    # Strict: JSON `true` is not 1 (pydantic would otherwise coerce it).
    vram_mib: int = Field(ge=1, le=MAX_VRAM_MIB, strict=True)
    gpu_uuid: GpuUuid
    pci_bus_id: PciBusId
    driver_version: VersionText
    host_fingerprint: HostFingerprint


M = TypeVar("M", bound=BaseModel)


def parse_json(model: type[M], body: bytes) -> M:
    """Hostile JSON into `model`, or InvalidInput naming (at most five) bad fields."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidInput(f"the request is not valid: {problems}"[:500]) from exc
