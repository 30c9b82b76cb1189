"""The per-step work of the torch prover after the GEMM: add the reference rows, digest.

`StepKernel` runs it eagerly and builds X_{t+1} in place in the history. That is a few
hundred small kernels a step (the digest's mixing rounds over (width, n) words), cheap
on the device but each a launch from Python: on a GPU whose GEMM step takes under a
millisecond, launching them would leave the GPU idle for most of the step. `GraphSteps`
records the same calls once as a CUDA graph and replays it, one launch a step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gpunet.agent.provers import torch_ops as ops
from gpunet.core.pog.prf import to_signed64

Tensor = Any


class StepKernel:
    """Eager: X_{t+1}'s fresh part is written straight into the history, then finished."""

    def __init__(self, torch: Any, mode: str, hist: Tensor, dt: Tensor, leaf: Tensor,
                 blk: int, lanes: Callable[[Tensor, Tensor], Tensor] = ops.digest_lanes
                 ) -> None:
        self.torch, self.mode, self.blk, self.lanes = torch, mode, blk, lanes
        self.hist, self.dt, self.leaf = hist, dt, leaf
        self.n = hist.shape[1]
        self.dig = torch.empty((self.n, 2), dtype=torch.int64, device=hist.device)

    def target(self, t: int) -> Tensor:
        """Where the GEMM writes the fresh part of X_{t+1}."""
        return self.hist[t + 1]

    def finish(self, t: int, key: int, k: int) -> Tensor:
        """Add X_{t+1}'s k references per row (key from X_t's root); its (n, 2) digests."""
        self.mix(self.hist[t + 1], key, t, k)
        return self.digest(self.hist[t + 1])

    def digest(self, x: Tensor) -> Tensor:
        for r in range(0, self.n, self.blk):
            m = min(self.blk, self.n - r)
            sketch = ops.matmul_exact(self.torch, self.dt, x[r : r + m].t(), self.mode)
            self.dig[r : r + m] = self.lanes(sketch, self.leaf)
        return self.dig

    def mix(self, out: Tensor, key: int | Tensor, step: int | Tensor, k: int) -> None:
        if not k:
            return
        torch, hist = self.torch, self.hist
        # Gathered as int64 words, 8 bytes per element: an int8 gather moves one byte per
        # thread and ran at ~0.2 TB/s on an H200, 60% of a commit.
        words = hist.view(torch.int64)
        for r in range(0, self.n, self.blk):
            m = min(self.blk, self.n - r)
            refs = ops.row_refs(torch, key, step, r, m, k, hist.device)
            idx = torch.arange(r, r + m, device=hist.device)
            rows = words[refs, idx[:, None]].view(torch.int8)  # (m, k, n)
            # Summed wide and cast down: the low byte of a sum is the sum mod 256.
            out[r : r + m] += rows.sum(dim=1, dtype=torch.int8)


class GraphSteps(StepKernel):
    """The same work replayed from a recorded CUDA graph.

    A graph replays fixed addresses, so each step goes through one static buffer `cur`:
    the GEMM writes X_{t+1}'s fresh part there, the graph adds the references and
    digests it into `dig`, and one copy (~30 us at n = 8192) puts it in the history. The
    reference key and the step number enter as device scalars filled before each replay.
    With `capture=False` the graph is not recorded and the calls run as they are, which
    lets the CPU tests check this buffer order byte for byte.
    """

    def __init__(self, torch: Any, mode: str, hist: Tensor, dt: Tensor, leaf: Tensor,
                 blk: int, lanes: Callable[[Tensor, Tensor], Tensor], ks: Iterable[int], *,
                 capture: bool) -> None:
        super().__init__(torch, mode, hist, dt, leaf, blk, lanes)
        dev = hist.device
        self.cur = torch.empty((self.n, self.n), dtype=torch.int8, device=dev)
        # Zero until filled: a warm-up then reads row 0 only, never out of range.
        self.key = torch.zeros((), dtype=torch.int64, device=dev)
        self.step = torch.zeros((), dtype=torch.int64, device=dev)
        self._graphs: list[Any] = []
        self.replays = {k: self._record(self._body(k), capture) for k in sorted(set(ks))}

    def _body(self, k: int) -> Callable[[], None]:
        def run() -> None:
            self.mix(self.cur, self.key, self.step, k)
            self.digest(self.cur)

        return run

    def _record(self, fn: Callable[[], None], capture: bool) -> Callable[[], None]:
        if not capture:
            return fn
        cuda = self.torch.cuda
        side = cuda.Stream()
        side.wait_stream(cuda.current_stream())
        with cuda.stream(side):  # warm-up off the capture: cuBLAS handles, allocator
            fn()
        cuda.current_stream().wait_stream(side)
        graph = cuda.CUDAGraph()
        pool = self._graphs[0].pool() if self._graphs else None
        with cuda.graph(graph, pool=pool):  # graphs replayed in turn may share a pool
            fn()
        self._graphs.append(graph)
        return graph.replay

    def target(self, t: int) -> Tensor:
        return self.cur

    def finish(self, t: int, key: int, k: int) -> Tensor:
        self.key.fill_(to_signed64(key))
        self.step.fill_(t)
        self.replays[k]()
        self.hist[t + 1].copy_(self.cur)
        return self.dig
