"""The 128-bit row digest, reference implementation (NumPy).

A row r (n int8 values) is digested in two stages, both cheap on a GPU:

1. sketch: s = Dt @ r, exact int32 (digest_width values), computed by the same int8
   GEMM kernel as the chain. Dt is uniformly random int8 from the seed, so two rows
   with equal sketches differ by a short integer vector in the kernel of Dt: a short
   integer solution (SIS) instance of width `digest_width`, which lattice reduction
   cannot solve in the seconds an opening is allowed to take (numbers in the doc).
2. tree: each sketch word plus a per-position key goes through mix64; the words are
   paired into 128-bit nodes and folded by `node()` (a nonlinear 256 -> 128 bit
   compression with feed-forward) until one node is left. Its two lanes, little-endian,
   are the 16-byte digest.

The Merkle tree over digests (SHA-256, `gpunet.core.merkle`) is built on the host; only
digests ever leave the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.prf import I8, NODE_C1, NODE_C2, U64, mix64

DIGEST_BYTES = 16


def node(a1: U64, b1: U64, a2: U64, b2: U64) -> tuple[U64, U64]:
    """Compress two 128-bit nodes (a1, b1), (a2, b2) into one.

    Both outputs depend on all four inputs, and inputs are fed forward after the mixing
    (Davies-Meyer style). Why this many mixes: with a cheaper node (a = x + b2, b = y ^ a2)
    a target output and a chosen left child determine the right child directly, so a
    digest could be inverted from the root down. Here, fixing (a1, b1) and the output
    leaves a 64-bit condition to meet by search for every node solved that way.
    """
    x = mix64(a1 + mix64(a2 ^ np.uint64(NODE_C1)))
    y = mix64(b1 ^ mix64(b2 + x))
    a = mix64(x ^ y ^ np.uint64(NODE_C2)) ^ a1 ^ b2
    b = mix64(y + a) ^ b1 ^ a2
    return a, b


def fold(words: U64) -> tuple[U64, U64]:
    """Fold (width, rows) leaf words into one 128-bit node per row; width a power of two.

    Pairs are (left half, right half) rather than neighbours: the same tree up to a fixed
    permutation of the leaves, and with words laid out word-major every operand is a
    contiguous block (on a device as here).
    """
    h = words.shape[0] // 2
    a, b = words[:h], words[h:]
    while a.shape[0] > 1:
        h = a.shape[0] // 2
        a, b = node(a[:h], b[:h], a[h:], b[h:])
    return a[0], b[0]


def sketch(rows: I8, dt: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """rows @ Dt^T, exactly: (r, digest_width) int64 holding int32-range values."""
    return exact_products(rows, dt)


def digests_from_sketch(s: npt.NDArray[np.int64], leaf: U64) -> npt.NDArray[np.uint8]:
    """(r, 16) digest bytes from exact sketches (any integer dtype holding int32 values)."""
    words = np.ascontiguousarray(np.asarray(s, dtype=np.int64).T).view(np.uint64)
    a, b = fold(mix64(words + leaf[:, np.newaxis]))
    out = np.empty((a.shape[0], 2), dtype="<u8")
    out[:, 0] = a
    out[:, 1] = b
    return out.view(np.uint8).reshape(-1, DIGEST_BYTES)


def row_digests(rows: I8, dt: npt.NDArray[Any], leaf: U64) -> npt.NDArray[np.uint8]:
    """(r, 16) digests of int8 rows (r, n)."""
    return digests_from_sketch(sketch(rows, dt), leaf)
