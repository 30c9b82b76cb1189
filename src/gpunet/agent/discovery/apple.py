"""Apple silicon discovery from the system's own reports and PyTorch's MPS backend.

Facts come from ``sysctl`` (CPU brand, unified memory size, OS version) and
``system_profiler SPDisplaysDataType -json`` (GPU model and core count), all through
an injectable command runner. The GPU is usable only if PyTorch's MPS backend is
available (the prover runs on it); torch is imported lazily and its absence simply
means "not available".

Identity: an Apple GPU has no UUID or PCI address. ``gpu_uuid`` is
``APPLE-`` + the first 32 hex digits of sha256(context || IOPlatformUUID), stable for
the machine and not revealing its platform UUID; ``pci_bus_id`` is ``none``. VRAM is
the unified memory size, which the GPU shares with the CPU.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gpunet.agent.discovery.base import DiscoveredGpu, DiscoveryResult
from gpunet.agent.discovery.commands import CommandError, CommandRunner, run_command
from gpunet.agent.discovery.fingerprint import (
    HostFacts,
    host_fingerprint,
    read_platform_uuid,
)
from gpunet.agent.discovery.model_keys import guess_model_key
from gpunet.core.models import GpuVendor, HardwareClaim

SOURCE = "apple"
MIB = 1024 * 1024
UUID_CONTEXT = b"gpunet-apple-gpu-uuid-v1\n"
SYSCTL = "/usr/sbin/sysctl"
SYSTEM_PROFILER = "/usr/sbin/system_profiler"


def apple_gpu_uuid(platform_uuid: str) -> str:
    """The stable GPU id derived from the IOPlatformUUID (see the module docstring)."""
    digest = hashlib.sha256(UUID_CONTEXT + platform_uuid.strip().upper().encode())
    return "APPLE-" + digest.hexdigest()[:32]


def torch_mps_available() -> bool:
    """Whether PyTorch's MPS backend can run here; False if torch is not installed."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.backends.mps.is_available())
    except (AttributeError, RuntimeError):
        return False


def _gpu_entry(report: str) -> dict[str, Any] | None:
    """The first Apple GPU in a ``system_profiler SPDisplaysDataType -json`` report."""
    try:
        data = json.loads(report)
    except ValueError:
        return None
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("sppci_model", "")).startswith("Apple"):
            return entry
    return None


def _cores(entry: dict[str, Any]) -> int | None:
    try:
        cores = int(str(entry.get("sppci_cores", "")).strip())
    except ValueError:
        return None
    return cores if cores > 0 else None


class AppleDiscovery:
    """Discovery of the single integrated GPU of an Apple silicon Mac."""

    def __init__(self, *, runner: CommandRunner = run_command,
                 mps_available: Callable[[], bool] = torch_mps_available,
                 system: str | None = None, machine: str | None = None) -> None:
        self._run = runner
        self._mps_available = mps_available
        self._system = system or platform.system()
        self._machine = machine or platform.machine()

    def _sysctl(self, name: str) -> str:
        return self._run([SYSCTL, "-n", name]).strip()

    def discover(self) -> DiscoveryResult:
        if self._system != "Darwin":
            return DiscoveryResult.nothing(SOURCE, "not macOS")
        try:
            brand = self._sysctl("machdep.cpu.brand_string")
            memsize = int(self._sysctl("hw.memsize"))
            os_version = self._sysctl("kern.osproductversion")
            report = self._run([SYSTEM_PROFILER, "SPDisplaysDataType", "-json"])
        except (CommandError, ValueError) as exc:
            return DiscoveryResult.nothing(SOURCE, f"cannot read system reports: {exc}")
        if not brand.startswith("Apple"):
            return DiscoveryResult.nothing(SOURCE, f"not Apple silicon ({brand[:64]!r})")
        entry = _gpu_entry(report)
        if entry is None:
            return DiscoveryResult.nothing(SOURCE, "system_profiler lists no Apple GPU")
        if not self._mps_available():
            return DiscoveryResult.nothing(
                SOURCE, "PyTorch's MPS backend is not available (install torch for macOS)")
        platform_uuid = read_platform_uuid(self._run)
        if platform_uuid is None:
            return DiscoveryResult.refused(SOURCE, "ioreg did not report an IOPlatformUUID")
        model = str(entry["sppci_model"]).strip()
        fingerprint = host_fingerprint(HostFacts(platform_uuid, self._system, self._machine))
        try:
            claim = HardwareClaim(
                vendor=GpuVendor.APPLE, model=model, vram_mib=memsize // MIB,
                gpu_uuid=apple_gpu_uuid(platform_uuid), pci_bus_id="none",
                driver_version=os_version, host_fingerprint=fingerprint,
            )
        except ValidationError as exc:
            fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
            return DiscoveryResult.refused(
                SOURCE, f"system reports are not a valid hardware claim ({fields})")
        gpu = DiscoveredGpu(claim=claim, index=0, backend="mps", gpu_cores=_cores(entry),
                            model_key=guess_model_key("apple", model, claim.vram_mib))
        return DiscoveryResult.found(SOURCE, [gpu])
