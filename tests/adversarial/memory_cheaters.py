"""Provers that hold less than the working set, simulated at scaled parameters.

A real H100 challenge is 1,082 matrices of 64 MiB; no CI machine can run it. These
provers run the *same protocol* on a scaled challenge (n = 256, 60 steps, the profile's
own k and share of read steps), really computing the chain and really tracking which
matrices they keep on the device. What they cannot have is real time, so each step is
charged what the same step costs the simulated device at the real sizes:

* an honest step: `security.step_seconds` of the real parameters on the device's rates;
* rows a step must read from matrices the device does not hold: streamed over its host
  link (the share of the step's k n^2 bytes it misses, at the real n), overlapped with
  the step's compute as well as any prover could (the step costs the larger of the two);
* or recomputed from the kept step before them (2 n^2 operations per row at the real n,
  nothing counted for that row's own references: a lower bound, in the cheater's favour).

The answer they send is correct (they compute every value), so the only thing that can
fail them is the clock the coordinator keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gpunet.agent.provers.cpu import CpuProver, run_chain
from gpunet.core.pog import ChallengeParams, ModelProfile
from gpunet.core.pog.derive import Derivation, row_refs
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.rowtree import StepTree
from gpunet.core.pog.security import (
    SCRATCH_BYTES,
    DeviceRates,
    reference_fraction,
    step_seconds,
)

SIM_N = 256
SIM_STEPS = 60

# Which matrices a device keeps on board at step t (besides X_t and X_{t+1}).
KeepPolicy = Callable[[int], bool]


def scaled(params: ChallengeParams) -> ChallengeParams:
    """The profile's shape at n = 256 and 60 steps: same k, same share of read steps."""
    read = max(1, round(params.read_steps / params.steps * SIM_STEPS))
    return ChallengeParams(
        n=SIM_N,
        steps=SIM_STEPS,
        refs=params.refs,
        read_steps=read,
        digest_width=32,
        rows_per_check=1,
        checked_steps=16,
    )


@dataclass(frozen=True)
class RealCost:
    """What a step of the real challenge costs a device: the exchange rate of the sim."""

    real: ChallengeParams
    rates: DeviceRates

    def step(self, read: bool) -> float:
        return step_seconds(self.real, self.rates, self.real.steps - 1 if read else 0)

    def full_fetch(self) -> float:
        return self.real.ref_bytes_per_step / self.rates.host_link_bytes_s

    def row(self) -> float:
        return 2 * self.real.n**2 / self.rates.int8_ops_s

    def honest(self, sim: ChallengeParams) -> float:
        return sum(self.step(sim.refs_at(t) > 0) for t in range(sim.steps))


def holds(rates: DeviceRates, real: ChallengeParams) -> float:
    """Share of the real working set (X_0..X_T) the device's memory can hold."""
    fit = (rates.memory_bytes - SCRATCH_BYTES) / real.matrix_bytes
    return max(0.0, min(1.0, fit / (real.steps + 1)))


class SimulatedProver(CpuProver):
    """The CPU prover's chain, with a device that keeps only what `keep` says and a
    clock (`elapsed_s`) charged per step as described above."""

    name = "simulated"

    def __init__(self, cost: RealCost, keep: KeepPolicy, *, recompute: bool) -> None:
        super().__init__()
        self.cost = cost
        self.keep = keep
        self.recompute = recompute
        self.elapsed_s = 0.0
        self.missing_rows = 0

    def _run(self, challenge: Challenge) -> list[StepTree]:
        d = Derivation.for_challenge(challenge)
        self._x, trees = run_chain(d)
        p, rows = challenge.params, np.arange(challenge.params.n)
        self.elapsed_s = self.missing_rows = 0
        for t in range(p.steps):
            k = p.refs_at(t)
            refs = row_refs(d.seed, t, trees[t].root, rows, k)
            on_board = np.array([self.keep(q) or q == t for q in range(t + 1)])
            missing = int((~on_board[refs.astype(np.int64)]).sum()) if k else 0
            self.missing_rows += missing
            step = self.cost.step(k > 0)
            if not missing:
                self.elapsed_s += step
            elif self.recompute:
                # Each sim row stands for n_real / n_sim real rows of the same step.
                real_rows = missing * self.cost.real.n / p.n
                self.elapsed_s += step + real_rows * self.cost.row()
            else:
                share = missing / (k * p.n)
                self.elapsed_s += max(step, share * self.cost.full_fetch())
        return trees


def offload_prover(cost: RealCost, share: float, sim: ChallengeParams) -> SimulatedProver:
    """Keeps the oldest matrices that fit in `share` of the working set, streams the rest."""
    slots = max(1, round(share * (sim.steps + 1)) - 2)  # X_t and X_{t+1} take two
    return SimulatedProver(cost, lambda q: q < slots, recompute=False)


def minimal_offload_prover(cost: RealCost) -> SimulatedProver:
    """The break's offload prover: B, X_t, X_{t+1} and one reference (X_0) on board."""
    return SimulatedProver(cost, lambda q: q == 0, recompute=False)


def keep_every_prover(cost: RealCost, every: int) -> SimulatedProver:
    """Keeps every `every`-th matrix and recomputes dropped rows it must read."""
    return SimulatedProver(cost, lambda q: q % every == 0, recompute=True)


def honest_prover(cost: RealCost) -> SimulatedProver:
    return SimulatedProver(cost, lambda q: True, recompute=False)


def rates_of(profile: ModelProfile, memory_share: float = 1.0) -> DeviceRates:
    """The catalog's figures at the fraction of peak the reference prover reaches: a
    cheater here runs the same prover as honest devices, less memory."""
    apple = profile.peak_int8_tops is None
    peak = (profile.peak_fp32_tflops if apple else profile.peak_int8_tops) or 0.0
    eff = reference_fraction(profile.key)
    return DeviceRates(
        peak * 1e12 * eff,
        (profile.mem_bandwidth_gbs or 0) * 0.8e9,
        (profile.host_link_gbs or 0) * 1e9,
        profile.vram_mib * 2**20 * memory_share,
    )
