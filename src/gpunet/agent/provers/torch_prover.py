"""PyTorch prover: the chain and the digests on the device, one transfer at the end.

Backends:
* ``cuda``  int8 x int8 -> int32 on tensor cores via ``torch._int_mm`` (cuBLASLt);
* ``mps``   Apple GPUs have no int8 matmul: float32 products over K chunks of 1024 are
            exact (partial sums stay <= 2^24) and are accumulated in int32;
* ``cpu``   the same code on torch's CPU device, used to prove it byte-identical to the
            NumPy reference in CI.

The step is computed in row blocks of X_{t+1}: Bt[block] @ X_t^T gives those rows directly
(the transpose in X_{t+1} = round(X_t @ B)^T costs nothing this way), the rounding is a
strided view (byte 1 of each int32), and the block's digests are computed while its rows
are hot. The host sees nothing until every digest is done: no round-trip per step.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from gpunet.agent.provers import torch_ops as ops
from gpunet.agent.provers.base import Prover, ProverError
from gpunet.agent.provers.torch_steps import GraphSteps, StepKernel
from gpunet.core.pog.derive import ChallengeKeys, refs_key
from gpunet.core.pog.messages import Challenge
from gpunet.core.pog.params import ChallengeParams
from gpunet.core.pog.rowtree import StepTree


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise ProverError("this backend needs PyTorch (pip install 'gpunet[gpu]')") from exc
    return torch


GRAPH_MODES = ("off", "buffered", "cuda")


class TorchProver(Prover):
    name = "torch"

    def __init__(
        self,
        device: str = "cpu",
        *,
        matmul: str | None = None,
        block_rows: int | None = None,
        graphs: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if sys.byteorder != "little":  # pragma: no cover
            raise ProverError("the byte layout of the protocol is little-endian")
        self.torch = import_torch()
        self.device = self.torch.device(device)
        self.matmul = matmul or ("f32" if self.device.type == "mps" else "int_mm")
        self.block_rows = block_rows
        # "cuda": replay each step's small kernels from a CUDA graph (default on CUDA);
        # "buffered": the same buffer order run eagerly (tests it on CPU); "off": in place.
        self.graphs = graphs or ("cuda" if self.device.type == "cuda" else "off")
        if self.graphs not in GRAPH_MODES:
            raise ProverError(f"graphs must be one of {', '.join(GRAPH_MODES)}")
        # torch.compile fuses a digest's few hundred elementwise kernels into a few; the
        # first call per shape compiles (seconds to a minute): `warm_up` pays it early.
        self.lanes = (self.torch.compile(ops.digest_lanes, dynamic=False, fullgraph=True)
                      if compile else ops.digest_lanes)
        self.name = f"torch-{self.device.type}"
        self._x: Any = None

    def release(self) -> None:
        super().release()
        self._x = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def warm_up(self, params: ChallengeParams) -> None:
        """Compile the digest for this size's blocks (when compiling) and touch the GEMM."""
        torch, n = self.torch, params.n
        blk = self._block(n)
        with torch.inference_mode():
            leaf = torch.zeros(params.digest_width, dtype=torch.int64, device=self.device)
            for m in sorted({blk, n % blk or blk}):
                a = torch.ones((params.digest_width, n), dtype=torch.int8, device=self.device)
                b = torch.ones((n, m), dtype=torch.int8, device=self.device)
                self.lanes(ops.matmul_exact(torch, a, b, self.matmul), leaf)
        self.synchronize()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        elif self.device.type == "mps":
            self.torch.mps.synchronize()

    def _block(self, n: int) -> int:
        if self.block_rows:
            return min(n, self.block_rows)
        # ~1 GiB of int32 products per block on GPUs, smaller on CPU (cache friendly).
        target = (1 << 28) if self.device.type != "cpu" else (1 << 22)
        return max(64, min(n, target // n // 64 * 64))

    def _run(self, challenge: Challenge) -> list[StepTree]:
        torch, dev = self.torch, self.device
        p = challenge.params
        n, width = p.n, p.digest_width
        keys = ChallengeKeys.from_seed(challenge.seed, challenge.roll_call_seed)
        blk = self._block(n)
        with torch.inference_mode():
            dt = ops.prf_rows(torch, keys.d, 0, width, n, dev)
            leaf = ops.leaf_words(torch, keys.leaf, width, dev)
            # The whole working set at once: a device that cannot hold it fails here, at
            # the start, rather than after seconds of work.
            hist = torch.empty((p.steps + 1, n, n), dtype=torch.int8, device=dev)
            bt = torch.empty((n, n), dtype=torch.int8, device=dev)
            for r in range(0, n, blk):
                m = min(blk, n - r)
                hist[0, r : r + m] = ops.prf_rows(torch, keys.x0, r, m, n, dev)
                bt[r : r + m] = ops.prf_rows(torch, keys.b, r, m, n, dev)
            steps = self._steps(hist, dt, leaf, blk, p)
            trees = [self._tree(self._to_host(steps.digest(hist[0])))]
            self._fresh(bt, hist[0], steps.target(0), blk)
            for t in range(p.steps):
                # X_{t+1}'s fresh part is queued; its references need X_t's root.
                key = refs_key(challenge.seed, t, trees[t].root)
                pending = self._to_host(steps.finish(t, key, p.refs_at(t)))
                if t + 1 < p.steps:  # runs on the device while the host hashes
                    self._fresh(bt, hist[t + 1], steps.target(t + 1), blk)
                trees.append(self._tree(pending))
            del bt, steps
        self._x = hist
        return trees

    def _steps(self, hist: Any, dt: Any, leaf: Any, blk: int, p: Any) -> StepKernel:
        if self.graphs == "off":
            return StepKernel(self.torch, self.matmul, hist, dt, leaf, blk, self.lanes)
        return GraphSteps(self.torch, self.matmul, hist, dt, leaf, blk, self.lanes,
                          ks=(0, p.refs), capture=self.graphs == "cuda")

    def _fresh(self, bt: Any, xt: Any, out: Any, blk: int) -> None:
        """The fresh part of X_{t+1}: round(Bt @ X_t^T), written into `out` block by block.

        Queued on the device before the host waits for X_t's root, so the GEMM (the bulk
        of the step) runs while the host hashes the previous step's digests.
        """
        torch, n = self.torch, xt.shape[0]
        xt_t = xt.t()  # column-major view: the layout int8 GEMMs want for B
        for r in range(0, n, blk):
            m = min(blk, n - r)
            y = ops.matmul_exact(torch, bt[r : r + m], xt_t, self.matmul)
            out[r : r + m] = ops.round_byte(torch, y)

    def _to_host(self, dig: Any) -> tuple[Any, Any]:
        """Start copying a step's (n, 2) digest lanes to the host (n x 16 bytes: the only
        device -> host transfer of a step); the event says when it has landed."""
        torch = self.torch
        if self.device.type != "cuda":
            return dig.cpu().clone(), None
        host = torch.empty(dig.shape, dtype=dig.dtype, pin_memory=True)
        host.copy_(dig, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    def _tree(self, pending: tuple[Any, Any]) -> StepTree:
        host, done = pending
        if done is not None:
            done.synchronize()
        lanes = np.ascontiguousarray(host.numpy().astype("<i8"))
        return StepTree(lanes.view(np.uint8).reshape(-1, 16))

    def _row(self, step: int, index: int) -> bytes:
        if self._x is None or step >= self._x.shape[0]:
            raise ProverError("step not kept")
        return bytes(self._x[step][index].cpu().numpy().tobytes())


class CudaProver(TorchProver):
    """NVIDIA GPUs: int8 tensor cores, each step's small kernels replayed from a graph."""

    def __init__(
        self,
        device: str = "cuda",
        *,
        block_rows: int | None = None,
        graphs: str | None = None,
        compile: bool = True,
    ) -> None:
        super().__init__(device, matmul="int_mm", block_rows=block_rows, graphs=graphs,
                         compile=compile)


class MpsProver(TorchProver):
    """Apple silicon: exact float32 GEMM in K chunks of 1024 (see torch_ops.F32_CHUNK)."""

    def __init__(self, device: str = "mps", *, block_rows: int | None = None) -> None:
        super().__init__(device, matmul="f32", block_rows=block_rows)
