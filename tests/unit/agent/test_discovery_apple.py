"""Apple silicon discovery through a fake command runner."""

from __future__ import annotations

import json
from collections.abc import Sequence

from gpunet.agent.discovery import AppleDiscovery, CommandError, read_host_facts
from gpunet.agent.discovery.apple import apple_gpu_uuid
from gpunet.agent.discovery.fingerprint import host_fingerprint
from gpunet.core.models import GpuVendor, HardwareClaim

PLATFORM_UUID = "4C4C4544-0042-3510-8051-B4C04F4A4E32"
IOREG = f"""+-o MacBookPro18,2  <class IOPlatformExpertDevice, id 0x100000250>
    {{
      "IOPlatformSerialNumber" = "C02XXXXXXX"
      "IOPlatformUUID" = "{PLATFORM_UUID}"
      "model" = <"Mac14,6">
    }}
"""
PROFILER = json.dumps({"SPDisplaysDataType": [{
    "_name": "Apple M2 Max",
    "spdisplays_mtlgpufamilysupport": "spdisplays_metal3",
    "spdisplays_vendor": "sppci_vendor_Apple",
    "sppci_bus": "spdisplays_builtin",
    "sppci_cores": "38",
    "sppci_device_type": "spdisplays_gpu",
    "sppci_model": "Apple M2 Max",
}]})


class FakeRunner:
    def __init__(self, **overrides: str | None) -> None:
        self.outputs: dict[str, str | None] = {
            "machdep.cpu.brand_string": "Apple M2 Max\n",
            "hw.memsize": "34359738368\n",
            "kern.osproductversion": "14.5\n",
            "system_profiler": PROFILER,
            "ioreg": IOREG,
        }
        self.outputs.update(overrides)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        key = argv[-1] if argv[0].endswith("sysctl") else argv[0].rsplit("/", 1)[-1]
        out = self.outputs.get(key)
        if out is None:
            raise CommandError(f"{argv[0]} exited with status 1")
        return out


def apple(runner: FakeRunner, *, mps: bool = True, system: str = "Darwin") -> AppleDiscovery:
    return AppleDiscovery(runner=runner, mps_available=lambda: mps, system=system,
                          machine="arm64")


def test_m2_max_claim() -> None:
    runner = FakeRunner()
    result = apple(runner).discover()

    assert result.ok
    [gpu] = result.gpus
    claim = gpu.claim
    assert claim.vendor is GpuVendor.APPLE
    assert claim.model == "Apple M2 Max"
    assert claim.vram_mib == 32 * 1024
    assert claim.pci_bus_id == "none"
    assert claim.driver_version == "14.5"
    assert claim.gpu_uuid == apple_gpu_uuid(PLATFORM_UUID)
    assert claim.gpu_uuid.startswith("APPLE-") and PLATFORM_UUID not in claim.gpu_uuid
    assert gpu.backend == "mps" and gpu.index == 0 and gpu.gpu_cores == 38
    assert gpu.model_key == "apple-m2-max"
    HardwareClaim.model_validate(claim.model_dump())
    assert all(call[0].startswith("/") for call in runner.calls)  # absolute paths only


def test_fingerprint_matches_the_host_facts_path() -> None:
    runner = FakeRunner()
    claim = apple(runner).discover().gpus[0].claim
    facts = read_host_facts(runner=runner, system="Darwin", machine="arm64")
    assert claim.host_fingerprint == host_fingerprint(facts)


def test_uuid_is_stable_and_per_machine() -> None:
    assert apple_gpu_uuid(PLATFORM_UUID) == apple_gpu_uuid(PLATFORM_UUID.lower())
    assert apple_gpu_uuid(PLATFORM_UUID) != apple_gpu_uuid(PLATFORM_UUID[:-1] + "0")
    a = apple(FakeRunner()).discover().gpus[0].gpu_uuid
    b = apple(FakeRunner()).discover().gpus[0].gpu_uuid
    assert a == b


def test_not_macos_is_nothing() -> None:
    runner = FakeRunner()
    result = apple(runner, system="Linux").discover()
    assert not result.ok and not result.is_refused and result.note == "not macOS"
    assert runner.calls == []


def test_intel_mac_is_nothing() -> None:
    result = apple(FakeRunner(**{"machdep.cpu.brand_string": "Intel(R) Core(TM) i9"})).discover()
    assert not result.is_refused and "not Apple silicon" in (result.note or "")


def test_without_mps_there_is_nothing_to_prove_with() -> None:
    result = apple(FakeRunner(), mps=False).discover()
    assert not result.ok and not result.is_refused
    assert "MPS backend is not available" in (result.note or "")


def test_failed_command_is_nothing() -> None:
    result = apple(FakeRunner(system_profiler=None)).discover()
    assert not result.is_refused and "cannot read system reports" in (result.note or "")


def test_garbled_memsize_is_nothing() -> None:
    result = apple(FakeRunner(**{"hw.memsize": "lots"})).discover()
    assert not result.is_refused and not result.ok


def test_profiler_without_apple_gpu_is_nothing() -> None:
    result = apple(FakeRunner(system_profiler='{"SPDisplaysDataType": []}')).discover()
    assert result.note == "system_profiler lists no Apple GPU"


def test_missing_platform_uuid_is_refused() -> None:
    result = apple(FakeRunner(ioreg=None)).discover()
    assert result.is_refused and "IOPlatformUUID" in (result.refusal or "")


def test_hostile_model_text_is_refused() -> None:
    report = PROFILER.replace("Apple M2 Max", "Apple M2 Max<script>")
    result = apple(FakeRunner(system_profiler=report)).discover()
    assert result.is_refused and "(model)" in (result.refusal or "")


def test_missing_core_count_is_tolerated() -> None:
    report = json.dumps({"SPDisplaysDataType": [{"sppci_model": "Apple M3"}]})
    gpu = apple(FakeRunner(system_profiler=report)).discover().gpus[0]
    assert gpu.gpu_cores is None and gpu.claim.model == "Apple M3"
