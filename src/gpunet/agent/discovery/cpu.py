"""The ``cpu-dev`` profile: synthetic devices for development and CI, which have no GPU.

They exercise the whole protocol with the CPU prover and are never reward-eligible
outside development mode (the coordinator enforces that; the ``cpu`` vendor and the
``cpu-dev`` model make them unmistakable). ``auto_discover`` returns them only when
explicitly allowed.

Each device's UUID is ``CPU-`` + 32 hex digits of sha256(context || host fingerprint ||
index): stable across restarts on one host, distinct across hosts and indices.
"""

from __future__ import annotations

import hashlib
import platform

from gpunet.agent.discovery.base import DiscoveredGpu, DiscoveryResult
from gpunet.agent.discovery.fingerprint import FingerprintUnavailable, local_host_fingerprint
from gpunet.core.models import GpuVendor, HardwareClaim

SOURCE = "cpu-dev"
MODEL = "cpu-dev"
DEFAULT_VRAM_MIB = 1024
MAX_DEVICES = 64
UUID_CONTEXT = b"gpunet-cpu-dev-uuid-v1\n"


def cpu_dev_uuid(host_fingerprint: str, index: int) -> str:
    digest = hashlib.sha256(UUID_CONTEXT + f"{host_fingerprint}\n{index}".encode())
    return "CPU-" + digest.hexdigest()[:32]


def _driver_version() -> str:
    return "python-" + platform.python_version()


class CpuDevDiscovery:
    """``count`` synthetic CPU devices on this host."""

    def __init__(self, count: int = 1, *, host_fingerprint: str | None = None,
                 vram_mib: int = DEFAULT_VRAM_MIB) -> None:
        if not 1 <= count <= MAX_DEVICES:
            raise ValueError(f"cpu-dev device count must be between 1 and {MAX_DEVICES}")
        self._count = count
        self._fingerprint = host_fingerprint
        self._vram_mib = vram_mib

    def discover(self) -> DiscoveryResult:
        try:
            fingerprint = self._fingerprint or local_host_fingerprint()
        except FingerprintUnavailable as exc:
            return DiscoveryResult.refused(SOURCE, str(exc))
        gpus = [
            DiscoveredGpu(
                claim=HardwareClaim(
                    vendor=GpuVendor.CPU, model=MODEL, vram_mib=self._vram_mib,
                    gpu_uuid=cpu_dev_uuid(fingerprint, index), pci_bus_id="none",
                    driver_version=_driver_version(), host_fingerprint=fingerprint,
                ),
                index=index, backend="cpu", model_key=MODEL,
            )
            for index in range(self._count)
        ]
        return DiscoveryResult.found(SOURCE, gpus)
