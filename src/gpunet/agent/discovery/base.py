"""What a discovery backend returns, and the interface every backend implements.

A result is a value, never an exception (the warehouse ``Success | Failure`` shape):

* found   - ``gpus`` is non-empty and ``refusal`` is None;
* nothing - ``gpus`` is empty, ``refusal`` is None, and ``note`` says why (no driver,
  not Apple silicon, ...): the caller may try another backend;
* refused - ``refusal`` says why and ``gpus`` is empty: the host looks inconsistent
  (T8: an NVML that lists GPUs the kernel does not know, duplicated UUIDs, ...). A
  refusal is final: ``auto_discover`` never falls back to another backend after one,
  and a refused result never carries a partial list, so nothing is silently trimmed.

Discovery runs on the supplier's own host, which an attacker fully controls, so it is a
consistency check for honest hosts and an early, cheap "no" for careless spoofing; it is
not a trust anchor. The coordinator trusts no claim until a proof of GPU passes (T1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gpunet.core.models import HardwareClaim

Backend = Literal["cuda", "mps", "cpu"]


@dataclass(frozen=True, slots=True)
class DiscoveredGpu:
    """A device as found on this host: the claim sent to the coordinator plus local facts.

    ``index`` is the backend's own ordinal (the CUDA/NVML index, 0 for MPS); ``model_key``
    is only a guess at the catalog entry: the coordinator decides which profile applies.
    """

    claim: HardwareClaim
    index: int
    backend: Backend
    model_key: str | None = None
    gpu_cores: int | None = None

    @property
    def gpu_uuid(self) -> str:
        return self.claim.gpu_uuid


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    """The outcome of one discovery; see the module docstring for its three states."""

    source: str
    gpus: tuple[DiscoveredGpu, ...] = ()
    refusal: str | None = None
    note: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.refusal is not None and self.gpus:
            raise ValueError("a refused discovery carries no devices")

    @classmethod
    def found(cls, source: str, gpus: Iterable[DiscoveredGpu],
              warnings: Iterable[str] = ()) -> DiscoveryResult:
        devices = tuple(gpus)
        if not devices:
            raise ValueError("found() needs at least one device; use nothing()")
        return cls(source=source, gpus=devices, warnings=tuple(warnings))

    @classmethod
    def nothing(cls, source: str, note: str) -> DiscoveryResult:
        return cls(source=source, note=note)

    @classmethod
    def refused(cls, source: str, reason: str) -> DiscoveryResult:
        return cls(source=source, refusal=reason)

    @property
    def ok(self) -> bool:
        """True when at least one device was found and nothing was refused."""
        return self.refusal is None and bool(self.gpus)

    @property
    def is_refused(self) -> bool:
        return self.refusal is not None

    def __bool__(self) -> bool:
        return self.ok

    def explain(self) -> str:
        """One line for a human: what was found, or why not."""
        if self.refusal is not None:
            return f"{self.source}: refused: {self.refusal}"
        if not self.gpus:
            return f"{self.source}: no device: {self.note or 'nothing found'}"
        models = ", ".join(f"#{g.index} {g.claim.model}" for g in self.gpus)
        return f"{self.source}: {len(self.gpus)} device(s): {models}"


class Discovery(Protocol):
    """A discovery backend.

    Contract: ``discover()`` never raises for an expected condition (missing driver or
    library, unreadable file, command failure); it returns ``nothing`` or ``refused``
    with the reason. Every claim it returns validates as a ``HardwareClaim``, and no two
    devices in one result share a GPU UUID or a PCI bus id (other than ``none``).
    """

    def discover(self) -> DiscoveryResult: ...
