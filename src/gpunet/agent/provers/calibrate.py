"""Measure a prover on the hardware it runs on, to set a catalog budget from facts.

`gpunet calibrate` calls `calibrate(...)` and prints or stores the result. The procedure:

1. self-test: a small challenge on the chosen backend must give byte-identical roots and
   openings to the NumPy reference (catches a device whose integer semantics differ);
2. timed runs of the *real* profile parameters with the same prover code the agent uses
   (commit phase, then one opening), median of `repeats`;
3. the backend's plain GEMM throughput on the chain's own shapes, so the result also says
   how much of the device's int8 throughput the challenge achieves (prover efficiency).

The result is data (`CalibrationResult`), with `catalog_budget()` giving the JSON block an
operator pastes into catalog.json (`calibrated: true`, with the device and date as source).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import statistics
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from gpunet.agent.provers import get_prover
from gpunet.agent.provers.base import Prover
from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.pog.catalog import ModelProfile, default_catalog
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.openings import plan_openings
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.security import opening_window_seconds
from gpunet.core.pog.verify import verify

BUDGET_MARGIN = 1.2  # must stay below the closest time ratio between catalog models
SELF_TEST_PARAMS = ChallengeParams(
    n=256, steps=5, refs=3, read_steps=3, digest_width=32, rows_per_check=8, checked_steps=5
)


class CalibrationResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str
    backend: str
    device: str
    params: ChallengeParams
    self_test_passed: bool
    runs_s: tuple[float, ...]
    commit_s: float
    open_s: float
    chain_ops: int
    achieved_tops: float
    plain_gemm_tops: float
    efficiency: float
    suggested_budget_s: float
    suggested_open_budget_s: float
    measured_at: str

    def catalog_budget(self) -> dict[str, Any]:
        return {
            "expected_s": round(self.commit_s, 3),
            "budget_s": round(self.suggested_budget_s, 3),
            "open_budget_s": round(self.suggested_open_budget_s, 1),
            "calibrated": True,
            "source": f"measured: gpunet calibrate, backend {self.backend} on {self.device}, "
            f"median of {len(self.runs_s)} runs, x{BUDGET_MARGIN} margin, {self.measured_at}",
        }


def _challenge(profile: str, params: ChallengeParams, label: str) -> Challenge:
    now = dt.datetime.now(dt.UTC)
    return Challenge(
        id="cal_" + hashlib.sha256(label.encode()).hexdigest()[:20],
        seed=hashlib.sha256(b"calibrate/" + label.encode() + str(time.time_ns()).encode()).digest(),
        profile=profile,
        params=params,
        issued_at=now,
        deadline=now + dt.timedelta(seconds=600),
        open_budget_s=600,
    )


def self_test(prover: Prover) -> bool:
    """Byte-identical roots and openings to the NumPy reference on a small challenge."""
    ch = _challenge("self-test", SELF_TEST_PARAMS, "self-test")
    ref = CpuProver()
    ref_commit = ref.commit(ch)
    got_commit = prover.commit(ch)
    plan = plan_openings(ch, hashlib.sha256(b"self-test-open" + ch.seed).digest(), ref_commit)
    ok = got_commit.roots == ref_commit.roots
    response = prover.open(plan.request())
    ok = ok and response == ref.open(plan.request())
    ok = ok and bool(verify(ch, got_commit, plan, response, commit_elapsed_s=0, open_elapsed_s=0))
    prover.release()
    return ok


def _sync(prover: Prover) -> None:
    sync = getattr(prover, "synchronize", None)
    if sync is not None:
        sync()


def plain_gemm_tops(prover: Prover, params: ChallengeParams, repeats: int = 3) -> float:
    """The backend's own int8 GEMM rate on the chain's shape (block rows x n x n)."""
    n = params.n
    torch = getattr(prover, "torch", None)
    if torch is None:  # NumPy backend: the same exact float32 path the prover uses
        import numpy as np

        from gpunet.core.pog.exact import exact_products

        rng = np.random.default_rng(0)
        a = rng.integers(-128, 128, (n, n), dtype=np.int8)
        b = rng.integers(-128, 128, (n, n), dtype=np.int8)

        def run() -> None:
            exact_products(a, b)
    else:
        from gpunet.agent.provers.torch_ops import matmul_exact

        dev = prover.device  # type: ignore[attr-defined]
        mode = prover.matmul  # type: ignore[attr-defined]
        blk = prover._block(n)  # type: ignore[attr-defined]
        a = torch.randint(-128, 128, (blk, n), dtype=torch.int8, device=dev)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
        bt = b.t()

        def run() -> None:
            for _ in range(0, n, blk):
                matmul_exact(torch, a, bt, mode)

    run()
    _sync(prover)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        _sync(prover)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e12


def describe(prover: Prover) -> str:
    torch = getattr(prover, "torch", None)
    dev = getattr(prover, "device", None)
    if torch is not None and dev is not None and dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    return f"{platform.machine()} {platform.processor() or platform.system()}".strip()


def calibrate(
    profile: ModelProfile | str,
    backend: str | None = None,
    *,
    params: ChallengeParams | None = None,
    repeats: int = 3,
    options: dict[str, Any] | None = None,
) -> CalibrationResult:
    """Run the prover for `profile` (catalog key or object) and return measured figures.

    `params` overrides the profile's sizes (for trying a new parameter set or a quick run);
    `options` go to the prover (e.g. graphs, compile: see torch_prover.TorchProver).
    """
    prof = default_catalog().get(profile) if isinstance(profile, str) else profile
    if prof is None:
        raise ValueError(f"unknown profile {profile!r}")
    p = params or prof.params
    prover = get_prover(backend or prof.backend, **(options or {}))
    ok = self_test(prover)
    prover.warm_up(p)
    runs, opens = [], []
    for i in range(repeats):
        ch = _challenge(prof.key, p, f"run-{i}")
        t0 = time.perf_counter()
        commitment = prover.commit(ch)  # ends with a device -> host copy: synchronised
        t1 = time.perf_counter()
        plan = plan_openings(ch, hashlib.sha256(b"cal-open" + ch.seed).digest(), commitment)
        prover.open(plan.request())
        t2 = time.perf_counter()
        runs.append(t1 - t0)
        opens.append(t2 - t1)
        prover.release()
    commit_s = statistics.median(runs)
    plain = plain_gemm_tops(prover, p)
    achieved = p.gemm_ops / commit_s / 1e12
    return CalibrationResult(
        profile=prof.key,
        backend=prover.name,
        device=describe(prover),
        params=p,
        self_test_passed=ok,
        runs_s=tuple(round(r, 6) for r in runs),
        commit_s=commit_s,
        open_s=statistics.median(opens),
        chain_ops=p.gemm_ops,
        achieved_tops=achieved,
        plain_gemm_tops=plain,
        efficiency=achieved / plain if plain else 0.0,
        suggested_budget_s=commit_s * BUDGET_MARGIN,
        # Openings cross the supplier's uplink: never less than the window for 10 Mbit/s.
        suggested_open_budget_s=max(6.0, 0.5 * commit_s, opening_window_seconds(p)),
        measured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"),
    )
