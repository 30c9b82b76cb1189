"""The catalog is data: complete, consistent, honest about its sources."""

from __future__ import annotations

import pytest

from gpunet.core.models import GpuVendor, HardwareClaim
from gpunet.core.pog import (
    DEV_PROFILE,
    Failure,
    FailureReason,
    check_eligible,
    default_catalog,
    reward_eligible,
)
from gpunet.core.pog.security import (
    DeviceRates,
    expected_seconds,
    opening_window_seconds,
    reference_fraction,
)

REQUIRED = ["h100-sxm", "h100-pcie", "h200", "a100-40gb", "a100-80gb", "l40s",
            "rtx-4090", "rtx-3090", "apple-m2-max", "apple-m3-max", DEV_PROFILE]


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


def test_required_models_present(catalog):
    assert sorted(m.key for m in catalog.models if m.key in REQUIRED) == sorted(REQUIRED)


@pytest.mark.parametrize("key", REQUIRED)
def test_model_fits_its_own_memory_and_covers_most_of_it(catalog, key):
    m = catalog.get(key)
    resident_mib = m.params.resident_bytes / 2**20
    if m.vendor == GpuVendor.NVIDIA:
        assert resident_mib + 1536 < m.vram_mib  # + block scratch and the CUDA context
        assert resident_mib > 0.75 * m.vram_mib  # the memory phase
    else:
        assert resident_mib < 0.5 * m.vram_mib
    assert m.budget.budget_s > m.budget.expected_s
    assert m.budget.source and all(m.sources.values())


def test_gpu_budgets_say_whether_they_were_measured(catalog):
    for m in catalog.models:
        if m.vendor == GpuVendor.CPU:
            continue
        if m.budget.calibrated:  # measured on the card: which card, and when
            assert m.budget.source.startswith("measured:") and m.name.split()[-2] in (
                m.budget.source)
            assert m.budget.open_budget_s >= opening_window_seconds(m.params)
        else:
            assert "estimate" in m.budget.source
    assert catalog.get("h200").budget.calibrated


def test_datasheet_estimates_are_the_computed_ones(catalog):
    m = catalog.get("h100-sxm")
    est = expected_seconds(
        m.params, DeviceRates(reference_fraction(m.key) * 1979e12, 0.8 * 3350e9, 64e9))
    assert m.budget.expected_s == pytest.approx(est, abs=0.01)
    assert m.budget.budget_s == pytest.approx(1.2 * est, abs=0.01)


def test_cpu_dev_counts_only_in_development(catalog):
    dev = catalog.get(DEV_PROFILE)
    assert dev.dev_only and dev.reward_weight == 0
    assert reward_eligible(dev, development=True)
    assert not reward_eligible(dev, development=False)
    v = check_eligible(dev, development=False)
    assert isinstance(v, Failure) and v.reason is FailureReason.NOT_ELIGIBLE
    assert check_eligible(catalog.get("h100-sxm"), development=False)
    v = check_eligible(None, development=True)
    assert isinstance(v, Failure) and v.reason is FailureReason.UNKNOWN_PROFILE


def claim(model: str, vendor=GpuVendor.NVIDIA) -> HardwareClaim:
    return HardwareClaim(vendor=vendor, model=model, vram_mib=81559,
                         gpu_uuid="GPU-12345678-aaaa", pci_bus_id="0000:01:00.0",
                         driver_version="550.54", host_fingerprint="h" * 16)


@pytest.mark.parametrize(("model", "key"), [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 3090", "rtx-3090"),
])
def test_claims_map_to_profiles(catalog, model, key):
    assert catalog.for_claim(claim(model)).key == key


def test_unknown_or_cross_vendor_claims_map_to_nothing(catalog):
    assert catalog.for_claim(claim("NVIDIA Tesla K80")) is None
    assert catalog.for_claim(claim("Apple M2 Max", vendor=GpuVendor.NVIDIA)) is None
