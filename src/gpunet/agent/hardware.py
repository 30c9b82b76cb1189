"""What the agent reports with each proof: the host's GPUs as discovery sees them and,
on NVIDIA, as the kernel lists them, so the coordinator can cross-check both (T8)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gpunet.agent.discovery import DiscoveredGpu
from gpunet.agent.discovery.kernel import read_kernel_view
from gpunet.core.models import GpuVendor
from gpunet.core.pog import HardwareReport, KernelGpu, ReportedGpu


def hardware_report(
    gpus: Sequence[DiscoveredGpu], device_uuid: str, *, root: Path = Path("/")
) -> HardwareReport:
    vendor = next(g.claim.vendor for g in gpus if g.gpu_uuid == device_uuid)
    kernel: tuple[KernelGpu, ...] = ()
    if vendor == GpuVendor.NVIDIA:
        view = read_kernel_view(root)
        kernel = tuple(
            KernelGpu(pci_bus_id=k.bus_id, model=k.model or "unknown", gpu_uuid=k.uuid)
            for k in (view.driver_gpus or {}).values()
        )
    return HardwareReport(
        vendor=vendor,
        device_uuid=device_uuid,
        devices=tuple(
            ReportedGpu(
                gpu_uuid=g.gpu_uuid,
                pci_bus_id=g.claim.pci_bus_id,
                model=g.claim.model,
                vram_mib=g.claim.vram_mib,
            )
            for g in gpus
        ),
        kernel_gpus=kernel,
    )
