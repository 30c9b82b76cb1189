"""Time the epoch close for many devices: allocation + Merkle snapshot, pure Python.

Usage: .venv/bin/python bench/rewards_core.py [devices] [repeat] [--worst] [--tracemalloc]

Devices are spread over wallets (about 1.25 devices per wallet) and four GPU models with
basis-point and Fraction weights; 10% served part of the epoch in a customer cluster.
Prints wall seconds per phase (each run, best and median), process CPU seconds (less
sensitive to a busy machine) and peak memory: ru_maxrss for the
whole process, and with --tracemalloc the traced peak of the close itself (tracing slows
Python allocation down noticeably, so its timings are not representative).
"""

from __future__ import annotations

import os
import random
import resource
import sys
import time
import tracemalloc
from fractions import Fraction

from gpunet.core.rewards import DeviceUptime, Weight, allocate, build_snapshot, verify_payout


def make_tied_devices(n: int) -> list[DeviceUptime]:
    """Worst case for the remainder rule: one wallet per device, all scores equal, so
    every wallet ties and every one is hashed for the tie-break."""
    return [DeviceUptime(f"w{i:08x}", "h100", 60) for i in range(n)]


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


def run_once(devices: list[DeviceUptime]) -> tuple[float, float, float, bytes]:
    weights: dict[str, Weight] = {
        "h100": 30_000, "a100": 20_000, "rtx4090": Fraction(7, 6), "l40s": 15_000}
    emission = 12_345_678_901_234_567_890_123 + 999_999
    c0 = time.process_time()
    t0 = time.perf_counter()
    allocation = allocate(42, emission, devices, weights, bonus=Fraction(5, 4),
                          slots_per_epoch=60)
    t1 = time.perf_counter()
    snapshot = build_snapshot(allocation)
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    wallet = snapshot.wallets[len(snapshot.wallets) // 2]
    proof = snapshot.proof(wallet)
    assert verify_payout(snapshot.root, 42, wallet, proof.amount, proof)
    assert sum(allocation.payouts.values()) == emission
    return t1 - t0, t2 - t1, cpu, snapshot.root


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1_000_000
    repeat = int(args[1]) if len(args) > 1 else 3
    trace = "--tracemalloc" in sys.argv
    worst = "--worst" in sys.argv
    devices = make_tied_devices(n) if worst else make_devices(n)
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runs = []
    for _ in range(repeat):
        if trace:
            tracemalloc.start()
        a, s, cpu, root = run_once(devices)
        if trace:
            print(f"tracemalloc_peak_mib={tracemalloc.get_traced_memory()[1] / 2**20:.0f} "
                  "(allocation + snapshot, excluding the input list)")
            tracemalloc.stop()
        runs.append((a + s, a, s, cpu))
        print(f"run: allocate_s={a:.2f} snapshot_s={s:.2f} total_s={a + s:.2f} cpu_s={cpu:.2f}")
    best = min(runs)
    median = sorted(runs)[len(runs) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scenario = "worst (all tied)" if worst else "mixed"
    print(f"devices={n} scenario={scenario} repeat={repeat} cpu={os.cpu_count()} "
          f"python={sys.version.split()[0]}")
    print(f"best: total_s={best[0]:.2f} (allocate {best[1]:.2f} + snapshot {best[2]:.2f}), "
          f"min cpu_s={min(r[3] for r in runs):.2f}")
    print(f"median: total_s={median[0]:.2f}")
    print(f"peak_rss_mib={rss:.0f} (input alone: {rss_input:.0f})")
    print(f"root={root.hex()}")


if __name__ == "__main__":
    main()
