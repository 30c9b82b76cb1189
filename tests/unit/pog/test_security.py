"""The numbers quoted in docs/proof-of-gpu.md are the numbers computed, and the time model
says every memory cheat of the issue misses its budget at every catalog model."""

from __future__ import annotations

import pytest
from tests.adversarial.memory_cheaters import rates_of

from gpunet.core.pog import default_catalog
from gpunet.core.pog.security import (
    SCRATCH_BYTES,
    DeviceRates,
    best_memory_cheat_seconds,
    escape_entry_skipping,
    escape_row_skipping,
    escape_step_skipping,
    expected_seconds,
    minimal_offload_seconds,
    missing_fraction,
    opening_window_seconds,
    recompute_seconds,
)
from gpunet.core.pog.wire import max_body

GPUS = [m for m in default_catalog().models if not m.dev_only]


def rates(key: str, memory_share: float = 1.0) -> DeviceRates:
    m = default_catalog().get(key)
    assert m is not None
    return rates_of(m, memory_share)


def test_quoted_escape_probabilities():
    h100 = default_catalog().get("h100-sxm").params
    assert escape_row_skipping(0.10, h100) == pytest.approx(1.18e-3, rel=0.01)
    assert escape_row_skipping(0.20, h100) == pytest.approx(6.28e-7, rel=0.01)
    assert escape_entry_skipping(0.20, h100) == escape_row_skipping(0.20, h100)  # a = 1
    for m in GPUS:
        assert escape_row_skipping(0.2, m.params) < 1e-6


def test_step_skipping_when_only_some_transitions_are_checked():
    p = default_catalog().get("cpu-dev").params.model_copy(update={"checked_steps": 2})
    assert 0 < escape_step_skipping(1, p) < 1


def test_missing_fraction_grows_with_the_steps_a_device_cannot_hold():
    assert missing_fraction(0, 1) == 0
    assert missing_fraction(10, 20) == 0
    assert missing_fraction(100, 51) == pytest.approx(0.5)


@pytest.mark.parametrize("m", GPUS, ids=lambda m: m.key)
def test_every_memory_cheat_misses_the_budget(m):
    """Issue 13, item 3: the offload prover of the break (B, X_t, X_t+1 and one reference
    on board, the rest streamed over the model's own host link), keep-every-other and
    keep-every-third, all at the claimed model's own speed, miss its budget."""
    own = rates(m.key)
    budget = m.budget.budget_s
    assert expected_seconds(m.params, own) < budget
    assert minimal_offload_seconds(m.params, own) > budget
    assert recompute_seconds(m.params, own, 1 / 2) > budget
    assert recompute_seconds(m.params, own, 1 / 3) > budget


@pytest.mark.parametrize("m", [m for m in GPUS if m.vendor == "nvidia"], ids=lambda m: m.key)
def test_holding_58_percent_of_the_working_set_misses_the_budget(m):
    """The memory a proof resolves, at the reference prover's measured speed: 66-68% of
    the working set for most models, 58-61% for H100 PCIe, L40S and RTX 3090, whose
    compute is fast for their memory (docs/proof-of-gpu.md, section 5)."""
    assert best_memory_cheat_seconds(m.params, rates(m.key, 0.58)) > m.budget.budget_s


@pytest.mark.parametrize(("actual", "claimed"), [
    ("rtx-4090", "a100-80gb"), ("rtx-4090", "a100-40gb"), ("rtx-4090", "l40s"),
    ("a100-40gb", "a100-80gb"), ("l40s", "a100-80gb"), ("h100-sxm", "h200"),
])
def test_the_pairs_that_passed_before_now_fail(actual, claimed):
    """Issue 13, item 3: pairs that passed on time and memory under protocol v1."""
    c = default_catalog().get(claimed)
    assert best_memory_cheat_seconds(c.params, rates(actual)) > c.budget.budget_s


def test_the_working_set_fits_beside_the_scratch_of_an_honest_prover():
    for m in GPUS:
        if m.vendor == "nvidia":
            need = (m.params.steps + 2) * m.params.matrix_bytes + SCRATCH_BYTES
            assert need < m.vram_mib * 2**20


@pytest.mark.parametrize("m", GPUS, ids=lambda m: m.key)
def test_opening_window_fits_a_10_mbit_uplink(m):
    seconds_at_10_mbit = max_body(m.params) * 8 / 10e6
    assert m.budget.open_budget_s == pytest.approx(opening_window_seconds(m.params), abs=0.1)
    assert m.budget.open_budget_s > seconds_at_10_mbit + 4
