"""Regenerate the datasheet estimates in src/gpunet/core/pog/catalog.json.

Models whose budget is `calibrated: true` (measured with `gpunet calibrate`) keep their
budget; every other GPU model gets `security.expected_seconds` at an assumed fraction of
its datasheet peak, times BUDGET_MARGIN.

    .venv/bin/python bench/pog_catalog.py          # rewrite catalog.json
    .venv/bin/python bench/pog_catalog.py --check  # show what would change
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.security import DeviceRates, expected_seconds

CATALOG = Path(__file__).resolve().parents[1] / "src/gpunet/core/pog/catalog.json"
MARGIN = 1.2  # below the closest ratio between models a device may want to pass for
PROBES = 96  # checked_steps * rows_per_check >= this: escape at d=0.1 below 4e-5
DS = "vendor datasheet (dense, no sparsity), /work/shared/REFERENCE.md"

# key, name, vendor, backend, NVML/Metal names, vram MiB, peak (int8 TOPS; Apple: fp32
# TFLOPS), bandwidth GB/s, n, steps, assumed fraction of peak, reward weight
MODELS = [
    ("h100-sxm", "NVIDIA H100 SXM 80GB", "nvidia", "cuda", ["H100 80GB HBM3", "H100 SXM"],
     81559, 1979, 3350, 65536, 15, 0.65, 10.0),
    ("h100-pcie", "NVIDIA H100 PCIe 80GB", "nvidia", "cuda", ["H100 PCIe"],
     81559, 1513, 2000, 65536, 15, 0.65, 8.0),
    ("h200", "NVIDIA H200 141GB", "nvidia", "cuda", ["H200"],
     143771, 1979, 4800, 65536, 28, 0.65, 12.0),
    ("a100-80gb", "NVIDIA A100 80GB", "nvidia", "cuda",
     ["A100-SXM4-80GB", "A100 80GB PCIe", "A100-PCIE-80GB"],
     81920, 624, 2039, 65536, 15, 0.7, 4.0),
    ("a100-40gb", "NVIDIA A100 40GB", "nvidia", "cuda", ["A100-SXM4-40GB", "A100-PCIE-40GB"],
     40960, 624, 1555, 65536, 6, 0.7, 3.0),
    # n = 32768 so that the working set (41 GiB) exceeds an A100 40GB: the two are
    # within 17% on int8 compute, so memory is what tells them apart.
    ("l40s", "NVIDIA L40S", "nvidia", "cuda", ["L40S"],
     46068, 733, 864, 32768, 39, 0.6, 3.5),
    ("rtx-4090", "NVIDIA GeForce RTX 4090", "nvidia", "cuda", ["GeForce RTX 4090"],
     24564, 661, 1008, 32768, 19, 0.6, 1.25),
    ("rtx-3090", "NVIDIA GeForce RTX 3090", "nvidia", "cuda", ["GeForce RTX 3090"],
     24576, 284, 936, 32768, 19, 0.6, 0.6),
    # M2 Max and M3 Max differ by ~1.2x in fp32 and share memory sizes: within the
    # margin, so they carry the same weight (the proof cannot tell them apart).
    ("apple-m2-max", "Apple M2 Max", "apple", "mps", ["Apple M2 Max"],
     65536, 13.6, 400, 16384, 16, 0.5, 0.3),
    ("apple-m3-max", "Apple M3 Max", "apple", "mps", ["Apple M3 Max"],
     65536, 16.4, 400, 16384, 16, 0.5, 0.3),
]


def entry(row: tuple, old: dict | None) -> dict:
    key, name, vendor, backend, match, vram, peak, bw, n, steps, eff, weight = row
    apple = vendor == "apple"
    a = min(16, math.ceil(PROBES / steps))
    p = ChallengeParams(n=n, steps=steps, refs=1, digest_width=128, rows_per_check=a,
                        checked_steps=steps)
    est = expected_seconds(p, DeviceRates(peak * 1e12 * eff, bw * 1e9 * 0.8))
    budget = {
        "expected_s": round(est, 2),
        "budget_s": round(est * MARGIN, 2),
        # Seconds, not hours: the digest-binding argument only needs the opening window
        # far below a lattice attack; 6 s floor lets ~13 Mbit/s uplinks send 10 MB.
        "open_budget_s": round(max(6.0, 0.5 * est), 1),
        "calibrated": False,
        "source": f"estimate: security.expected_seconds at {int(eff * 100)}% of peak "
        f"{'fp32' if apple else 'int8'} and 80% of peak bandwidth, x{MARGIN} margin; "
        "replace with `gpunet calibrate` on real hardware",
    }
    if old and old["budget"].get("calibrated") and old["params"] == p.model_dump():
        budget = old["budget"]
    return {
        "key": key, "name": name, "vendor": vendor, "backend": backend, "match": match,
        "vram_mib": vram,
        "peak_int8_tops": None if apple else peak,
        "peak_fp32_tflops": peak if apple else None,
        "mem_bandwidth_gbs": bw, "reward_weight": weight, "dev_only": False,
        "params": p.model_dump(), "budget": budget,
        "sources": {
            "vram_mib": "unified memory of the 64 GB configuration" if apple
            else "nvidia-smi total memory of the product (MiB)",
            "peak": "Apple GPU fp32 figure (no int8 tensor path), REFERENCE.md" if apple else DS,
            "mem_bandwidth_gbs": DS,
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
        print(f"{m['key']:>13} n={m['params']['n']:>6} T={m['params']['steps']:>3} "
              f"a={m['params']['rows_per_check']:>2} expected {m['budget']['expected_s']:>6}s "
              f"budget {m['budget']['budget_s']:>6}s calibrated {m['budget']['calibrated']}")


if __name__ == "__main__":
    main(sys.argv[1:])
