"""Hardware cross-checks: identity since enrolment, kernel listing, duplicates."""

from __future__ import annotations

import pytest

from gpunet.core.models import GpuVendor, HardwareClaim
from gpunet.core.pog import (
    Failure,
    FailureReason,
    HardwareReport,
    KernelGpu,
    ReportedGpu,
    check_hardware,
    kernel_gpu_from_information,
)

UUID = "GPU-0b8f5f5e-1111-2222-3333-444455556666"
ENROLLED = HardwareClaim(vendor=GpuVendor.NVIDIA, model="NVIDIA H100 80GB HBM3",
                         vram_mib=81559, gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                         driver_version="550.54.15", host_fingerprint="host-" + "a" * 16)
INFO = """Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 150
GPU UUID: \t GPU-0b8f5f5e-1111-2222-3333-444455556666
Video BIOS: \t 96.00.74.00.01
Bus Type: \t PCIe
Bus Location: \t 0000:01:00.0
"""


def report(devices=None, kernel=None, uuid=UUID) -> HardwareReport:
    devices = devices or [ReportedGpu(gpu_uuid=UUID, pci_bus_id="00000000:01:00.0",
                                      model="NVIDIA H100 80GB HBM3", vram_mib=81559)]
    kernel = kernel if kernel is not None else [kernel_gpu_from_information(INFO)]
    return HardwareReport(vendor=GpuVendor.NVIDIA, device_uuid=uuid, devices=tuple(devices),
                          kernel_gpus=tuple(kernel))


def reason(v) -> FailureReason:
    assert isinstance(v, Failure) and not v
    return v.reason


def test_unchanged_device_passes():
    assert check_hardware(ENROLLED, report())


def test_kernel_information_is_parsed():
    k = kernel_gpu_from_information(INFO)
    assert k.gpu_uuid == UUID and k.pci_bus_id == "0000:01:00.0" and "H100" in k.model


def test_changed_uuid_fails():
    other = "GPU-ffffffff-1111-2222-3333-444455556666"
    dev = ReportedGpu(gpu_uuid=other, pci_bus_id="0000:01:00.0",
                      model="NVIDIA H100 80GB HBM3", vram_mib=81559)
    assert reason(check_hardware(ENROLLED, report([dev], uuid=other))) is \
        FailureReason.UUID_CHANGED


@pytest.mark.parametrize("vram", [40960, 163840])
def test_changed_vram_fails(vram):
    dev = ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                      model="NVIDIA H100 80GB HBM3", vram_mib=vram)
    assert reason(check_hardware(ENROLLED, report([dev]))) is FailureReason.VRAM_CHANGED


def test_small_vram_drift_is_tolerated():
    dev = ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                      model="NVIDIA H100 80GB HBM3", vram_mib=81559 - 64)
    assert check_hardware(ENROLLED, report([dev]))


def test_changed_model_fails():
    dev = ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                      model="NVIDIA GeForce RTX 4090", vram_mib=81559)
    assert reason(check_hardware(ENROLLED, report([dev]))) is FailureReason.MODEL_CHANGED


def test_more_nvml_devices_than_the_driver_knows_is_spoofing():
    devs = [ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                        model="NVIDIA H100 80GB HBM3", vram_mib=81559)]
    devs += [ReportedGpu(gpu_uuid=f"GPU-0b8f5f5e-1111-2222-3333-44445555{i:04d}",
                         pci_bus_id=f"0000:{i + 2:02x}:00.0",
                         model="NVIDIA H100 80GB HBM3", vram_mib=81559) for i in range(7)]
    assert reason(check_hardware(ENROLLED, report(devs))) is \
        FailureReason.SPOOFED_ENUMERATION


def test_device_absent_from_kernel_listing_fails():
    k = KernelGpu(pci_bus_id="0000:02:00.0", model="NVIDIA H100 80GB HBM3", gpu_uuid=UUID)
    dev = ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                      model="NVIDIA H100 80GB HBM3", vram_mib=81559)
    assert reason(check_hardware(ENROLLED, report([dev], [k]))) is \
        FailureReason.NOT_IN_KERNEL_LIST


def test_kernel_uuid_mismatch_fails():
    k = KernelGpu(pci_bus_id="0000:01:00.0", model="NVIDIA H100 80GB HBM3",
                  gpu_uuid="GPU-99999999-1111-2222-3333-444455556666")
    assert reason(check_hardware(ENROLLED, report(kernel=[k]))) is \
        FailureReason.NOT_IN_KERNEL_LIST


def test_duplicate_uuid_on_host_fails():
    dev = ReportedGpu(gpu_uuid=UUID, pci_bus_id="0000:01:00.0",
                      model="NVIDIA H100 80GB HBM3", vram_mib=81559)
    twin = dev.model_copy(update={"pci_bus_id": "0000:02:00.0"})
    assert reason(check_hardware(ENROLLED, report([dev, twin]))) is \
        FailureReason.DUPLICATE_DEVICE


def test_uuid_enrolled_elsewhere_fails():
    assert reason(check_hardware(ENROLLED, report(), seen_elsewhere={UUID.upper()})) is \
        FailureReason.DUPLICATE_DEVICE
