"""Cross-checks of what a host reports about its GPUs against what was enrolled.

Spoofing tools make NVML list more (or different) GPUs than the machine has. The kernel
driver's own listing (/proc/driver/nvidia/gpus/<bus id>/information) is much harder to
fake from user space, so a device must appear there with the same bus id, model and
UUID, NVML may not list more devices than the kernel does, and no UUID or bus id may be
reported twice (on the host or, via `seen_elsewhere`, anywhere else in the network).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field

from gpunet.core.models import GpuUuid, GpuVendor, HardwareClaim, PciBusId, SafeText
from gpunet.core.pog.verdict import Failure, FailureReason, Success, Verdict

MAX_HOST_GPUS = 64
# NVML reports usable memory, which moves by a few MiB across drivers (ECC, reserved).
VRAM_TOLERANCE = 0.01


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportedGpu(_M):
    """One GPU as the agent's discovery (NVML / Metal) sees it."""

    gpu_uuid: GpuUuid
    pci_bus_id: PciBusId
    model: SafeText
    vram_mib: int = Field(ge=1, le=4 * 1024 * 1024)


class KernelGpu(_M):
    """One entry of /proc/driver/nvidia/gpus (Bus Location, Model, GPU UUID lines)."""

    pci_bus_id: PciBusId
    model: SafeText
    gpu_uuid: GpuUuid | None = None


class HardwareReport(_M):
    """What the agent reports now for the device `device_uuid` and its host."""

    vendor: GpuVendor
    device_uuid: GpuUuid
    devices: tuple[ReportedGpu, ...] = Field(min_length=1, max_length=MAX_HOST_GPUS)
    kernel_gpus: tuple[KernelGpu, ...] = Field(default=(), max_length=MAX_HOST_GPUS)


def _bus(b: str) -> str:
    """Normalise a PCI bus id: lower case, 8-hex-digit domain ("0000:01:00.0")."""
    b = b.lower()
    parts = b.split(":")
    if len(parts) == 3:
        return f"{int(parts[0], 16):08x}:{parts[1]}:{parts[2]}"
    if len(parts) == 2:
        return f"00000000:{b}"
    return b


def _same_model(a: str, b: str) -> bool:
    a, b = a.lower().replace("nvidia ", ""), b.lower().replace("nvidia ", "")
    return a in b or b in a


def check_hardware(
    enrolled: HardwareClaim,
    reported: HardwareReport,
    *,
    seen_elsewhere: Collection[str] = (),
) -> Verdict:
    """Success when the device is still the one enrolled and the host looks unspoofed.

    `seen_elsewhere`: UUIDs enrolled for *other* devices (any owner, any host).
    """
    if reported.device_uuid != enrolled.gpu_uuid:
        return Failure(FailureReason.UUID_CHANGED, "device reports another GPU UUID")
    uuids = Counter(d.gpu_uuid.lower() for d in reported.devices)
    buses = Counter(_bus(d.pci_bus_id) for d in reported.devices if d.pci_bus_id != "none")
    if any(c > 1 for c in uuids.values()) or any(c > 1 for c in buses.values()):
        return Failure(FailureReason.DUPLICATE_DEVICE, "host lists a UUID or bus id twice")
    if enrolled.gpu_uuid.lower() in {u.lower() for u in seen_elsewhere}:
        return Failure(FailureReason.DUPLICATE_DEVICE, "UUID enrolled for another device")
    me = next((d for d in reported.devices if d.gpu_uuid == enrolled.gpu_uuid), None)
    if me is None:
        return Failure(FailureReason.UUID_CHANGED, "enrolled UUID missing from the host list")
    if reported.vendor != enrolled.vendor or not _same_model(me.model, enrolled.model):
        return Failure(
            FailureReason.MODEL_CHANGED, f"now {me.model!r}, enrolled {enrolled.model!r}"
        )
    if abs(me.vram_mib - enrolled.vram_mib) > VRAM_TOLERANCE * enrolled.vram_mib:
        return Failure(
            FailureReason.VRAM_CHANGED, f"now {me.vram_mib} MiB, enrolled {enrolled.vram_mib}"
        )
    if _bus(me.pci_bus_id) != _bus(enrolled.pci_bus_id):
        return Failure(FailureReason.UUID_CHANGED, "device moved to another PCI bus id")
    if reported.vendor == GpuVendor.NVIDIA:
        return _check_kernel(me, reported)
    return Success()


def _check_kernel(me: ReportedGpu, reported: HardwareReport) -> Verdict:
    kernel = {_bus(k.pci_bus_id): k for k in reported.kernel_gpus}
    if len(kernel) != len(reported.kernel_gpus):
        return Failure(FailureReason.DUPLICATE_DEVICE, "kernel listing repeats a bus id")
    if len(reported.devices) > len(kernel):
        return Failure(
            FailureReason.SPOOFED_ENUMERATION,
            f"NVML lists {len(reported.devices)} GPUs, the driver {len(kernel)}",
        )
    for d in reported.devices:
        k = kernel.get(_bus(d.pci_bus_id))
        if k is None:
            return Failure(FailureReason.NOT_IN_KERNEL_LIST, f"{d.pci_bus_id} not in the driver")
        if not _same_model(d.model, k.model):
            return Failure(FailureReason.NOT_IN_KERNEL_LIST, f"{d.pci_bus_id}: model differs")
        if k.gpu_uuid is not None and k.gpu_uuid.lower() != d.gpu_uuid.lower():
            return Failure(FailureReason.NOT_IN_KERNEL_LIST, f"{d.pci_bus_id}: UUID differs")
    return Success()


def parse_kernel_information(text: str) -> dict[str, str]:
    """Fields of one /proc/driver/nvidia/gpus/<bus>/information file ("Key: value")."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def kernel_gpu_from_information(text: str) -> KernelGpu:
    info = parse_kernel_information(text)
    uuid = info.get("GPU UUID")
    return KernelGpu(
        pci_bus_id=info.get("Bus Location", "none"),
        model=info.get("Model", "unknown"),
        gpu_uuid=uuid if uuid and uuid != "N/A" else None,
    )
