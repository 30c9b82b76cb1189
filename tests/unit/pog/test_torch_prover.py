"""The torch prover (here on torch's CPU device) is byte-identical to the NumPy one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.pog.conftest import exchange, make_challenge, seed_of

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.pog import ChallengeParams, plan_openings
from gpunet.core.pog.derive import Derivation
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.prf import prf_rows

torch = pytest.importorskip("torch")

from gpunet.agent.provers import torch_ops as ops  # noqa: E402
from gpunet.agent.provers.torch_prover import TorchProver  # noqa: E402


@given(key=st.integers(0, (1 << 64) - 1), start=st.integers(0, 50), count=st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_torch_prf_matches_numpy(key, start, count):
    got = ops.prf_rows(torch, key, start, count, 128, "cpu").numpy()
    assert (got == prf_rows(key, np.arange(start, start + count), 128)).all()


@given(seed=st.binary(min_size=32, max_size=32))
@settings(max_examples=20, deadline=None)
def test_torch_digests_match_numpy(seed):
    p = ChallengeParams(n=128, steps=1, refs=0, read_steps=0, digest_width=64, rows_per_check=2,
                        checked_steps=1)
    d = Derivation(seed, p)
    rows = prf_rows(d.keys.x0, np.arange(32), 128)
    dt = torch.from_numpy(d.dt.copy())
    leaf = torch.from_numpy(d.leaf.view(np.int64).copy())
    for mode in ("int_mm", "f32"):
        lanes = ops.row_digests(torch, torch.from_numpy(rows), dt, leaf, mode).numpy()
        got = lanes.astype("<i8").view(np.uint8).reshape(-1, 16)
        assert (got == row_digests(rows, d.dt, d.leaf)).all()


@pytest.mark.parametrize("graphs", ["off", "buffered"])
@pytest.mark.parametrize("mode", ["int_mm", "f32"])
@pytest.mark.parametrize("label", ["t1", "t2"])
def test_commitments_and_openings_are_byte_identical(dev_profile, mode, label, graphs):
    """`buffered` is the CUDA-graph path's order of work (static step buffer, key and
    step as device scalars) run without recording: what a graph replays on the GPU."""
    ch = make_challenge(dev_profile, label)
    ref = exchange(CpuProver(), ch)
    # blocks that do not divide n
    tp = TorchProver("cpu", matmul=mode, block_rows=96, graphs=graphs)
    got = exchange(tp, ch)
    assert got.commitment.roots == ref.commitment.roots
    assert got.response == ref.response
    assert got.verdict()


def test_torch_prover_opens_any_plan(dev_profile):
    ch = make_challenge(dev_profile, "t-plan")
    tp = TorchProver("cpu")
    commitment = tp.commit(ch)
    for i in range(3):
        plan = plan_openings(ch, seed_of(f"tp{i}"), commitment)
        from gpunet.core.pog import verify

        assert verify(ch, commitment, plan, tp.open(plan.request()),
                      commit_elapsed_s=0, open_elapsed_s=0)


def test_roll_call_challenges_are_byte_identical_too(dev_profile):
    ch = make_challenge(dev_profile, "t-rc").model_copy(
        update={"roll_call_seed": seed_of("t-roll-call")})
    ref = exchange(CpuProver(), ch)
    got = exchange(TorchProver("cpu"), ch)
    assert got.commitment.roots == ref.commitment.roots and got.verdict()


def test_an_unknown_graph_mode_is_refused():
    from gpunet.agent.provers import ProverError

    with pytest.raises(ProverError, match="graphs must be one of"):
        TorchProver("cpu", graphs="sometimes")
