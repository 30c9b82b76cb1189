"""Prover efficiency: achieved int8 throughput of a challenge / the backend's own plain
GEMM throughput on the same machine (goal >= 0.85 on GPUs; 0.37 on an H200 so far, see
bench/pog_device.py and BENCHMARKS.md), via `calibrate`.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/pog_prover.py
    .venv/bin/python bench/pog_prover.py cuda 65536 15   # on a GPU host: backend n steps

(On the shared 2-vCPU dev machine, busy with other work, one thread per process gives
steadier and higher figures than two: multi-threaded kernels stall on descheduled
threads. Both the challenge and the plain GEMM run under the same setting.)

"achieved" counts the int8 operations of the chain and of the digest sketches (both run
on the same GEMM kernel); "chain only" counts the chain's GEMMs alone. Also prints the
cpu-dev profile's time per challenge. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import sys

from gpunet.agent.provers.calibrate import calibrate
from gpunet.core.pog import ChallengeParams


def run(
    backend: str, n: int, steps: int, width: int = 64, repeats: int = 3, refs: int = 24
) -> None:
    # The last 30% of the steps read `refs` older rows per row, as catalog profiles do.
    p = ChallengeParams(n=n, steps=steps, refs=refs, read_steps=max(1, round(0.3 * steps)),
                        digest_width=width, rows_per_check=1, checked_steps=min(64, steps))
    r = calibrate("cpu-dev", backend, params=p, repeats=repeats)
    # Best run against best plain GEMM: both least disturbed by other load on the host.
    best = min(r.runs_s)
    total = p.total_ops / best / 1e12
    chain = p.gemm_ops / best / 1e12
    print(f"{backend:>10} n={n:>6} T={steps:>3} m={width:>4}  self-test {r.self_test_passed!s:>5}  "
          f"commit best {best:7.3f}s median {r.commit_s:7.3f}s  open {r.open_s * 1e3:6.1f}ms  "
          f"plain {r.plain_gemm_tops:6.4f} TOPS  achieved {total:6.4f}  "
          f"efficiency {total / r.plain_gemm_tops:5.3f} (chain only "
          f"{chain / r.plain_gemm_tops:5.3f})", flush=True)


def main(argv: list[str]) -> None:
    if argv:
        backend, n, steps = argv[0], int(argv[1]), int(argv[2])
        run(backend, n, steps, width=int(argv[3]) if len(argv) > 3 else 128)
        return
    r = calibrate("cpu-dev", "cpu", repeats=9)
    print(f"cpu-dev profile, NumPy prover: median commit {r.commit_s * 1e3:.1f} ms, "
          f"open {r.open_s * 1e3:.1f} ms (runs {', '.join(f'{x * 1e3:.0f}' for x in r.runs_s)} ms)")
    for backend, sizes in (("cpu", ((1024, 8), (2048, 8))),
                           ("torch-cpu", ((1024, 8), (2048, 8), (4096, 6), (8192, 3)))):
        for n, steps in sizes:
            run(backend, n, steps)


if __name__ == "__main__":
    main(sys.argv[1:])
