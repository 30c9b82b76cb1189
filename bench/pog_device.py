"""Proof of GPU on a real card, in one run: ceilings, byte identity, calibration of the
card's own profile, the other Hopper profile on the same card, and the honest exchange.

    python3 bench/pog_device.py [PROFILE] [--out DIR]     # PROFILE: default h200

Meant for a lent GPU host with PyTorch (CUDA) and the package's pure dependencies; it
needs no server. Each section runs on its own (a failure is reported and the next one
runs) and results are appended to DIR/pog_device.json as they come, so a run cut short
still says what it measured. Prints figures; asserts nothing about time.

Sections:
1. ceilings: device-to-device copy (bytes read + written), the plain int8 GEMM rate at
   the profile's n, pinned host <-> device copies (the link an offloading cheat uses);
2. byte identity: the CUDA prover, with and without graphs, against the NumPy reference,
   at the self-test size and at n = 1024 with the catalog's k and digest width;
3. calibration: `calibrate` on the profile's real parameters with the agent's defaults
   (what goes in the catalog), then without torch.compile and (--eager) without CUDA
   graphs, to show what each costs;
4. the other Hopper profile's parameters on this card (a reference point, not a
   calibration of that model);
5. the honest exchange at full size: challenge, commitment, openings through the binary
   wire form, and the verifier with the catalog budget as it stands and with the
   suggested one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS: dict[str, Any] = {}
OUT = Path(os.environ.get("OUT", "var/bench"))
BACKEND = "cuda"  # --dry-run: "torch-cpu", to rehearse the script on a host without a GPU


def make_prover(graphs: str | None = None, compile: bool = True) -> Any:
    from gpunet.agent.provers.torch_prover import CudaProver, TorchProver

    if BACKEND == "cuda":
        return CudaProver(graphs=graphs, compile=compile)
    return TorchProver("cpu", graphs={"cuda": "buffered"}.get(graphs or "", graphs),
                       compile=compile)


def section(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                RESULTS[name] = fn(*args)
            except Exception as exc:  # report and go on: the next section may still work
                traceback.print_exc()
                RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}"}
            RESULTS[name + ".wall_s"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(RESULTS[name], indent=1, default=str), flush=True)
            (OUT / "pog_device.json").write_text(json.dumps(RESULTS, indent=1, default=str))
            return RESULTS[name]

        return run

    return wrap


def _timed(torch: Any, fn: Callable[[], Any], repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def _copy_seconds(torch: Any, dev: Any, size: int) -> float:
    src = torch.randint(-128, 127, (size,), dtype=torch.int8, device=dev)
    dst = torch.empty_like(src)
    return _timed(torch, lambda: dst.copy_(src), 5)


@section("ceilings")
def ceilings(n: int) -> dict[str, Any]:
    import torch

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    copy_s = _copy_seconds(torch, dev, 8 << 30)
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)
    bt = b.t()
    gemm_s = _timed(torch, lambda: torch._int_mm(a, bt), 10)
    host = torch.empty((4 << 30,), dtype=torch.int8, pin_memory=True)
    on_dev = torch.empty((4 << 30,), dtype=torch.int8, device=dev)
    h2d_s = _timed(torch, lambda: on_dev.copy_(host, non_blocking=True), 3)
    d2h_s = _timed(torch, lambda: host.copy_(on_dev, non_blocking=True), 3)
    torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(dev),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "sms": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "copy_tb_s": round(2 * (8 << 30) / copy_s / 1e12, 2),
        "int8_gemm_tops": round(2 * n**3 / gemm_s / 1e12, 1),
        "h2d_gb_s": round((4 << 30) / h2d_s / 1e9, 1),
        "d2h_gb_s": round((4 << 30) / d2h_s / 1e9, 1),
    }


@section("byte_identity")
def byte_identity() -> dict[str, Any]:
    from gpunet.agent.provers.calibrate import _challenge, self_test
    from gpunet.agent.provers.cpu import CpuProver
    from gpunet.core.pog import ChallengeParams, plan_openings

    out: dict[str, Any] = {}
    variants = {"graphs+compile": ("cuda", True), "graphs": ("cuda", False),
                "eager": ("off", False)}
    for name, (graphs, compile) in variants.items():
        out[f"self_test_{name}"] = self_test(make_prover(graphs, compile))
    # Catalog-like parameters at a size the NumPy reference runs in seconds.
    p = ChallengeParams(n=1024, steps=24, refs=24, read_steps=8, digest_width=128,
                        rows_per_check=1, checked_steps=24)
    ch = _challenge("identity", p, "identity")
    ref = CpuProver()
    ref_commit = ref.commit(ch)
    plan = plan_openings(ch, hashlib.sha256(b"identity-open").digest(), ref_commit)
    want = ref.open(plan.request())
    for name, (graphs, compile) in variants.items():
        prover = make_prover(graphs, compile)
        got = prover.commit(ch)
        out[f"n1024_{name}"] = (got.roots == ref_commit.roots
                                and prover.open(plan.request()) == want)
        prover.release()
    return out


def _calibrate(profile: str, **options: Any) -> dict[str, Any]:
    from gpunet.agent.provers.calibrate import calibrate

    t0 = time.perf_counter()
    r = calibrate(profile, BACKEND, repeats=5, options=options)
    out = r.model_dump(mode="json")
    out["catalog_budget"] = r.catalog_budget()
    out["options"] = options
    out["wall_with_warm_up_s"] = round(time.perf_counter() - t0, 1)
    return out


@section("calibration")
def calibration(profile: str) -> dict[str, Any]:
    return _calibrate(profile)


@section("calibration_no_compile")
def calibration_no_compile(profile: str) -> dict[str, Any]:
    """The digest's elementwise kernels as they are (in the graphs), not fused."""
    return _calibrate(profile, compile=False)


@section("without_graphs")
def without_graphs(profile: str) -> dict[str, Any]:
    from gpunet.agent.provers.calibrate import _challenge
    from gpunet.core.pog import default_catalog

    prof = default_catalog().get(profile)
    assert prof is not None
    prover = make_prover("off")
    runs = []
    for i in range(2):
        ch = _challenge(profile, prof.params, f"eager-{i}")
        t0 = time.perf_counter()
        prover.commit(ch)
        runs.append(round(time.perf_counter() - t0, 3))
        prover.release()
    return {"runs_s": runs}


@section("other_profile")
def other_profile(profile: str) -> dict[str, Any]:
    from gpunet.agent.provers.calibrate import calibrate

    r = calibrate(profile, BACKEND, repeats=3)
    return {"profile": profile, "device": r.device, "runs_s": r.runs_s,
            "commit_s": round(r.commit_s, 3), "open_s": round(r.open_s, 3),
            "efficiency": round(r.efficiency, 3), "self_test": r.self_test_passed}


@section("honest_exchange")
def honest_exchange(profile: str) -> dict[str, Any]:
    import datetime as dt

    from gpunet.agent.provers.calibrate import BUDGET_MARGIN, _challenge
    from gpunet.core.pog import default_catalog, plan_openings, verify
    from gpunet.core.pog.security import opening_window_seconds
    from gpunet.core.pog.wire import decode_openings, encode_openings

    prof = default_catalog().get(profile)
    assert prof is not None
    p = prof.params
    prover = make_prover()
    prover.warm_up(p)  # as the agent does when it starts, not inside a budget
    out: dict[str, Any] = {"catalog_budget_s": prof.budget.budget_s}
    for i in range(2):  # the first includes nothing the agent would not also pay
        ch = _challenge(profile, p, f"exchange-{i}")
        ch = ch.model_copy(update={
            "deadline": ch.issued_at + dt.timedelta(seconds=prof.budget.budget_s),
            "open_budget_s": prof.budget.open_budget_s})
        t0 = time.perf_counter()
        commitment = prover.commit(ch)
        commit_s = time.perf_counter() - t0
        plan = plan_openings(ch, hashlib.sha256(b"exchange" + ch.seed).digest(), commitment)
        t1 = time.perf_counter()
        body = encode_openings(prover.open(plan.request()))
        open_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        response = decode_openings(body, n=p.n)
        verdict = verify(ch, commitment, plan, response, commit_elapsed_s=commit_s,
                         open_elapsed_s=open_s)
        verify_s = time.perf_counter() - t2
        suggested = ch.model_copy(update={
            "deadline": ch.issued_at + dt.timedelta(seconds=commit_s * BUDGET_MARGIN)})
        out[f"run{i}"] = {
            "commit_s": round(commit_s, 3), "open_s": round(open_s, 3),
            "verify_s": round(verify_s, 3), "opening_bytes": len(body),
            "rows": len(plan.row_refs()), "verdict_catalog_budget": str(verdict),
            "passes_catalog_budget": bool(verdict),
            "passes_suggested_budget": bool(verify(
                suggested, commitment, plan, response, commit_elapsed_s=commit_s,
                open_elapsed_s=open_s)),
            "upload_s_at_10mbit": round(len(body) * 8 / 10e6, 2),
            "opening_window_s": round(opening_window_seconds(p), 2),
        }
        prover.release()
    return out


def main() -> None:
    global OUT, BACKEND
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", default="h200")
    ap.add_argument("--other", default="h100-sxm")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--dry-run", action="store_true",
                    help="torch on the CPU (graph order without recording), no ceilings")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip calibrating without torch.compile")
    ap.add_argument("--eager", action="store_true", help="also time it without graphs")
    ap.add_argument("--sections", default="ceilings,identity,no-compile",
                    help="optional sections to run besides calibration, exchange, other")
    args = ap.parse_args()
    OUT = Path(args.out)
    BACKEND = "torch-cpu" if args.dry_run else "cuda"
    OUT.mkdir(parents=True, exist_ok=True)
    from gpunet.core.pog import default_catalog

    prof = default_catalog().get(args.profile)
    if prof is None:
        sys.exit(f"unknown profile {args.profile}")
    wanted = set(args.sections.split(","))
    if BACKEND == "cuda" and "ceilings" in wanted:
        ceilings(prof.params.n)
    if "identity" in wanted:
        byte_identity()
    calibration(args.profile)
    honest_exchange(args.profile)
    if args.other:
        other_profile(args.other)
    if not args.no_compile and "no-compile" in wanted:
        calibration_no_compile(args.profile)
    if args.eager:
        without_graphs(args.profile)
    print("== summary")
    print(json.dumps({k: v for k, v in RESULTS.items() if k.endswith("wall_s")}))


if __name__ == "__main__":
    main()
