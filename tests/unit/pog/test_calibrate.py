"""calibrate() returns measured figures as data, after a byte-identity self-test."""

from __future__ import annotations

import json

import pytest

from gpunet.agent.provers import get_prover
from gpunet.agent.provers.base import ProverError
from gpunet.agent.provers.calibrate import calibrate, self_test
from gpunet.core.pog import ChallengeParams


def test_calibrate_cpu_dev_on_the_numpy_prover():
    r = calibrate("cpu-dev", "cpu", repeats=2)
    assert r.self_test_passed and r.profile == "cpu-dev" and r.backend == "cpu"
    assert len(r.runs_s) == 2 and r.commit_s > 0 and r.plain_gemm_tops > 0
    assert r.suggested_budget_s > r.commit_s
    block = r.catalog_budget()
    assert block["calibrated"] is True and "measured" in block["source"]
    json.loads(r.model_dump_json())


def test_calibrate_accepts_other_sizes():
    p = ChallengeParams(n=128, steps=3, refs=2, read_steps=2, digest_width=32, rows_per_check=4,
                        checked_steps=2)
    r = calibrate("cpu-dev", "cpu", params=p, repeats=1)
    assert r.params == p and r.chain_ops == 3 * 2 * 128**3


def test_torch_cpu_backend_passes_the_self_test():
    pytest.importorskip("torch")
    assert self_test(get_prover("torch-cpu"))


def test_unknown_backend_and_profile():
    with pytest.raises(ProverError):
        get_prover("tpu")
    with pytest.raises(ValueError):
        calibrate("no-such-gpu", "cpu")
