"""cpu-dev devices, auto selection, host fingerprints, results and the fake discovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpunet.agent.discovery import (
    CpuDevDiscovery,
    DiscoveryResult,
    FakeDiscovery,
    FingerprintUnavailable,
    HostFacts,
    auto_discover,
    fake_gpu,
    guess_model_key,
    host_fingerprint,
    read_host_facts,
)
from gpunet.core.models import GpuVendor, HardwareClaim

FP = "0123456789abcdef" * 4
FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


# --- cpu-dev -------------------------------------------------------------------------

def test_cpu_dev_devices_are_stable_and_distinct() -> None:
    first = CpuDevDiscovery(3, host_fingerprint=FP).discover()
    again = CpuDevDiscovery(3, host_fingerprint=FP).discover()
    other_host = CpuDevDiscovery(3, host_fingerprint="9" * 64).discover()

    uuids = [g.gpu_uuid for g in first.gpus]
    assert uuids == [g.gpu_uuid for g in again.gpus]
    assert len(set(uuids)) == 3
    assert not set(uuids) & {g.gpu_uuid for g in other_host.gpus}
    for i, gpu in enumerate(first.gpus):
        c = gpu.claim
        assert (c.vendor, c.model, c.pci_bus_id, c.host_fingerprint) == (
            GpuVendor.CPU, "cpu-dev", "none", FP)
        assert c.vram_mib == 1024 and gpu.index == i
        assert gpu.backend == "cpu" and gpu.model_key == "cpu-dev"
        HardwareClaim.model_validate(c.model_dump())


def test_cpu_dev_defaults_to_one_device() -> None:
    assert len(CpuDevDiscovery(host_fingerprint=FP).discover().gpus) == 1


@pytest.mark.parametrize("count", [0, -1, 65])
def test_cpu_dev_count_is_bounded(count: int) -> None:
    with pytest.raises(ValueError):
        CpuDevDiscovery(count, host_fingerprint=FP)


# --- auto ----------------------------------------------------------------------------

def test_auto_prefers_nvidia() -> None:
    nv = FakeDiscovery([fake_gpu()], source="nvidia")
    ap = FakeDiscovery([fake_gpu(vendor=GpuVendor.APPLE, model="Apple M2 Max")])
    result = auto_discover(nvidia=nv, apple=ap)
    assert result.source == "nvidia" and ap.calls == 0


def test_auto_falls_back_to_apple() -> None:
    ap = FakeDiscovery([fake_gpu(vendor=GpuVendor.APPLE, model="Apple M2 Max")],
                       source="apple")
    result = auto_discover(nvidia=FakeDiscovery(source="nvidia"), apple=ap)
    assert result.ok and result.source == "apple"


def test_auto_never_falls_through_a_refusal() -> None:
    nv = FakeDiscovery(refusal="NVML reports 8 GPU(s) but the kernel knows 1", source="nvidia")
    cpu = FakeDiscovery([fake_gpu(vendor=GpuVendor.CPU, model="cpu-dev")])
    ap = FakeDiscovery([fake_gpu(vendor=GpuVendor.APPLE, model="Apple M2 Max")])
    result = auto_discover(nvidia=nv, apple=ap, cpu_dev=cpu, allow_cpu_dev=True)
    assert result.is_refused and "8 GPU(s)" in (result.refusal or "")
    assert ap.calls == 0 and cpu.calls == 0


def test_auto_uses_cpu_dev_only_when_allowed() -> None:
    nv = FakeDiscovery(note="NVML Shared Library Not Found", source="nvidia")
    ap = FakeDiscovery(note="not macOS", source="apple")
    result = auto_discover(nvidia=nv, apple=ap)
    assert not result.ok and not result.is_refused
    assert result.note is not None
    assert "no GPU found" in result.note and "NVML Shared Library Not Found" in result.note
    assert "not macOS" in result.note and "cpu-dev" in result.note

    dev = auto_discover(nvidia=nv, apple=ap, allow_cpu_dev=True, cpu_dev_count=2,
                        host_fingerprint=FP)
    assert dev.ok and dev.source == "cpu-dev" and len(dev.gpus) == 2


# --- host fingerprint ----------------------------------------------------------------

def _root_with(tmp_path: Path, rel: str, text: str) -> Path:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(text)
    return tmp_path


def test_fingerprint_is_stable_and_fits_the_claim_pattern(tmp_path: Path) -> None:
    root = _root_with(tmp_path, "etc/machine-id", "0123456789ABCDEF0123456789abcdef\n")
    a = host_fingerprint(read_host_facts(root=root, system="Linux", machine="x86_64"))
    b = host_fingerprint(read_host_facts(root=root, system="Linux", machine="x86_64"))
    assert a == b and FINGERPRINT_RE.match(a)
    assert "0123456789abcdef" not in a  # the machine id itself is not revealed
    assert a != host_fingerprint(HostFacts("0123456789abcdef" * 2, "Linux", "aarch64"))


def test_fingerprint_falls_back_to_dbus_machine_id(tmp_path: Path) -> None:
    root = _root_with(tmp_path, "var/lib/dbus/machine-id", "ab" * 16)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("0" * 32)  # an unset id is ignored
    facts = read_host_facts(root=root, system="Linux", machine="x86_64")
    assert facts.machine_id == "ab" * 16


def test_fingerprint_unavailable_without_a_machine_id(tmp_path: Path) -> None:
    _root_with(tmp_path, "etc/machine-id", "not-an-id")
    with pytest.raises(FingerprintUnavailable, match="machine-id"):
        read_host_facts(root=tmp_path, system="Linux", machine="x86_64")


def test_fingerprint_fields_cannot_be_shifted() -> None:
    assert host_fingerprint(HostFacts("ab", "c", "d")) != host_fingerprint(
        HostFacts("a", "bc", "d"))


# --- results, fakes, model keys --------------------------------------------------------

def test_result_states_are_exclusive() -> None:
    gpu = fake_gpu()
    with pytest.raises(ValueError):
        DiscoveryResult(source="x", gpus=(gpu,), refusal="no")
    with pytest.raises(ValueError):
        DiscoveryResult.found("x", [])
    assert DiscoveryResult.found("x", [gpu]) and not DiscoveryResult.nothing("x", "none")
    assert "refused: bad" in DiscoveryResult.refused("x", "bad").explain()
    assert "#0 NVIDIA H100" in DiscoveryResult.found("x", [gpu]).explain()


def test_fake_gpus_are_valid_and_unique() -> None:
    gpus = [fake_gpu(i) for i in range(4)]
    assert len({g.gpu_uuid for g in gpus}) == 4
    assert len({g.claim.pci_bus_id for g in gpus}) == 4
    assert fake_gpu(vendor=GpuVendor.APPLE, model="Apple M3").claim.pci_bus_id == "none"
    assert fake_gpu(vendor=GpuVendor.APPLE, model="Apple M3").backend == "mps"


def test_fake_discovery_modes() -> None:
    assert FakeDiscovery([fake_gpu()]).discover().ok
    assert FakeDiscovery(refusal="spoofed").discover().refusal == "spoofed"
    nothing = FakeDiscovery().discover()
    assert not nothing.ok and not nothing.is_refused


@pytest.mark.parametrize(("vendor", "name", "vram", "key"), [
    ("nvidia", "NVIDIA H100 80GB HBM3", 81559, "h100-sxm"),
    ("nvidia", "NVIDIA H100 PCIe", 81559, "h100-pcie"),
    ("nvidia", "NVIDIA H100 NVL", 95830, "h100-nvl"),
    ("nvidia", "NVIDIA H200", 143771, "h200"),
    ("nvidia", "NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"),
    ("nvidia", "NVIDIA A100-PCIE-40GB", 40960, "a100-40gb"),
    ("nvidia", "NVIDIA L40S", 46068, "l40s"),
    ("nvidia", "NVIDIA GeForce RTX 4090", 24564, "rtx-4090"),
    ("nvidia", "NVIDIA GeForce RTX 3090", 24576, "rtx-3090"),
    ("apple", "Apple M3 Max", 131072, "apple-m3-max"),
    ("cpu", "cpu-dev", 1024, "cpu-dev"),
    ("nvidia", "NVIDIA", 1024, None),
])
def test_model_key_guess(vendor: str, name: str, vram: int, key: str | None) -> None:
    assert guess_model_key(vendor, name, vram) == key
