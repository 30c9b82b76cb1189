"""Where a commit's time goes on a GPU: torch.profiler over a short chain of a profile's
shape, the busiest kernels by device time, device time against wall time, and the
host's own per-step work (trees, keys) timed alone.

    python3 bench/pog_profile.py [PROFILE] [--steps T] [--compile]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def host_costs(n: int, steps: int) -> float:
    from gpunet.core.pog.derive import refs_key
    from gpunet.core.pog.rowtree import StepTree

    lanes = np.random.default_rng(0).integers(-2**62, 2**62, (n, 2), dtype=np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        tree = StepTree(lanes.view(np.uint8).reshape(-1, 16))
        refs_key(b"k" * 32, t, tree.root)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    from torch.profiler import ProfilerActivity, profile

    from gpunet.agent.provers.calibrate import _challenge
    from gpunet.agent.provers.torch_prover import CudaProver
    from gpunet.core.pog import default_catalog

    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", default="h200")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--graphs", default="cuda")
    args = ap.parse_args()
    prof = default_catalog().get(args.profile)
    assert prof is not None
    p = prof.params.model_copy(update={
        "steps": args.steps, "read_steps": args.steps // 3,
        "checked_steps": min(args.steps, prof.params.checked_steps)})
    prover = CudaProver(graphs=args.graphs, compile=args.compile)
    prover.warm_up(p)
    prover.commit(_challenge(args.profile, p, "warm"))
    prover.release()
    ch = _challenge(args.profile, p, "profiled")
    t0 = time.perf_counter()
    prover.commit(ch)
    plain = time.perf_counter() - t0
    prover.release()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        t0 = time.perf_counter()
        prover.commit(_challenge(args.profile, p, "profiled-2"))
        wall = time.perf_counter() - t0
    prover.release()
    events = trace.key_averages()
    device_us = sum(e.self_device_time_total for e in events)
    print(f"{args.profile} n={p.n} T={p.steps} read={p.read_steps} k={p.refs} "
          f"graphs={args.graphs} compile={args.compile}")
    print(f"wall {plain * 1e3 / p.steps:.2f} ms/step unprofiled, {wall * 1e3 / p.steps:.2f} "
          f"profiled; device busy {device_us / 1e3 / p.steps:.2f} ms/step")
    print(f"host tree+key alone: {host_costs(p.n, 200) * 1e3:.3f} ms/step")
    print(events.table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=60))


if __name__ == "__main__":
    main()
