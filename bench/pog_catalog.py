"""Regenerate the challenge parameters and datasheet budgets in catalog.json.

For every GPU model the parameters are chosen by the time model of core.pog.security:

* n and the number of steps T fill ~85% of the card's memory with X_0..X_T;
* the last `read_steps` steps read k older rows per row, chosen from the root of the
  step before (memory that binds);
* among the (n, k, read_steps) that make the best memory cheat (offload over the host
  link, or keep a part and recompute the rest) of a device holding 65% of the working
  set at least CHEAT_RATIO times slower than an honest run, and the honest run at least
  MIN_SECONDS long, the one with the smallest opening wins (it must cross a 10 Mbit/s
  uplink); where none binds that well, the one that comes closest (printed).

Models whose budget is `calibrated: true` (measured with `gpunet calibrate`) keep their
parameters and budget as long as those parameters still bind.

    .venv/bin/python bench/pog_catalog.py          # rewrite catalog.json
    .venv/bin/python bench/pog_catalog.py --check  # show what would change
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.security import (
    DeviceRates,
    best_memory_cheat_seconds,
    expected_seconds,
    minimal_offload_seconds,
    opening_window_seconds,
    recompute_seconds,
    reference_fraction,
)
from gpunet.core.pog.wire import max_body

CATALOG = Path(__file__).resolve().parents[1] / "src/gpunet/core/pog/catalog.json"
MARGIN = 1.2  # below the closest ratio between models a device may want to pass for
CHECKS = 64  # checked transitions, one row each side: escape at d = 0.2 below 1e-6
CHEAT_RATIO = 1.3  # best memory cheat at 65% of the working set, over the honest time
CHEAT_HOLDS = 0.65
MIN_SECONDS = 1.2
FILL = 0.85  # of the card's memory
DS = "vendor datasheet (dense, no sparsity), /work/shared/REFERENCE.md"
PCIE = ("PCIe x16 one direction: gen 5 64 GB/s, gen 4 32 GB/s (theoretical peak, the "
        "attacker's best case)")

# key, name, vendor, backend, NVML/Metal names, vram MiB, peak (int8 TOPS; Apple: fp32
# TFLOPS), bandwidth GB/s, host link GB/s, reward weight. The fraction of peak the
# reference prover reaches is security.reference_fraction(key).
MODELS = [
    ("h100-sxm", "NVIDIA H100 SXM 80GB", "nvidia", "cuda", ["H100 80GB HBM3", "H100 SXM"],
     81559, 1979, 3350, 64, 10.0),
    ("h100-pcie", "NVIDIA H100 PCIe 80GB", "nvidia", "cuda", ["H100 PCIe"],
     81559, 1513, 2000, 64, 8.0),
    ("h200", "NVIDIA H200 141GB", "nvidia", "cuda", ["H200"],
     143771, 1979, 4800, 64, 12.0),
    ("a100-80gb", "NVIDIA A100 80GB", "nvidia", "cuda",
     ["A100-SXM4-80GB", "A100 80GB PCIe", "A100-PCIE-80GB"],
     81920, 624, 2039, 32, 4.0),
    ("a100-40gb", "NVIDIA A100 40GB", "nvidia", "cuda", ["A100-SXM4-40GB", "A100-PCIE-40GB"],
     40960, 624, 1555, 32, 3.0),
    # An A100 40GB holds 93% of an L40S working set and has twice its memory bandwidth:
    # it runs an L40S challenge well inside the budget, so the proof cannot tell the two
    # apart and the L40S weighs what an A100 40GB does.
    ("l40s", "NVIDIA L40S", "nvidia", "cuda", ["L40S"],
     46068, 733, 864, 32, 3.0),
    ("rtx-4090", "NVIDIA GeForce RTX 4090", "nvidia", "cuda", ["GeForce RTX 4090"],
     24564, 661, 1008, 32, 1.25),
    ("rtx-3090", "NVIDIA GeForce RTX 3090", "nvidia", "cuda", ["GeForce RTX 3090"],
     24576, 284, 936, 32, 0.6),
    # M2 Max and M3 Max differ by ~1.2x in fp32 and share memory sizes: within the
    # margin, so they carry the same weight (the proof cannot tell them apart). Unified
    # memory has no host link to offload over; the figure is an SSD's (swap).
    ("apple-m2-max", "Apple M2 Max", "apple", "mps", ["Apple M2 Max"],
     65536, 13.6, 400, 7, 0.3),
    ("apple-m3-max", "Apple M3 Max", "apple", "mps", ["Apple M3 Max"],
     65536, 16.4, 400, 7, 0.3),
]


def rates_of(row: tuple, memory_share: float = 1.0) -> DeviceRates:
    *_, vram, peak, bw, link, _w = row
    eff = reference_fraction(row[0])
    return DeviceRates(peak * 1e12 * eff, bw * 1e9 * 0.8, link * 1e9,
                       vram * 2**20 * memory_share)


def candidates(row: tuple, every: bool = False) -> list[tuple[float, ChallengeParams, float]]:
    apple = row[2] == "apple"
    vram = row[5]
    out = []
    for n in ((4096,) if apple else (4096, 8192, 12288)):
        steps = int(FILL * vram * 2**20 // (n * n)) - 2
        if apple:  # fp32 GPUs: a few GiB of work, not tens, or a proof takes minutes
            steps = min(steps, 256)
        if not 2 <= steps <= 4096:
            continue
        for k in (8, 12, 16, 24, 32, 48, 64):
            for frac in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
                p = ChallengeParams(n=n, steps=steps, refs=k,
                                    read_steps=max(1, round(frac * steps)), digest_width=128,
                                    rows_per_check=1, checked_steps=min(CHECKS, steps))
                if every or binds(p, row):
                    out.append((float(max_body(p)), p, expected_seconds(p, rates_of(row))))
    return sorted(out, key=lambda c: (c[0], -c[2]))


def cheat_ratio(p: ChallengeParams, row: tuple) -> float:
    """The fastest memory cheat over CHEAT_RATIO x the honest time (>= 1 binds): the
    minimal offload prover, keep-every-other and keep-every-third at the model's own
    speed, and (GPUs with a real working set) the best cheat of a device holding 65%."""
    full = rates_of(row)
    honest = expected_seconds(p, full)
    worst = min(minimal_offload_seconds(p, full), recompute_seconds(p, full, 1 / 2),
                recompute_seconds(p, full, 1 / 3))
    if row[2] != "apple":
        worst = min(worst, best_memory_cheat_seconds(p, rates_of(row, CHEAT_HOLDS)))
    return worst / (CHEAT_RATIO * honest)


def binds(p: ChallengeParams, row: tuple) -> bool:
    """Every memory cheat of the issue misses the budget by a margin (`cheat_ratio`), and
    a GPU's honest run lasts at least MIN_SECONDS."""
    if cheat_ratio(p, row) < 1:
        return False
    return row[2] == "apple" or expected_seconds(p, rates_of(row)) >= MIN_SECONDS


def entry(row: tuple, old: dict | None) -> dict:
    key, name, vendor, backend, match, vram, peak, bw, link, weight = row
    eff = reference_fraction(key)
    apple = vendor == "apple"
    found = candidates(row)
    if not found:  # none binds at CHEAT_RATIO: the grid point that comes closest
        grid = candidates(row, every=True)
        found = sorted(grid, key=lambda c: -cheat_ratio(c[1], row))
        print(f"{row[0]}: no parameters bind at {CHEAT_RATIO}; closest "
              f"{cheat_ratio(found[0][1], row) * CHEAT_RATIO:.2f}", file=sys.stderr)
    _body, p, est = found[0]
    budget = {
        "expected_s": round(est, 3),
        "budget_s": round(est * MARGIN, 3),
        "open_budget_s": round(opening_window_seconds(p), 1),
        "calibrated": False,
        "source": f"estimate: security.expected_seconds at {int(eff * 100)}% of peak "
        f"{'fp32' if apple else 'int8'} (security.reference_fraction) and 80% of peak "
        f"bandwidth, x{MARGIN} margin; replace with `gpunet calibrate` on real hardware",
    }
    if old and old["budget"].get("calibrated"):
        kept = ChallengeParams(**old["params"])
        if kept == p or binds(kept, row):  # re-measuring needs the card: keep while it binds
            p, budget = kept, old["budget"]
    return {
        "key": key, "name": name, "vendor": vendor, "backend": backend, "match": match,
        "vram_mib": vram,
        "peak_int8_tops": None if apple else peak,
        "peak_fp32_tflops": peak if apple else None,
        "mem_bandwidth_gbs": bw, "host_link_gbs": link, "reward_weight": weight,
        "dev_only": False, "params": p.model_dump(), "budget": budget,
        "sources": {
            "vram_mib": "unified memory of the 64 GB configuration" if apple
            else "nvidia-smi total memory of the product (MiB)",
            "peak": "Apple GPU fp32 figure (no int8 tensor path), REFERENCE.md" if apple else DS,
            "mem_bandwidth_gbs": DS,
            "host_link_gbs": "internal SSD read rate (swap)" if apple else PCIE,
            "reward_weight": "gpunet policy: roughly proportional to the compute the proof "
            "establishes; peers' multipliers H100 10, H200 12, RTX 4090 1.25",
        },
    }


def main(argv: list[str]) -> None:
    data = json.loads(CATALOG.read_text())
    old = {m["key"]: m for m in data["models"]}
    models = [entry(row, old.get(row[0])) for row in MODELS]
    models += [m for k, m in old.items() if k not in {r[0] for r in MODELS}]  # cpu-dev etc.
    data["models"] = models
    text = json.dumps(data, indent=1) + "\n"
    if "--check" in argv:
        print("unchanged" if text == CATALOG.read_text() else "would change")
        return
    CATALOG.write_text(text)
    for m in models:
        q = m["params"]
        print(f"{m['key']:>13} n={q['n']:>5} T={q['steps']:>4} k={q['refs']:>2} "
              f"read={q['read_steps']:>4} expected {m['budget']['expected_s']:>6}s "
              f"budget {m['budget']['budget_s']:>6}s open {m['budget']['open_budget_s']:>5}s")


if __name__ == "__main__":
    main(sys.argv[1:])
