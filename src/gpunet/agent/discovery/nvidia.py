"""NVIDIA discovery: NVML, cross-checked against the kernel (T8).

Refusal rules (any one refuses the whole discovery, with every reason found):

* NVML lists more GPUs than the NVIDIA driver (``/proc``) or the PCI core (``/sys``)
  knows, or either tree is missing while NVML reports GPUs;
* two NVML devices share a UUID or a PCI bus id;
* an NVML device's bus id has no driver entry or no NVIDIA GPU on the PCI bus;
* the driver's UUID or model for that bus id differs from NVML's;
* a reported value does not fit a ``HardwareClaim``.

Nothing is trimmed: a host that is partly inconsistent is reported as such, so the
owner fixes it rather than enrolling a subset that hides the problem. The claim carries
the bus id in kernel form (``0000:17:00.0``) and VRAM in MiB rounded down.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from gpunet.agent.discovery.base import DiscoveredGpu, DiscoveryResult
from gpunet.agent.discovery.fingerprint import FingerprintUnavailable, local_host_fingerprint
from gpunet.agent.discovery.kernel import (
    PROC_GPUS,
    SYS_PCI_DEVICES,
    KernelView,
    canonical_bus_id,
    read_kernel_view,
)
from gpunet.agent.discovery.model_keys import guess_model_key
from gpunet.agent.discovery.nvml import (
    NvmlDevice,
    NvmlSnapshot,
    NvmlSource,
    NvmlUnavailable,
    PynvmlSource,
)
from gpunet.core.models import GpuVendor, HardwareClaim

SOURCE = "nvidia"
MIB = 1024 * 1024
MAX_REASONS = 8


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _duplicates(values: list[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def consistency_problems(snapshot: NvmlSnapshot, kernel: KernelView) -> list[str]:
    """Every reason NVML and the kernel disagree; empty when they agree."""
    devices = snapshot.devices
    problems: list[str] = []
    bus_ids = [canonical_bus_id(d.pci_bus_id) for d in devices]
    for d, bus in zip(devices, bus_ids, strict=True):
        if bus is None:
            problems.append(f"GPU #{d.index} has a malformed PCI bus id {d.pci_bus_id!r}")
    for uuid in _duplicates([d.uuid.strip().lower() for d in devices]):
        problems.append(f"NVML reports UUID {uuid} for more than one GPU")
    for bus in _duplicates([b for b in bus_ids if b is not None]):
        problems.append(f"NVML reports PCI bus id {bus} for more than one GPU")

    driver, pci = kernel.driver_gpus, kernel.pci_gpus
    if driver is None:
        problems.append(f"NVML reports {len(devices)} GPU(s) but the NVIDIA kernel driver "
                        f"lists none (no /{PROC_GPUS})")
    elif len(devices) > len(driver):
        problems.append(f"NVML reports {len(devices)} GPU(s) but the NVIDIA kernel driver "
                        f"knows {len(driver)} (is an NVML shim installed?)")
    if pci is None:
        problems.append(f"cannot cross-check with the PCI bus (no /{SYS_PCI_DEVICES})")
    elif len(devices) > len(pci):
        problems.append(f"NVML reports {len(devices)} GPU(s) but the PCI bus has "
                        f"{len(pci)} NVIDIA GPU(s)")

    for d, bus in zip(devices, bus_ids, strict=True):
        if bus is None:
            continue
        if pci is not None and bus not in pci:
            problems.append(f"GPU #{d.index} ({bus}) is not an NVIDIA GPU on the PCI bus")
        if driver is None:
            continue
        entry = driver.get(bus)
        if entry is None:
            problems.append(f"GPU #{d.index} ({bus}) has no kernel driver entry")
            continue
        if entry.uuid is not None and not _same_text(entry.uuid, d.uuid):
            problems.append(f"GPU #{d.index} ({bus}): NVML UUID {d.uuid} but the kernel "
                            f"says {entry.uuid}")
        if entry.model is not None and not _same_text(entry.model, d.name):
            problems.append(f"GPU #{d.index} ({bus}): NVML model {d.name!r} but the "
                            f"kernel says {entry.model!r}")
    return problems


def build_gpu(device: NvmlDevice, driver_version: str, fingerprint: str) -> DiscoveredGpu:
    """The claim for one NVML device; raises ValidationError on a value it cannot hold."""
    vram_mib = device.memory_total_bytes // MIB
    claim = HardwareClaim(
        vendor=GpuVendor.NVIDIA,
        model=device.name,
        vram_mib=vram_mib,
        gpu_uuid=device.uuid.strip(),
        pci_bus_id=canonical_bus_id(device.pci_bus_id) or device.pci_bus_id,
        driver_version=driver_version.strip(),
        host_fingerprint=fingerprint,
    )
    return DiscoveredGpu(claim=claim, index=device.index, backend="cuda",
                         model_key=guess_model_key("nvidia", claim.model, vram_mib))


def _summarise(problems: list[str]) -> str:
    shown = problems[:MAX_REASONS]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


class NvidiaDiscovery:
    """NVML discovery with the kernel cross-check; every input is injectable."""

    def __init__(self, nvml: NvmlSource | None = None, *, root: Path = Path("/"),
                 host_fingerprint: str | None = None) -> None:
        self._nvml = nvml if nvml is not None else PynvmlSource()
        self._root = root
        self._fingerprint = host_fingerprint

    def discover(self) -> DiscoveryResult:
        try:
            snapshot = self._nvml.read()
        except NvmlUnavailable as exc:
            return DiscoveryResult.nothing(SOURCE, str(exc))
        if not snapshot.devices:
            return DiscoveryResult.nothing(SOURCE, "NVML reports no GPUs")
        kernel = read_kernel_view(self._root)
        problems = consistency_problems(snapshot, kernel)
        if problems:
            return DiscoveryResult.refused(SOURCE, _summarise(problems))
        try:
            fingerprint = self._fingerprint or local_host_fingerprint(root=self._root)
        except FingerprintUnavailable as exc:
            return DiscoveryResult.refused(SOURCE, str(exc))
        gpus = []
        for device in snapshot.devices:
            try:
                gpus.append(build_gpu(device, snapshot.driver_version, fingerprint))
            except ValidationError as exc:
                fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
                return DiscoveryResult.refused(
                    SOURCE, f"GPU #{device.index} reports values that are not a valid "
                            f"hardware claim ({fields})")
        return DiscoveryResult.found(SOURCE, gpus, warnings=kernel.problems)
