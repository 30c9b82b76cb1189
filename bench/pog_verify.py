"""Bytes on the wire and coordinator CPU per verification, for every catalog model, plus
the discrimination table between catalog models.

No GPU is needed: for a model's real parameters (an H100 challenge is 1,082 matrices of
64 MiB) the bench builds the answer an honest prover would send -- exactly the rows the
plan opens, consistent at every checked entry, on roots of real chunked trees -- using
the verifier's own derivation. (To do so it knows the opening secret before
"committing", which a real prover cannot; that changes nothing about what `verify`
computes.) "up MB" is what a device uploads (commitment JSON + binary openings), "s @10Mb"
the time that takes on a 10 Mbit/s uplink, "window" the profile's opening window.

    .venv/bin/python bench/pog_verify.py            # all models, 5 repeats each
    .venv/bin/python bench/pog_verify.py h100-sxm   # one model

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gpunet.core.pog import (
    Commitment,
    OpenedRow,
    OpeningResponse,
    default_catalog,
    issue_challenge,
    plan_openings,
    verify,
)
from gpunet.core.pog.derive import Derivation, b_rows, initial_rows, row_refs
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.prf import f_round
from gpunet.core.pog.rowtree import StepTree
from gpunet.core.pog.security import best_memory_cheat_seconds
from gpunet.core.pog.wire import decode_openings, encode_openings, max_body

NOW = __import__("datetime").datetime.now(__import__("datetime").UTC)


def honest_looking_answer(challenge, secret):
    """Roots and rows consistent with every check of the plan `secret` draws.

    The plan's steps and row sets depend on the secret alone; the reference steps of a
    check at t depend on the root of X_t. So the steps are built in order: every row a
    later check might read (rows J_t of every step below a read check t), every row the
    plan opens, and random digests elsewhere make each step's tree; once root_t is known,
    check t's references are too, and its output entries are set to the exact values.
    """
    p = challenge.params
    d = Derivation.for_challenge(challenge)
    skeleton = plan_openings(challenge, secret, Commitment(
        challenge_id=challenge.id, roots=(bytes(32),) * (p.steps + 1), elapsed_s=1.0))
    check_at = {c.step: c for c in skeleton.checks}
    wanted: dict[int, set[int]] = {}
    for c in skeleton.checks:
        wanted.setdefault(c.step, set()).update(c.inputs)
        wanted.setdefault(c.step + 1, set()).update(c.outputs)
        if p.refs_at(c.step):
            for s in range(c.step):
                wanted.setdefault(s, set()).update(c.outputs)
    rows: dict[tuple[int, int], np.ndarray] = {}
    filler = np.random.default_rng(1)
    trees, roots = [], []
    for step in range(p.steps + 1):
        idx = sorted(wanted.get(step, ()))
        for i in idx:
            rows[(step, i)] = (initial_rows(d.keys, [i], p.n)[0] if step == 0
                               else filler.integers(-128, 128, p.n, dtype=np.int8))
        c = check_at.get(step - 1)
        if c is not None:  # fix the checked entries of X_step from X_{step-1}
            refs = row_refs(challenge.seed, c.step, roots[c.step], c.outputs, p.refs_at(c.step))
            x_in = np.stack([rows[(c.step, i)] for i in c.inputs])
            fresh = f_round(exact_products(b_rows(d.keys, c.outputs, p.n), x_in))
            cols = list(c.inputs)
            for o, j in enumerate(c.outputs):
                value = fresh[o].copy()
                for q in refs[o].tolist():
                    value += rows[(q, j)][cols]
                rows[(step, j)][cols] = value
        digests = filler.integers(0, 256, (p.n, 16), dtype=np.uint8)
        if idx:
            digests[idx] = row_digests(np.stack([rows[(step, i)] for i in idx]), d.dt, d.leaf)
        trees.append(StepTree(digests))
        roots.append(trees[-1].root)
    commitment = Commitment(challenge_id=challenge.id, roots=tuple(roots), elapsed_s=1.0)
    plan = plan_openings(challenge, secret, commitment)
    opened = []
    for ref in plan.row_refs():
        chunk, siblings = trees[ref.step].opening(ref.index)
        opened.append(OpenedRow(step=ref.step, index=ref.index,
                                data=rows[(ref.step, ref.index)].tobytes(),
                                chunk=chunk, siblings=siblings))
    return commitment, plan, OpeningResponse(challenge_id=challenge.id, rows=tuple(opened))


def bench_model(key: str, repeats: int = 5) -> dict:
    profile = default_catalog().get(key)
    ch = issue_challenge(profile, now=NOW, roll_call_seed=b"\x05" * 32)
    commitment, plan, response = honest_looking_answer(ch, b"\x07" * 32)
    body = encode_openings(response)
    t0 = time.process_time()
    decoded = decode_openings(body, n=ch.params.n, max_rows=len(plan.row_refs()))
    decode_ms = 1e3 * (time.process_time() - t0)
    assert decoded == response
    up = len(commitment.model_dump_json()) + len(body)
    # D derived once for a roll-call of several devices, then reused per device.
    shared = Derivation(b"\x09" * 32, ch.params, ch.roll_call_seed)
    shared.dt_f32  # noqa: B018 - derive it outside the timed region

    def timed(derivation=None) -> tuple[float, float]:
        times, cpu = [], []
        for _ in range(repeats):
            d = derivation.with_seed(ch.seed) if derivation else None
            t0, c0 = time.perf_counter(), time.process_time()
            verdict = verify(ch, commitment, plan, response, commit_elapsed_s=1.0,
                             open_elapsed_s=1.0, derivation=d)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert verdict, verdict
        return 1e3 * statistics.median(times), 1e3 * statistics.median(cpu)

    wall, cpu = timed()
    _, cpu_shared = timed(shared)
    return {
        "model": key, "n": ch.params.n, "steps": ch.params.steps, "k": ch.params.refs,
        "rows": len(response.rows), "entries": ch.params.checked_entries,
        "up_mb": up / 1e6, "max_mb": max_body(ch.params) / 1e6,
        "at_10mbit_s": up * 8 / 10e6, "window_s": profile.budget.open_budget_s,
        "decode_ms": decode_ms, "wall_ms": wall, "cpu_ms": cpu, "cpu_shared_ms": cpu_shared,
    }


def discrimination() -> None:
    """Time of device A (row) on the challenge of claimed model B (column), as a multiple
    of B's budget: the honest time if A holds B's working set, else A's best memory
    cheat (offload over its host link, or keep what fits and recompute)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pog_catalog import MODELS, rates_of

    cat = {m.key: m for m in default_catalog().models}
    short = {r[0]: r[0].replace("apple-", "").replace("-", "")[:9] for r in MODELS}
    print("\nDiscrimination: (time of actual A on claimed B's challenge) / B's budget, > 1 fails")
    head = "actual | claimed"
    print(f"{head:>17} " + " ".join(f"{short[b[0]]:>9}" for b in MODELS))
    for a in MODELS:
        cells = []
        for b in MODELS:
            params = cat[b[0]].params
            ratio = best_memory_cheat_seconds(params, rates_of(a)) / cat[b[0]].budget.budget_s
            cells.append(f"{ratio:>9.2f}")
        print(f"{a[0]:>17} " + " ".join(cells))


def main(argv: list[str]) -> None:
    keys = argv or [m.key for m in default_catalog().models]
    print(f"{'model':>13} {'n':>5} {'T':>4} {'k':>2} {'rows':>5} {'up MB':>6} {'max MB':>6} "
          f"{'s @10Mb':>7} {'window':>6} {'decode ms':>9} {'wall ms':>7} {'cpu ms':>6} "
          f"{'cpu ms, D shared':>16}")
    for key in keys:
        r = bench_model(key)
        print(f"{r['model']:>13} {r['n']:>5} {r['steps']:>4} {r['k']:>2} {r['rows']:>5} "
              f"{r['up_mb']:>6.2f} {r['max_mb']:>6.2f} {r['at_10mbit_s']:>7.1f} "
              f"{r['window_s']:>6.1f} {r['decode_ms']:>9.1f} {r['wall_ms']:>7.1f} "
              f"{r['cpu_ms']:>6.1f} {r['cpu_shared_ms']:>16.1f}", flush=True)
    if not argv:
        discrimination()


if __name__ == "__main__":
    main(sys.argv[1:])
