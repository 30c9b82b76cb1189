"""NVIDIA discovery against a fake NVML and a fake kernel tree (/proc + /sys)."""

from __future__ import annotations

import platform
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpunet.agent.discovery import (
    HostFacts,
    NvidiaDiscovery,
    NvmlDevice,
    NvmlSnapshot,
    NvmlUnavailable,
    PynvmlSource,
    host_fingerprint,
)
from gpunet.agent.discovery.kernel import canonical_bus_id, parse_information, read_kernel_view
from gpunet.core.models import GpuVendor, HardwareClaim

MACHINE_ID = "0123456789abcdef0123456789abcdef"
H100 = "NVIDIA H100 80GB HBM3"
H100_BYTES = 85520809984  # what NVML reports for an H100 SXM: 81559 MiB and a remainder


def uuid_for(i: int) -> str:
    return f"GPU-{i:08x}-1111-2222-3333-444444444444"


@dataclass
class KernelGpuSpec:
    bus: str
    model: str = H100
    uuid: str | None = None


def make_host(root: Path, gpus: list[KernelGpuSpec], *, proc: bool = True,
              sys_tree: bool = True) -> Path:
    """A fake root with machine-id, the NVIDIA driver's /proc tree and the PCI bus."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/machine-id").write_text(MACHINE_ID + "\n")
    if proc:
        base = root / "proc/driver/nvidia/gpus"
        base.mkdir(parents=True)
        for i, g in enumerate(gpus):
            (base / g.bus).mkdir()
            uuid = g.uuid if g.uuid is not None else uuid_for(i)
            (base / g.bus / "information").write_text(
                f"Model: \t\t {g.model}\nIRQ:   \t\t 16\nGPU UUID: \t {uuid}\n"
                f"Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\n"
                f"Bus Location: \t {g.bus}\nDevice Minor: \t {i}\nGPU Excluded:\t No\n"
            )
    if sys_tree:
        pci = root / "sys/bus/pci/devices"
        pci.mkdir(parents=True)
        devices = [(g.bus, "0x10de", "0x030200") for g in gpus]
        devices += [("0000:00:02.0", "0x8086", "0x030000"),   # Intel iGPU
                    ("0000:17:00.1", "0x10de", "0x040300"),   # NVIDIA HDMI audio
                    ("0000:00:1f.0", "0x8086", "0x060100")]   # ISA bridge
        for bus, vendor, cls in devices:
            (pci / bus).mkdir(exist_ok=True)
            (pci / bus / "vendor").write_text(vendor + "\n")
            (pci / bus / "class").write_text(cls + "\n")
    return root


def nvml_bus(kernel_bus: str) -> str:
    """NVML prints an 8-digit upper-case domain."""
    domain, rest = kernel_bus.split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}"


class FakeNvml:
    def __init__(self, devices: list[NvmlDevice] | None = None,
                 driver: str = "550.54.15", error: str | None = None) -> None:
        self.snapshot = NvmlSnapshot(driver_version=driver, devices=tuple(devices or ()))
        self.error = error

    def read(self) -> NvmlSnapshot:
        if self.error is not None:
            raise NvmlUnavailable(self.error)
        return self.snapshot


def nvml_device(index: int, bus: str, *, uuid: str | None = None, name: str = H100,
                memory: int = H100_BYTES) -> NvmlDevice:
    return NvmlDevice(index=index, name=name, memory_total_bytes=memory,
                      uuid=uuid or uuid_for(index), pci_bus_id=nvml_bus(bus))


def discover(root: Path, devices: list[NvmlDevice]):
    return NvidiaDiscovery(FakeNvml(devices), root=root).discover()


BUSES = ["0000:17:00.0", "0000:2a:00.0", "0000:3d:00.0", "0000:63:00.0",
         "0000:ab:00.0", "0000:bd:00.0", "0000:cf:00.0", "0000:e1:00.0"]


def test_single_gpu_reaches_the_claim(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = discover(root, [nvml_device(0, BUSES[0])])

    assert result.ok and result.refusal is None
    [gpu] = result.gpus
    claim = gpu.claim
    assert claim.vendor is GpuVendor.NVIDIA
    assert claim.model == H100
    assert claim.gpu_uuid == uuid_for(0)
    assert claim.pci_bus_id == "0000:17:00.0"  # canonical kernel form, not NVML's
    assert claim.vram_mib == H100_BYTES // (1024 * 1024) == 81559
    assert claim.driver_version == "550.54.15"
    assert claim.host_fingerprint == host_fingerprint(
        HostFacts(MACHINE_ID, platform.system(), platform.machine()))
    assert gpu.index == 0 and gpu.backend == "cuda" and gpu.model_key == "h100-sxm"
    HardwareClaim.model_validate(claim.model_dump())  # round-trips through the schema


def test_vram_is_rounded_down_to_whole_mib(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = discover(root, [nvml_device(0, BUSES[0], memory=24 * 1024**3 + 1024**2 - 1)])
    assert result.gpus[0].claim.vram_mib == 24 * 1024


def test_eight_gpus_all_present_in_kernel(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(b) for b in BUSES])
    result = discover(root, [nvml_device(i, b) for i, b in enumerate(BUSES)])
    assert result.ok
    assert [g.claim.pci_bus_id for g in result.gpus] == BUSES
    assert len({g.claim.gpu_uuid for g in result.gpus}) == 8


def test_spoofed_nvml_with_eight_gpus_on_one_card_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = discover(root, [nvml_device(i, b) for i, b in enumerate(BUSES)])

    assert result.is_refused and not result.ok and not result
    assert result.gpus == ()  # never trimmed to the one real card
    assert "NVML reports 8 GPU(s) but the NVIDIA kernel driver knows 1" in result.refusal
    assert "PCI bus has 1 NVIDIA GPU(s)" in result.refusal
    assert "has no kernel driver entry" in result.refusal


def test_spoof_reusing_one_bus_id_and_uuid_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    clones = [nvml_device(i, BUSES[0], uuid=uuid_for(0)) for i in range(8)]
    result = discover(root, clones)
    assert result.is_refused
    assert f"UUID {uuid_for(0).lower()} for more than one GPU" in result.refusal
    assert "PCI bus id 0000:17:00.0 for more than one GPU" in result.refusal


def test_duplicated_uuid_is_refused_even_when_counts_match(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0]), KernelGpuSpec(BUSES[1])])
    devices = [nvml_device(0, BUSES[0]), nvml_device(1, BUSES[1], uuid=uuid_for(0))]
    result = discover(root, devices)
    assert result.is_refused
    assert "for more than one GPU" in result.refusal


def test_uuid_unknown_to_the_kernel_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    forged = "GPU-deadbeef-0000-0000-0000-000000000000"
    result = discover(root, [nvml_device(0, BUSES[0], uuid=forged)])
    assert result.is_refused
    assert "but the kernel says" in result.refusal


def test_bus_id_without_kernel_entry_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = discover(root, [nvml_device(0, BUSES[1])])
    assert result.is_refused
    assert "GPU #0 (0000:2a:00.0) has no kernel driver entry" in result.refusal
    assert "is not an NVIDIA GPU on the PCI bus" in result.refusal


def test_model_renamed_by_nvml_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0], model="NVIDIA GeForce RTX 4090")])
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused
    assert "NVML model" in result.refusal and "RTX 4090" in result.refusal


def test_missing_driver_tree_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])], proc=False)
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused
    assert "lists none (no /proc/driver/nvidia/gpus)" in result.refusal


def test_missing_pci_tree_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])], sys_tree=False)
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused
    assert "no /sys/bus/pci/devices" in result.refusal


def test_gpu_on_bus_that_is_not_an_nvidia_display_device_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    (root / "sys/bus/pci/devices" / BUSES[0] / "class").write_text("0x040300\n")
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused
    assert "is not an NVIDIA GPU on the PCI bus" in result.refusal


def test_masked_kernel_uuid_is_not_a_contradiction(tmp_path: Path) -> None:
    masked = "GPU-????????-????-????-????-????????????"
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0], uuid=masked)])
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.ok
    assert result.gpus[0].claim.gpu_uuid == uuid_for(0)


def test_fewer_nvml_gpus_than_kernel_is_fine(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0]), KernelGpuSpec(BUSES[1])])
    result = discover(root, [nvml_device(1, BUSES[1])])
    assert result.ok and [g.index for g in result.gpus] == [1]


def test_hostile_name_is_refused_not_sanitised(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0], model='H100"; DROP TABLE')])
    result = discover(root, [nvml_device(0, BUSES[0], name='H100"; DROP TABLE')])
    assert result.is_refused
    assert "not a valid hardware claim (model)" in result.refusal


def test_zero_memory_is_refused(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = discover(root, [nvml_device(0, BUSES[0], memory=1000)])
    assert result.is_refused and "vram_mib" in result.refusal


def test_no_nvml_means_nothing_found_not_refused(tmp_path: Path) -> None:
    result = NvidiaDiscovery(FakeNvml(error="NVML Shared Library Not Found"),
                             root=tmp_path).discover()
    assert not result.is_refused and not result.ok
    assert result.note == "NVML Shared Library Not Found"


def test_nvml_with_zero_gpus_means_nothing(tmp_path: Path) -> None:
    result = NvidiaDiscovery(FakeNvml([]), root=tmp_path).discover()
    assert not result.is_refused and result.gpus == ()
    assert result.note == "NVML reports no GPUs"


def test_fingerprint_comes_from_the_injected_root(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    a = discover(root, [nvml_device(0, BUSES[0])]).gpus[0].claim.host_fingerprint
    (root / "etc/machine-id").write_text("f" * 32 + "\n")
    b = discover(root, [nvml_device(0, BUSES[0])]).gpus[0].claim.host_fingerprint
    assert a != b and len(a) == len(b) == 64


def test_missing_machine_id_refuses_with_a_fix(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    (root / "etc/machine-id").unlink()
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused and "systemd-machine-id-setup" in result.refusal


def test_explicit_fingerprint_is_used(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    result = NvidiaDiscovery(FakeNvml([nvml_device(0, BUSES[0])]), root=root,
                             host_fingerprint="a" * 32).discover()
    assert result.gpus[0].claim.host_fingerprint == "a" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("00000000:17:00.0", "0000:17:00.0"),
    ("0000:AB:1F.7", "0000:ab:1f.7"),
    ("17:00.0", "0000:17:00.0"),
    ("00010000:01:00.0", "10000:01:00.0"),
    ("0000:17:00.8", None),
    ("0000:17:00", None),
    ("../../etc", None),
])
def test_canonical_bus_id(text: str, expected: str | None) -> None:
    assert canonical_bus_id(text) == expected


def test_parse_information_keeps_values_with_colons() -> None:
    fields = parse_information("Model: \t\t NVIDIA A100-SXM4-80GB\nBus Location: \t 0000:07:00.0\n")
    assert fields == {"Model": "NVIDIA A100-SXM4-80GB", "Bus Location": "0000:07:00.0"}


def test_kernel_view_ignores_non_gpu_pci_functions(tmp_path: Path) -> None:
    view = read_kernel_view(make_host(tmp_path, [KernelGpuSpec(BUSES[0])]))
    assert view.pci_gpus == frozenset({BUSES[0]})
    assert view.driver_gpus is not None and list(view.driver_gpus) == [BUSES[0]]


def test_kernel_entry_with_wrong_bus_location_is_dropped(tmp_path: Path) -> None:
    root = make_host(tmp_path, [KernelGpuSpec(BUSES[0])])
    info = root / "proc/driver/nvidia/gpus" / BUSES[0] / "information"
    info.write_text(info.read_text().replace(BUSES[0], BUSES[1]))
    result = discover(root, [nvml_device(0, BUSES[0])])
    assert result.is_refused and "has no kernel driver entry" in result.refusal


class _PciInfo:
    busId = b"00000000:17:00.0"


class _Mem:
    total = H100_BYTES


def test_pynvml_source_reads_through_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake = types.ModuleType("pynvml")
    fake.NVMLError = type("NVMLError", (Exception,), {})  # type: ignore[attr-defined]
    fake.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: H100  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: _Mem()  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: uuid_for(0)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetPciInfo = lambda h: _PciInfo()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    snap = PynvmlSource().read()
    assert snap == NvmlSnapshot("550.54.15", (nvml_device(0, BUSES[0]),))
    assert calls == ["init", "shutdown"]


def test_pynvml_source_turns_errors_into_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pynvml")
    err = type("NVMLError", (Exception,), {})
    fake.NVMLError = err  # type: ignore[attr-defined]

    def fail() -> None:
        raise err("Driver Not Loaded")

    fake.nvmlInit = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with pytest.raises(NvmlUnavailable, match="Driver Not Loaded"):
        PynvmlSource().read()


def test_pynvml_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlUnavailable, match="not installed"):
        PynvmlSource().read()
