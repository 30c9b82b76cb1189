"""Tensor versions of the core derivation and digest, for torch on CUDA, MPS or CPU.

Each function mirrors one in `gpunet.core.pog.prf` / `digest` bit for bit; the tests
compare them on torch's CPU device, and `calibrate` re-checks on the real device before
measuring. torch is imported by the caller (these functions take tensors), so importing
this module does not import torch.

uint64 arithmetic is emulated on int64: add and multiply wrap modulo 2^64 exactly as
unsigned ones (two's complement); a logical right shift is an arithmetic shift followed
by a mask that clears the copied sign bits.
"""

from __future__ import annotations

from typing import Any

from gpunet.core.pog.prf import (
    GAMMA,
    MIX_C1,
    MIX_C2,
    MIX_SHIFTS,
    NODE_C1,
    NODE_C2,
    to_signed64,
)

Tensor = Any  # torch.Tensor, kept untyped so core typing does not depend on torch

_C1 = to_signed64(MIX_C1)
_C2 = to_signed64(MIX_C2)
_GAMMA = to_signed64(GAMMA)
_N1 = to_signed64(NODE_C1)
_N2 = to_signed64(NODE_C2)
F32_CHUNK = 1024  # int8 products <= 2^14, 1024 of them <= 2^24: exact in float32


def lsr(z: Tensor, s: int) -> Tensor:
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix64(z: Tensor) -> Tensor:
    s1, s2, s3 = MIX_SHIFTS
    z = z ^ lsr(z, s1)
    z = z * _C1
    z = z ^ lsr(z, s2)
    z = z * _C2
    return z ^ lsr(z, s3)


def prf_rows(torch: Any, key: int, start: int, count: int, n: int, device: Any) -> Tensor:
    """Rows start..start+count-1 of a stream as an int8 (count, n) tensor."""
    w = n // 8
    ctr = torch.arange(start * w + 1, (start + count) * w + 1, dtype=torch.int64, device=device)
    z = mix64(ctr * _GAMMA + to_signed64(key))
    return z.view(torch.int8).view(count, n)


def leaf_words(torch: Any, key: int, width: int, device: Any) -> Tensor:
    ctr = torch.arange(1, width + 1, dtype=torch.int64, device=device)
    return mix64(ctr * _GAMMA + to_signed64(key))


def node(a1: Tensor, b1: Tensor, a2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    x = mix64(a1 + mix64(a2 ^ _N1))
    y = mix64(b1 ^ mix64(b2 + x))
    a = mix64(x ^ y ^ _N2) ^ a1 ^ b2
    return a, mix64(y + a) ^ b1 ^ a2


def fold(words: Tensor) -> Tensor:
    """(width, rows) int64 leaf words -> (rows, 2) int64 digest lanes (halves paired).

    Words are laid out word-major (one row of the tensor per word position), so every
    operand below is a contiguous block: several times faster than strided slices.
    """
    h = words.shape[0] // 2
    a, b = words[:h], words[h:]
    while a.shape[0] > 1:
        h = a.shape[0] // 2
        a, b = node(a[:h], b[:h], a[h:], b[h:])
    return torch_stack2(a[0], b[0])


def torch_stack2(a: Tensor, b: Tensor) -> Tensor:
    import torch

    return torch.stack((a, b), dim=1)


def matmul_exact(torch: Any, a: Tensor, b: Tensor, mode: str) -> Tensor:
    """Exact int32 a @ b for int8 a (r, k), b (k, c).

    "int_mm": torch._int_mm (int8 tensor cores on CUDA; needs r > 16, k and c multiples
    of 8). "f32": float32 products over K chunks of 1024 (exact, see F32_CHUNK) summed in
    int32, for GPUs without an int8 path (Apple MPS).
    """
    if mode == "int_mm":
        return torch._int_mm(a, b)
    k = a.shape[1]
    acc = torch.zeros((a.shape[0], b.shape[1]), dtype=torch.int32, device=a.device)
    for k0 in range(0, k, F32_CHUNK):
        k1 = min(k, k0 + F32_CHUNK)
        acc += (a[:, k0:k1].to(torch.float32) @ b[k0:k1].to(torch.float32)).to(torch.int32)
    return acc


def round_byte(torch: Any, y: Tensor) -> Tensor:
    """Bits 8..15 of each int32 as int8: byte 1 of the little-endian word, no arithmetic."""
    return y.view(torch.int8)[:, 1::4]


def row_digests(torch: Any, rows: Tensor, dt: Tensor, leaf: Tensor, mode: str) -> Tensor:
    """(r, 2) int64 digest lanes of int8 rows (r, n); dt is Dt (width, n), leaf (width,).

    The sketch is computed transposed, Dt @ rows^T (width, r), the same GEMM layout as the
    chain, which also leaves the words word-major for `fold`.
    """
    return digest_lanes(matmul_exact(torch, dt, rows.t(), mode), leaf)


def digest_lanes(sketch: Tensor, leaf: Tensor) -> Tensor:
    """(width, r) int32 sketch -> (r, 2) int64 digest lanes: all of a digest after its
    GEMM, elementwise per row (what `torch.compile` may fuse into a few kernels)."""
    return fold(mix64(sketch.long() + leaf[:, None]))


def row_refs(
    torch: Any, key: int | Tensor, step: int | Tensor, start: int, count: int, k: int,
    device: Any,
) -> Tensor:
    """(count, k) int64 reference steps of rows start.. of X_{step+1}; mirrors
    core.pog.derive.row_refs bit for bit (`key` = derive.refs_key(seed, step, root)).

    `key` and `step` may be device scalars (a recorded CUDA graph reads them at replay);
    a tensor key is already in signed form (prf.to_signed64)."""
    rows = torch.arange(start, start + count, dtype=torch.int64, device=device)
    ctr = rows[:, None] * k + torch.arange(1, k + 1, dtype=torch.int64, device=device)
    w = mix64(ctr * _GAMMA + (to_signed64(key) if isinstance(key, int) else key))
    return (lsr(w, 32) * step) >> 32  # both factors < 2^32, step < 2^13: no sign trouble
