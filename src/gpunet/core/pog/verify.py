"""The coordinator's check of one answered challenge. Pure, CPU only, returns a Verdict.

Order matters for cost: identity and timing checks first (free), then the shape of the
answer, then the Merkle paths of the opened rows (needs their digests: one small GEMM
against D), then the initial rows against the seed, then the exact recomputation of the
sampled chain entries (|I| x |J| dot products of length n per checked step).

Elapsed times are inputs measured by the coordinator (challenge sent -> commitment in,
request sent -> openings in); nothing a prover reports about time is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunet.core.pog.derive import Derivation, b_rows, initial_rows
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.messages import Challenge, Commitment, OpenedRow, OpeningResponse
from gpunet.core.pog.openings import OpeningPlan
from gpunet.core.pog.prf import I8, f_round
from gpunet.core.pog.rowtree import row_on_root
from gpunet.core.pog.verdict import Failure, FailureReason, Success, Verdict


def check_timing(
    challenge: Challenge, commit_elapsed_s: float, open_elapsed_s: float | None = None
) -> Verdict:
    """Deadline checks alone (usable before the openings arrive)."""
    if commit_elapsed_s > challenge.budget_s:
        return Failure(
            FailureReason.TOO_SLOW,
            f"commitment after {commit_elapsed_s:.3f}s, budget {challenge.budget_s:.3f}s",
        )
    if open_elapsed_s is not None and open_elapsed_s > challenge.open_budget_s:
        return Failure(
            FailureReason.OPENING_LATE,
            f"openings after {open_elapsed_s:.3f}s, budget {challenge.open_budget_s:.3f}s",
        )
    return Success()


def check_commitment_shape(challenge: Challenge, commitment: Commitment) -> Verdict:
    if commitment.challenge_id != challenge.id:
        return Failure(FailureReason.WRONG_CHALLENGE, "commitment names another challenge")
    if len(commitment.roots) != challenge.params.steps + 1:
        return Failure(
            FailureReason.MALFORMED,
            f"{len(commitment.roots)} roots, expected {challenge.params.steps + 1}",
        )
    return Success()


@dataclass(frozen=True)
class _Opened:
    """The opened rows, stacked in (step, index) order, and where each one sits."""

    rows: I8
    index: dict[tuple[int, int], int]
    by_key: dict[tuple[int, int], OpenedRow]

    def of(self, keys: list[tuple[int, int]]) -> I8:
        return self.rows[[self.index[k] for k in keys]]


def verify(
    challenge: Challenge,
    commitment: Commitment,
    plan: OpeningPlan,
    response: OpeningResponse,
    *,
    commit_elapsed_s: float,
    open_elapsed_s: float,
    derivation: Derivation | None = None,
) -> Verdict:
    """Full verdict on one challenge.

    `derivation`: optionally `Derivation.for_challenge(...)` of another device of the
    same roll-call, `.with_seed(challenge.seed)`, to reuse its derived D. It must match
    the challenge (checked; a mismatch is a caller bug and raises ValueError).
    """
    v = check_commitment_shape(challenge, commitment)
    if not v:
        return v
    if response.challenge_id != challenge.id or plan.challenge_id != challenge.id:
        return Failure(FailureReason.WRONG_CHALLENGE, "openings name another challenge")
    v = check_timing(challenge, commit_elapsed_s, open_elapsed_s)
    if not v:
        return v
    opened = _exactly_the_requested_rows(challenge, plan, response)
    if isinstance(opened, Failure):
        return opened
    d = derivation or Derivation.for_challenge(challenge)
    if not d.matches(challenge):
        raise ValueError("derivation belongs to another challenge")
    for check in (_on_their_roots, _initial_rows, _checked_entries):
        v = check(challenge, commitment, plan, opened, d)
        if not v:
            return v
    checked = sum(len(c.inputs) * len(c.outputs) for c in plan.checks)
    return Success(f"{len(opened.index)} rows, {checked} entries checked")


def _exactly_the_requested_rows(
    challenge: Challenge, plan: OpeningPlan, response: OpeningResponse
) -> _Opened | Failure:
    n = challenge.params.n
    wanted = {(r.step, r.index) for r in plan.row_refs()}
    got = {(r.step, r.index): r for r in response.rows}
    missing = wanted - got.keys()
    if missing:
        return Failure(FailureReason.MISSING_ROWS, f"{len(missing)} requested rows absent")
    if got.keys() - wanted:
        return Failure(FailureReason.MALFORMED, "rows opened that were not requested")
    if any(len(r.data) != n for r in response.rows):
        return Failure(FailureReason.MALFORMED, f"opened rows must be {n} bytes")
    keys = sorted(wanted)
    rows: I8 = np.frombuffer(b"".join(got[k].data for k in keys), dtype=np.int8).reshape(-1, n)
    return _Opened(rows, {k: i for i, k in enumerate(keys)}, got)


def _on_their_roots(
    ch: Challenge, commitment: Commitment, _plan: OpeningPlan, o: _Opened, d: Derivation
) -> Verdict:
    """Each opened row's digest sits in its chunk, on the root of its step."""
    digests = row_digests(o.rows, d.dt_f32, d.leaf)
    for (step, row), i in o.index.items():
        opened = o.by_key[(step, row)]
        if not row_on_root(
            commitment.roots[step],
            row=row,
            n=ch.params.n,
            digest=digests[i].tobytes(),
            chunk=opened.chunk,
            siblings=opened.siblings,
        ):
            return Failure(
                FailureReason.COMMITMENT_MISMATCH, f"row {row} of step {step} off its root"
            )
    return Success()


def _initial_rows(
    ch: Challenge, _c: Commitment, _plan: OpeningPlan, o: _Opened, d: Derivation
) -> Verdict:
    """Rows of X_0 come from the seed alone."""
    x0 = [k for k in o.index if k[0] == 0]
    if not x0:
        return Success()
    expect = initial_rows(d.keys, [k[1] for k in x0], ch.params.n)
    bad = np.flatnonzero((expect != o.of(x0)).any(axis=1))
    if bad.size:
        return Failure(
            FailureReason.WRONG_INITIAL,
            f"{bad.size} rows of X_0 differ from the seed's (first: {x0[bad[0]][1]})",
        )
    return Success()


def _checked_entries(
    ch: Challenge, _c: Commitment, plan: OpeningPlan, o: _Opened, d: Derivation
) -> Verdict:
    """Exact recomputation: X_{t+1}[j, i] = round(Bt[j] . X_t[i]) + sum_p X_p[j, i] (mod 256)."""
    for c in plan.checks:
        x_in = o.of([(c.step, i) for i in c.inputs])
        fresh = f_round(exact_products(b_rows(d.keys, c.outputs, ch.params.n), x_in))
        cols = list(c.inputs)
        for out, (j, steps) in enumerate(zip(c.outputs, c.refs, strict=True)):
            for ref in steps:
                fresh[out] += o.rows[o.index[(ref, j)]][cols]
        have = o.of([(c.step + 1, j) for j in c.outputs])[:, cols]
        wrong = int((fresh != have).sum())
        if wrong:
            return Failure(
                FailureReason.WRONG_RESULT,
                f"{wrong} of {fresh.size} entries of step {c.step + 1} wrong",
            )
    return Success()
