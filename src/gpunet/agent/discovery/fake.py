"""A discovery that returns what it is given, for tests of other components."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from gpunet.agent.discovery.base import Backend, DiscoveredGpu, DiscoveryResult
from gpunet.core.models import GpuVendor, HardwareClaim

FAKE_FINGERPRINT = "f" * 64
_VENDOR_BACKEND: dict[GpuVendor, Backend] = {
    GpuVendor.NVIDIA: "cuda", GpuVendor.APPLE: "mps", GpuVendor.CPU: "cpu",
}


def fake_gpu(index: int = 0, *, model: str = "NVIDIA H100 80GB HBM3",
             vendor: GpuVendor = GpuVendor.NVIDIA, vram_mib: int = 81559,
             gpu_uuid: str | None = None, pci_bus_id: str | None = None,
             driver_version: str = "550.54.15", host_fingerprint: str = FAKE_FINGERPRINT,
             model_key: str | None = "h100-sxm") -> DiscoveredGpu:
    """A valid device with deterministic ids derived from ``index`` and the fingerprint."""
    seed = hashlib.sha256(f"{host_fingerprint}/{index}".encode()).hexdigest()
    if gpu_uuid is None:
        gpu_uuid = f"GPU-{seed[:8]}-{seed[8:12]}-{seed[12:16]}-{seed[16:20]}-{seed[20:32]}"
    if pci_bus_id is None:
        pci_bus_id = "none" if vendor != GpuVendor.NVIDIA else f"0000:{index + 0x17:02x}:00.0"
    claim = HardwareClaim(vendor=vendor, model=model, vram_mib=vram_mib, gpu_uuid=gpu_uuid,
                          pci_bus_id=pci_bus_id, driver_version=driver_version,
                          host_fingerprint=host_fingerprint)
    return DiscoveredGpu(claim=claim, index=index, backend=_VENDOR_BACKEND.get(vendor, "cpu"),
                         model_key=model_key)


class FakeDiscovery:
    """Returns ``gpus`` (found), nothing with ``note``, or a refusal with ``refusal``."""

    def __init__(self, gpus: Iterable[DiscoveredGpu] = (), *, refusal: str | None = None,
                 note: str = "fake discovery has no devices", source: str = "fake") -> None:
        self.gpus = tuple(gpus)
        self.refusal = refusal
        self.note = note
        self.source = source
        self.calls = 0

    def discover(self) -> DiscoveryResult:
        self.calls += 1
        if self.refusal is not None:
            return DiscoveryResult.refused(self.source, self.refusal)
        if not self.gpus:
            return DiscoveryResult.nothing(self.source, self.note)
        return DiscoveryResult.found(self.source, self.gpus)
