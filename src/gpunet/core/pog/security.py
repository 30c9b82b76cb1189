"""The numbers behind the security argument: escape probabilities and time estimates.

Used by docs/proof-of-gpu.md, the catalog's datasheet estimates and the benchmarks, so
the figures quoted are the figures computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpunet.core.pog.params import ChallengeParams

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
    """What a device can do: achieved int8 ops/s and memory bytes/s."""

    int8_ops_s: float
    mem_bytes_s: float


def elementwise_bytes(params: ChallengeParams) -> int:
    """Device memory traffic outside the GEMMs, per challenge (derivation, rounding,
    reference XORs, digest tree)."""
    n2 = params.matrix_bytes
    per_step = (4 + 4 + 1) * n2 + (2 * params.refs + 1) * n2  # int32 out, round, xor
    derive = 2 * 8 * n2  # X_0 and B through int64 words
    return params.steps * per_step + derive


def expected_seconds(params: ChallengeParams, rates: DeviceRates) -> float:
    """Model of an honest run: GEMMs at the achieved rate + memory traffic + host Merkle."""
    return (
        params.total_ops / rates.int8_ops_s
        + elementwise_bytes(params) / rates.mem_bytes_s
        + (params.steps + 1) * params.n * HOST_SECONDS_PER_ROW
    )


def opening_bytes(params: ChallengeParams) -> int:
    """Upper bound of the row payload of one opening (Merkle paths excluded)."""
    return params.opened_rows_max * params.n
