"""Hostile answers get a Failure value, never an exception (verdicts are values)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.pog.conftest import exchange, make_challenge

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.models import GpuVendor, HardwareClaim
from gpunet.core.pog import (
    Failure,
    HardwareReport,
    OpenedRow,
    ReportedGpu,
    Success,
    check_hardware,
    verify,
)


@pytest.fixture(scope="module")
def honest(dev_profile):
    return exchange(CpuProver(), make_challenge(dev_profile, "hostile"))


def mutate(row: OpenedRow, kind: int, value: int, n: int) -> OpenedRow:
    if kind == 0:
        return row.model_copy(update={"index": value % n})
    if kind == 1:
        return row.model_copy(update={"step": value % 6})
    if kind == 2:
        return row.model_copy(update={"siblings": row.siblings[: value % 9]})
    if kind == 3:
        sib = list(row.siblings)
        if sib:
            sib[value % len(sib)] = None
        return row.model_copy(update={"siblings": tuple(sib)})
    if kind == 4:
        sib = list(row.siblings)
        if sib:
            sib[value % len(sib)] = bytes(32)
        return row.model_copy(update={"siblings": tuple(sib)})
    data = bytearray(row.data)
    data[value % n] = (data[value % n] + 1 + value % 255) % 256
    return row.model_copy(update={"data": bytes(data)})


@given(picks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 5),
                                st.integers(0, 10**6)), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_openings_yield_a_verdict_not_an_exception(honest, picks):
    rows = list(honest.response.rows)
    n = honest.challenge.params.n
    for which, kind, value in picks:
        i = which % len(rows)
        rows[i] = mutate(rows[i], kind, value, n)
    if len({(r.step, r.index) for r in rows}) != len(rows):
        return  # rejected by the message schema before it reaches the verifier
    response = honest.response.model_copy(update={"rows": tuple(rows)})
    v = verify(honest.challenge, honest.commitment, honest.plan, response,
               commit_elapsed_s=0.0, open_elapsed_s=0.0)
    assert isinstance(v, Success | Failure)
    if rows != list(honest.response.rows):
        assert isinstance(v, Failure), (picks, v)


@given(root=st.binary(min_size=32, max_size=32), k=st.integers(0, 4))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_forged_roots_fail(honest, root, k):
    roots = list(honest.commitment.roots)
    if roots[k] == root:
        return
    roots[k] = root
    c = honest.commitment.model_copy(update={"roots": tuple(roots)})
    v = verify(honest.challenge, c, honest.plan, honest.response,
               commit_elapsed_s=0.0, open_elapsed_s=0.0)
    assert isinstance(v, Failure)


def test_apple_devices_need_no_kernel_listing():
    claim = HardwareClaim(vendor=GpuVendor.APPLE, model="Apple M2 Max", vram_mib=65536,
                          gpu_uuid="apple-gpu-0001", pci_bus_id="none",
                          driver_version="14.5", host_fingerprint="mac-" + "b" * 16)
    report = HardwareReport(vendor=GpuVendor.APPLE, device_uuid="apple-gpu-0001",
                            devices=(ReportedGpu(gpu_uuid="apple-gpu-0001", pci_bus_id="none",
                                                 model="Apple M2 Max", vram_mib=65536),))
    assert check_hardware(claim, report)
