"""The numbers behind the security argument: escape probabilities and time estimates.

Used by docs/proof-of-gpu.md, the catalog's datasheet estimates and the benchmarks, so
the figures quoted are the figures computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.wire import max_body

# Host-side SHA-256 Merkle work per committed row (measured on the 2-vCPU dev machine:
# ~70 ms for a 65,536-leaf tree). Part of every honest answer, same for all GPUs.
HOST_SECONDS_PER_ROW = 1.1e-6


def escape_row_skipping(d: float, params: ChallengeParams) -> float:
    """Chance a prover that faked a fraction d of the rows of every step passes.

    Each checked transition opens `rows_per_check` fresh output rows, chosen after the
    commitment. A faked row agrees with the exact recomputation of each of its checked
    entries with chance ~2^-8, i.e. it is caught whenever it is opened (to within 2^-8a),
    so the prover escapes iff no opened output row is faked:
    (1 - d)^(checked_steps * rows_per_check).
    """
    return (1.0 - d) ** (params.checked_steps * params.rows_per_check)


def escape_entry_skipping(d: float, params: ChallengeParams) -> float:
    """Faking a fraction d of scattered entries: every checked entry is a probe."""
    return (1.0 - d) ** params.checked_entries


def escape_step_skipping(skipped_steps: int, params: ChallengeParams) -> float:
    """Faking whole steps: escapes only if no faked transition is checked."""
    t, c = params.steps, params.checked_steps
    if skipped_steps > t - c:
        return 0.0
    return math.comb(t - skipped_steps, c) / math.comb(t, c)


@dataclass(frozen=True)
class DeviceRates:
    """What a device can do: achieved int8 ops/s, device memory bytes/s, and the host
    link (PCIe) bytes/s in one direction, plus how much device memory it has."""

    int8_ops_s: float
    mem_bytes_s: float
    host_link_bytes_s: float = 64e9
    memory_bytes: float = float("inf")


# What a prover needs besides the committed matrices: B, the step being written, CUDA
# context and GEMM workspace (bytes, rounded up).
SCRATCH_BYTES = 2 << 30


def elementwise_bytes(params: ChallengeParams) -> int:
    """Device memory traffic outside the GEMMs, per challenge (derivation, rounding,
    reference reads and adds, digest tree)."""
    n2 = params.matrix_bytes
    derive = 2 * 8 * n2  # X_0 and B through int64 words
    return sum(_step_bytes(params, t) for t in range(params.steps)) + derive


def reference_fraction(model_key: str) -> float:
    """Fraction of peak int8 (Apple: fp32) the reference prover (agent.provers) reaches
    on a catalog model, as the time model uses it. Hopper's is fitted to an H200 with
    REF_TRAFFIC (torch's int8 GEMM reaches ~0.47 of peak there: an sm80 kernel); the
    other NVIDIA figures are the earlier datasheet assumptions (A100 0.7, others 0.6)
    scaled by the same measured-to-assumed ratio, 0.36 / 0.65, until measured."""
    if model_key.startswith(("h100", "h200")):
        return 0.36
    if model_key.startswith("a100"):
        return 0.39
    if model_key.startswith("apple"):
        return 0.5
    return 0.33


# Device traffic per reference row, in matrices, of the reference prover: the gather
# reads the rows and writes them as words, the sum reads them again, and a gather runs
# below a plain copy's bandwidth. Fitted with `reference_fraction` to four H200 commits
# (two parameter sets of each Hopper profile): each within 1.5%; a fifth, measured after
# the fit (h200 at k = 64), came 5% slower than the model (BENCHMARKS.md).
REF_TRAFFIC = 4


def _step_bytes(params: ChallengeParams, t: int) -> int:
    # int32 products written and read, rounded bytes written, then the reference rows.
    refs = REF_TRAFFIC * params.refs_at(t) * params.matrix_bytes
    return (4 + 4 + 1) * params.matrix_bytes + refs


def step_seconds(params: ChallengeParams, rates: DeviceRates, t: int) -> float:
    """Honest step t: its GEMM, its digest sketches, its element-wise traffic."""
    ops = params.total_ops / params.steps
    return ops / rates.int8_ops_s + _step_bytes(params, t) / rates.mem_bytes_s


def expected_seconds(params: ChallengeParams, rates: DeviceRates) -> float:
    """Model of an honest run: every step at the achieved rates, plus the host's trees
    (built while the device runs the next step, so only the last is on the clock)."""
    steps = sum(step_seconds(params, rates, t) for t in range(params.steps))
    derive = 2 * 8 * params.matrix_bytes / rates.mem_bytes_s
    return steps + derive + params.n * HOST_SECONDS_PER_ROW


def held_matrices(params: ChallengeParams, rates: DeviceRates) -> int:
    """How many committed matrices fit in the device's memory beside its scratch."""
    return max(2, int((rates.memory_bytes - SCRATCH_BYTES) // params.matrix_bytes))


def missing_fraction(step: int, held: int) -> float:
    """Share of step `step`'s reference reads that fall on matrices a device holding
    `held` of X_0..X_step cannot have on board (references are uniform over 0..step-1
    and chosen only once X_step is complete, so no choice of what to keep does better)."""
    if step == 0:
        return 0.0
    return max(0.0, (step + 1 - held) / step)


def offload_seconds(params: ChallengeParams, rates: DeviceRates) -> float:
    """Best case of a prover that keeps what fits and streams the rest over its host
    link, overlapping every transfer with its compute (each step costs the larger of
    the two). Transfers cannot start before the step does: the rows a step reads are
    drawn from the root of the step before."""
    held = held_matrices(params, rates)
    total = 0.0
    for t in range(params.steps):
        read = params.refs_at(t) * params.matrix_bytes * missing_fraction(t, held)
        total += max(step_seconds(params, rates, t), read / rates.host_link_bytes_s)
    return total


def recompute_seconds(params: ChallengeParams, rates: DeviceRates, keep: float) -> float:
    """Best case of a prover that keeps a fraction `keep` of the matrices (every other:
    1/2, every third: 1/3) and recomputes each dropped row it must read from the kept
    step before it: 2 n^2 operations per row, counting nothing for that row's own
    references (a lower bound)."""
    row = 2 * params.n**2 / rates.int8_ops_s
    return sum(
        step_seconds(params, rates, t) + params.refs_at(t) * params.n * (1 - keep) * row
        for t in range(params.steps)
    )


def minimal_offload_seconds(params: ChallengeParams, rates: DeviceRates) -> float:
    """The offload prover of the first break: B, X_t, X_{t+1} and one reference on the
    device, every other matrix in host memory, streamed back as cleverly as possible."""
    board = DeviceRates(rates.int8_ops_s, rates.mem_bytes_s, rates.host_link_bytes_s,
                        SCRATCH_BYTES + 4 * params.matrix_bytes)
    return offload_seconds(params, board)


def best_memory_cheat_seconds(params: ChallengeParams, rates: DeviceRates) -> float:
    """The fastest of the strategies above for a device that cannot hold the working
    set: offload what does not fit, or keep what fits and recompute the rest."""
    need = (params.steps + 1) * params.matrix_bytes + SCRATCH_BYTES
    if rates.memory_bytes >= need:
        return expected_seconds(params, rates)
    keep = min(1.0, held_matrices(params, rates) / (params.steps + 1))
    return min(offload_seconds(params, rates), recompute_seconds(params, rates, keep))


def opening_bytes(params: ChallengeParams) -> int:
    """Upper bound of the row payload of one opening (Merkle paths excluded)."""
    return params.opened_rows_max * params.n


UPLINK_BYTES_S = 10e6 / 8  # the slowest uplink a supplier is expected to have: 10 Mbit/s


def opening_window_seconds(params: ChallengeParams) -> float:
    """How long a device has to deliver its openings: the largest opening over a
    10 Mbit/s uplink, with a quarter more for protocol overhead and 5 s for the round
    trip and the coordinator's parse. Openings reveal rows the roots already fixed, so
    this window is not what proves speed (the commitment is); see the doc for what a
    longer window gives a cheater."""
    return min(600.0, max_body(params) / UPLINK_BYTES_S * 1.25 + 5.0)
