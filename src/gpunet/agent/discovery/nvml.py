"""The NVML adapter: the only place that calls pynvml (nvidia-ml-py).

``NvmlSource.read()`` returns a plain snapshot, so discovery logic never touches
NVML handles and tests pass a fake source. ``pynvml`` is imported lazily: a host
without the package or the driver simply has no NVIDIA GPUs to report.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here (package, library or driver missing, or it failed)."""


@dataclass(frozen=True, slots=True)
class NvmlDevice:
    index: int
    name: str
    memory_total_bytes: int
    uuid: str
    pci_bus_id: str


@dataclass(frozen=True, slots=True)
class NvmlSnapshot:
    driver_version: str
    devices: tuple[NvmlDevice, ...]


class NvmlSource(Protocol):
    def read(self) -> NvmlSnapshot:
        """Everything discovery needs, in one call; raises NvmlUnavailable."""
        ...


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class PynvmlSource:
    """Reads the real NVML through nvidia-ml-py."""

    def read(self) -> NvmlSnapshot:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable("nvidia-ml-py is not installed") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML did not initialise: {exc}") from exc
        try:
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            devices = []
            for index in range(int(pynvml.nvmlDeviceGetCount())):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                devices.append(NvmlDevice(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    pci_bus_id=_text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                ))
            return NvmlSnapshot(driver_version=driver, devices=tuple(devices))
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML query failed: {exc}") from exc
        finally:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
