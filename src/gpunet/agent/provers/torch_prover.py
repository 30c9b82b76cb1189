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
import numpy.typing as npt

from gpunet.agent.provers import torch_ops as ops
from gpunet.agent.provers.base import Prover, ProverError
from gpunet.core.pog.derive import ChallengeKeys, ref_steps
from gpunet.core.pog.digest import DIGEST_BYTES
from gpunet.core.pog.messages import Challenge


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise ProverError("this backend needs PyTorch (pip install 'gpunet[gpu]')") from exc
    return torch


class TorchProver(Prover):
    name = "torch"

    def __init__(
        self, device: str = "cpu", *, matmul: str | None = None, block_rows: int | None = None
    ) -> None:
        super().__init__()
        if sys.byteorder != "little":  # pragma: no cover
            raise ProverError("the byte layout of the protocol is little-endian")
        self.torch = import_torch()
        self.device = self.torch.device(device)
        self.matmul = matmul or ("f32" if self.device.type == "mps" else "int_mm")
        self.block_rows = block_rows
        self.name = f"torch-{self.device.type}"
        self._x: list[Any] = []

    def release(self) -> None:
        super().release()
        self._x = []
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

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

    def _run(self, challenge: Challenge) -> npt.NDArray[np.uint8]:
        torch, dev, mode = self.torch, self.device, self.matmul
        p = challenge.params
        n, width = p.n, p.digest_width
        keys = ChallengeKeys.from_seed(challenge.seed, challenge.roll_call_seed)
        refs = ref_steps(challenge.seed, p)
        blk = self._block(n)
        with torch.inference_mode():
            dt = ops.prf_rows(torch, keys.d, 0, width, n, dev)
            leaf = ops.leaf_words(torch, keys.leaf, width, dev)
            dig = torch.empty((p.steps + 1, n, 2), dtype=torch.int64, device=dev)

            x0 = torch.empty((n, n), dtype=torch.int8, device=dev)
            bt = torch.empty((n, n), dtype=torch.int8, device=dev)
            for r in range(0, n, blk):
                m = min(blk, n - r)
                x0[r : r + m] = ops.prf_rows(torch, keys.x0, r, m, n, dev)
                bt[r : r + m] = ops.prf_rows(torch, keys.b, r, m, n, dev)
                dig[0, r : r + m] = ops.row_digests(torch, x0[r : r + m], dt, leaf, mode)
            xs = [x0]
            for t in range(p.steps):
                xt_t = xs[t].t()  # column-major view: the layout int8 GEMMs want for B
                nxt = torch.empty((n, n), dtype=torch.int8, device=dev)
                for r in range(0, n, blk):
                    m = min(blk, n - r)
                    y = ops.matmul_exact(torch, bt[r : r + m], xt_t, mode)
                    fresh = ops.round_byte(torch, y)
                    out = nxt[r : r + m]
                    if refs[t]:
                        torch.bitwise_xor(fresh, xs[refs[t][0]][r : r + m], out=out)
                        for q in refs[t][1:]:
                            out ^= xs[q][r : r + m]
                    else:
                        out.copy_(fresh)
                    dig[t + 1, r : r + m] = ops.row_digests(torch, out, dt, leaf, mode)
                xs.append(nxt)
            del bt
            host = dig.cpu().numpy()  # the only device -> host transfer of the commit phase
        self._x = xs
        return np.ascontiguousarray(host.astype("<i8")).view(np.uint8).reshape(
            p.steps + 1, n, DIGEST_BYTES
        )

    def _row(self, step: int, index: int) -> bytes:
        if step >= len(self._x):
            raise ProverError("step not kept")
        return bytes(self._x[step][index].cpu().numpy().tobytes())


class CudaProver(TorchProver):
    """NVIDIA GPUs: int8 tensor cores."""

    def __init__(self, device: str = "cuda", *, block_rows: int | None = None) -> None:
        super().__init__(device, matmul="int_mm", block_rows=block_rows)


class MpsProver(TorchProver):
    """Apple silicon: exact float32 GEMM in K chunks of 1024 (see torch_ops.F32_CHUNK)."""

    def __init__(self, device: str = "mps", *, block_rows: int | None = None) -> None:
        super().__init__(device, matmul="f32", block_rows=block_rows)
