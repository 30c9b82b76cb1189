"""Coordinator CPU cost of verifying one answered challenge, for every catalog model,
plus the discrimination table between catalog models.

No GPU is needed: for a model's real parameters (an H100 challenge is 16 matrices of
4 GiB) the bench builds the response an honest prover would send -- exactly the rows the
plan opens, consistent at every checked entry, with Merkle paths to roots over n leaves
-- using the verifier's own derivation. (To do so it knows the plan before "committing",
which a real prover cannot; that changes nothing about what `verify` computes.)

    .venv/bin/python bench/pog_verify.py            # all models, 5 repeats each
    .venv/bin/python bench/pog_verify.py h100-sxm   # one model

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time

import numpy as np

from gpunet.core.merkle import MerkleTree, hash_leaf
from gpunet.core.pog import (
    Commitment,
    OpenedRow,
    OpeningResponse,
    default_catalog,
    issue_challenge,
    plan_openings,
    verify,
)
from gpunet.core.pog.derive import Derivation, b_rows, initial_rows
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.prf import f_round
from gpunet.core.pog.security import DeviceRates, expected_seconds

NOW = __import__("datetime").datetime.now(__import__("datetime").UTC)


def honest_looking_answer(challenge, plan):
    """Rows and roots consistent with every check of `plan` (see module docstring)."""
    p = challenge.params
    d = Derivation.for_challenge(challenge)
    rng = np.random.default_rng(0)
    rows: dict[tuple[int, int], np.ndarray] = {}

    def row(step: int, i: int) -> np.ndarray:
        if (step, i) not in rows:
            rows[(step, i)] = (
                initial_rows(d.keys, [i], p.n)[0]
                if step == 0
                else rng.integers(-128, 128, p.n, dtype=np.int8)
            )
        return rows[(step, i)]

    for c in plan.checks:  # ascending steps: rows of X_{t+1} are fixed only here
        x_in = np.stack([row(c.step, i) for i in c.inputs])
        fresh = f_round(exact_products(b_rows(d.keys, c.outputs, p.n), x_in))
        for jj, j in enumerate(c.outputs):
            value = fresh[jj].copy()
            for q in c.refs:
                value ^= row(q, j)[list(c.inputs)]
            row(c.step + 1, j)[list(c.inputs)] = value
    for ref in plan.row_refs():
        row(ref.step, ref.index)

    keys = sorted(rows)
    digests = row_digests(np.stack([rows[k] for k in keys]), d.dt, d.leaf)
    by_step: dict[int, dict[int, bytes]] = {}
    for k, dg in zip(keys, digests, strict=True):
        by_step.setdefault(k[0], {})[k[1]] = hash_leaf(dg.tobytes())
    trees, filler = [], np.random.default_rng(1)
    for step in range(p.steps + 1):
        leaves = [hashlib.sha256(filler.bytes(16)).digest() for _ in range(p.n)]
        for i, h in by_step.get(step, {}).items():
            leaves[i] = h
        trees.append(MerkleTree(leaves))
    commitment = Commitment(challenge_id=challenge.id, roots=tuple(t.root for t in trees),
                            elapsed_s=1.0)
    opened = tuple(
        OpenedRow(step=s, index=i, data=rows[(s, i)].tobytes(),
                  siblings=trees[s].proof(i).siblings)
        for s, i in keys
    )
    return commitment, OpeningResponse(challenge_id=challenge.id, rows=opened)


def bench_model(key: str, repeats: int = 5) -> dict:
    profile = default_catalog().get(key)
    ch = issue_challenge(profile, now=NOW, roll_call_seed=b"\x05" * 32)
    plan = plan_openings(ch, b"\x07" * 32)
    commitment, response = honest_looking_answer(ch, plan)
    payload = len(response.model_dump_json())
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
        "model": key, "n": ch.params.n, "steps": ch.params.steps,
        "rows": len(response.rows), "entries": ch.params.checked_entries,
        "json_mb": payload / 1e6, "wall_ms": wall, "cpu_ms": cpu, "cpu_shared_ms": cpu_shared,
    }


def discrimination() -> None:
    """Expected time of device A (row) on the challenge of claimed model B (column), as a
    multiple of B's budget; '--' = A cannot hold B's working set (memory phase)."""
    cat = [m for m in default_catalog().models if not m.dev_only]
    eff = {"cuda": 0.65, "mps": 0.5}
    short = {m.key: m.key.replace("apple-", "").replace("-", "")[:9] for m in cat}
    print("\nDiscrimination: (expected time of actual A on claimed B's challenge) / B's budget")
    print("  >1 fails on time, '--' cannot hold B's matrices")
    head = "actual | claimed"
    print(f"{head:>17} " + " ".join(f"{short[b.key]:>9}" for b in cat))
    for a in cat:
        peak = (a.peak_int8_tops or a.peak_fp32_tflops or 1) * 1e12
        rates = DeviceRates(peak * eff[a.backend], (a.mem_bandwidth_gbs or 1) * 1e9 * 0.8)
        cells = []
        for b in cat:
            if b.params.resident_bytes > a.vram_mib * 2**20:
                cells.append(f"{'--':>9}")
            else:
                ratio = expected_seconds(b.params, rates) / b.budget.budget_s
                cells.append(f"{ratio:>9.2f}")
        print(f"{a.key:>17} " + " ".join(cells))


def main(argv: list[str]) -> None:
    keys = argv or [m.key for m in default_catalog().models]
    print(f"{'model':>13} {'n':>6} {'T':>3} {'rows':>5} {'entries':>7} {'JSON MB':>8} "
          f"{'wall ms':>8} {'cpu ms':>7} {'cpu ms, D shared by roll-call':>30}")
    for key in keys:
        r = bench_model(key)
        print(f"{r['model']:>13} {r['n']:>6} {r['steps']:>3} {r['rows']:>5} {r['entries']:>7} "
              f"{r['json_mb']:>8.1f} {r['wall_ms']:>8.1f} {r['cpu_ms']:>7.1f} "
              f"{r['cpu_shared_ms']:>30.1f}", flush=True)
    if not argv:
        discrimination()


if __name__ == "__main__":
    main(sys.argv[1:])
