"""Which rows the coordinator asks a prover to open, drawn after the commitment.

The plan is a pure function of a fresh server secret (never sent to the prover) and the
challenge, so a coordinator replica can store the secret alone and re-derive the plan
when the response arrives. A prover learns the plan only as the rows it is asked for,
after its roots are fixed: that is what makes skipped work a gamble.

The plan draws one set K_s of `rows_per_check` rows for every step s it touches. Check t
takes I = K_t as inputs and J = K_{t+1} as outputs, and the verifier recomputes the
|I| x |J| entries X_{t+1}[J, I] exactly; rows J of every step referenced by t are opened
too (they are XORed into X_{t+1}). The output sets are fresh for every checked step, so
a prover that faked rows is probed checked_steps * rows_per_check times. Transition 0 is
always checked, so X_0 rows are always compared with their derivation from the seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gpunet.core.pog.derive import row_refs
from gpunet.core.pog.messages import Challenge, Commitment, OpeningRequest, RowRef
from gpunet.core.pog.params import ChallengeParams

PLAN_LABEL = b"gpunet/pog/v2/plan"


@dataclass(frozen=True)
class Check:
    """Recompute X_{step+1}[outputs, inputs] from rows `inputs` of X_step.

    `refs[o]` are the steps whose row `outputs[o]` is added into X_{step+1}[outputs[o]].
    """

    step: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    refs: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class OpeningPlan:
    challenge_id: str
    checks: tuple[Check, ...]

    def row_refs(self) -> tuple[RowRef, ...]:
        """The distinct (step, row) pairs to open, sorted."""
        wanted: set[tuple[int, int]] = set()
        for c in self.checks:
            wanted.update((c.step, i) for i in c.inputs)
            wanted.update((c.step + 1, j) for j in c.outputs)
            for j, steps in zip(c.outputs, c.refs, strict=True):
                wanted.update((p, j) for p in steps)
        return tuple(RowRef(step=s, index=i) for s, i in sorted(wanted))

    def request(self) -> OpeningRequest:
        return OpeningRequest(challenge_id=self.challenge_id, rows=self.row_refs())


class _Draw:
    """SHA-256 in counter mode: uniform integers from a secret, reproducibly."""

    def __init__(self, secret: bytes, context: bytes) -> None:
        self._key = hashlib.sha256(PLAN_LABEL + secret + context).digest()
        self._ctr = 0

    def below(self, bound: int) -> int:
        # 64-bit draws modulo bound <= 2^16: bias below 2^-48, irrelevant here.
        h = hashlib.sha256(self._key + self._ctr.to_bytes(8, "little")).digest()
        self._ctr += 1
        return int.from_bytes(h[:8], "little") % bound

    def distinct(self, bound: int, count: int) -> tuple[int, ...]:
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < count:
            v = self.below(bound)
            if v not in seen:
                seen.add(v)
                chosen.append(v)
        return tuple(chosen)


def _checked_steps(p: ChallengeParams, draw: _Draw) -> list[int]:
    """Transition 0, then half of the remaining checks in the read phase and half in the
    fill phase (each drawn without repetition), so that faking either phase is probed
    ~checked_steps / 2 times however short the read phase is."""
    if p.checked_steps >= p.steps:
        return list(range(p.steps))
    first_read = p.first_read_step
    in_read, in_fill = p.check_split
    chosen = {0}
    chosen.update(first_read + i for i in draw.distinct(p.steps - first_read, in_read))
    chosen.update(1 + i for i in draw.distinct(first_read - 1, in_fill))
    return sorted(chosen)


def plan_openings(challenge: Challenge, secret: bytes, commitment: Commitment) -> OpeningPlan:
    """The checks for one challenge. `secret` must be fresh, >= 16 bytes, drawn after the
    commitment arrived, and kept from the prover; `commitment` must have the challenge's
    shape (check_commitment_shape) since its roots choose the reference rows."""
    if len(secret) < 16:
        raise ValueError("the opening secret has at least 128 bits")
    p = challenge.params
    if len(commitment.roots) != p.steps + 1:
        raise ValueError("the commitment does not fit the challenge")
    draw = _Draw(secret, challenge.id.encode() + challenge.seed)
    steps = _checked_steps(p, draw)
    rows: dict[int, tuple[int, ...]] = {}

    def rows_of(step: int) -> tuple[int, ...]:
        # One row set per step, shared by the check that ends there (as outputs) and the
        # check that starts there (as inputs): a third fewer rows, same number of probes.
        if step not in rows:
            rows[step] = draw.distinct(p.n, p.rows_per_check)
        return rows[step]

    checks = []
    for t in steps:
        inputs, outputs = rows_of(t), rows_of(t + 1)
        refs = row_refs(challenge.seed, t, commitment.roots[t], outputs, p.refs_at(t))
        checks.append(
            Check(
                step=t,
                inputs=inputs,
                outputs=outputs,
                refs=tuple(tuple(int(s) for s in r) for r in refs),
            )
        )
    return OpeningPlan(challenge_id=challenge.id, checks=tuple(checks))
