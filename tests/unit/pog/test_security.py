"""The numbers quoted in docs/proof-of-gpu.md are the numbers computed."""

from __future__ import annotations

import pytest

from gpunet.core.pog import default_catalog
from gpunet.core.pog.security import (
    escape_entry_skipping,
    escape_row_skipping,
    escape_step_skipping,
)


def test_quoted_escape_probabilities():
    h100 = default_catalog().get("h100-sxm").params
    assert escape_row_skipping(0.10, h100) == pytest.approx(1.57e-5, rel=0.01)
    assert escape_row_skipping(0.05, h100) == pytest.approx(4.58e-3, rel=0.01)
    assert escape_entry_skipping(0.10, h100) < 1e-30
    assert escape_step_skipping(1, h100) == 0.0  # every transition checked
    for m in default_catalog().models:
        if not m.dev_only:
            assert escape_row_skipping(0.2, m.params) < 5e-10
            assert escape_row_skipping(0.1, m.params) < 5e-5


def test_step_skipping_when_only_some_transitions_are_checked():
    p = default_catalog().get("cpu-dev").params.model_copy(update={"checked_steps": 2})
    assert 0 < escape_step_skipping(1, p) < 1
