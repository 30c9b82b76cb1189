"""Time the epoch close for many devices: allocation + Merkle snapshot, pure Python.

Usage: .venv/bin/python bench/rewards_core.py [devices] [--tracemalloc]

Devices are spread over wallets (about 1.25 devices per wallet) and four GPU models with
basis-point and Fraction weights; 10% served part of the epoch in a customer cluster.
Prints seconds per phase and peak memory (ru_maxrss; tracemalloc on request, which
slows Python allocation down noticeably).
"""

from __future__ import annotations

import random
import resource
import sys
import time
import tracemalloc
from fractions import Fraction

from gpunet.core.rewards import DeviceUptime, allocate, build_snapshot, verify_payout


def make_devices(n: int, seed: int = 7) -> list[DeviceUptime]:
    rng = random.Random(seed)
    models = ["h100", "a100", "rtx4090", "l40s"]
    wallets = max(1, n * 4 // 5)
    out = []
    for i in range(n):
        slots = 60 if rng.random() < 0.8 else rng.randrange(0, 61)
        cluster = rng.randrange(0, slots + 1) if rng.random() < 0.1 else 0
        out.append(DeviceUptime(f"w{rng.randrange(wallets):08x}", models[i % 4], slots, cluster))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    trace = "--tracemalloc" in sys.argv
    weights = {"h100": 30_000, "a100": 20_000, "rtx4090": Fraction(7, 6), "l40s": 15_000}
    emission = 12_345_678_901_234_567_890_123
    devices = make_devices(n)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    allocation = allocate(42, emission, devices, weights, bonus=Fraction(5, 4),
                          slots_per_epoch=60)
    t1 = time.perf_counter()
    snapshot = build_snapshot(allocation)
    t2 = time.perf_counter()
    wallet = snapshot.wallets[len(snapshot.wallets) // 2]
    proof = snapshot.proof(wallet)
    ok = verify_payout(snapshot.root, 42, wallet, proof.amount, proof)
    t3 = time.perf_counter()
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    assert ok and sum(allocation.payouts.values()) == emission
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"devices={n} wallets_paid={len(allocation.payouts)}")
    print(f"allocate_s={t1 - t0:.2f} snapshot_s={t2 - t1:.2f} proof+verify_s={t3 - t2:.4f} "
          f"total_s={t2 - t0:.2f}")
    print(f"peak_rss_mib={rss_mib:.0f} (whole process, includes the generated input)")
    if traced is not None:
        print(f"tracemalloc_peak_mib={traced / 2**20:.0f} (allocation + snapshot only)")
    print(f"root={snapshot.root.hex()}")


if __name__ == "__main__":
    main()
