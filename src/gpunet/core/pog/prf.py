"""Counter-based pseudo-random derivation shared by every prover and the verifier.

Everything a challenge computes starts here: the initial matrix X_0, the step matrix B,
the digest matrix D and the per-position digest keys. The generator is *counter based*
(splitmix64's finaliser applied to ``key + counter * GAMMA``), so any single row can be
produced without producing the rows before it. That is what keeps the verifier cheap: it
derives only the few rows and columns it checks.

Invariants (tested against the torch implementation byte for byte):

* all arithmetic is on unsigned 64-bit words modulo 2**64; a torch backend does the same
  on int64 (two's complement wrap-around) and masks after arithmetic right shifts so they
  behave as logical shifts;
* the int8 entries of a derived row are the little-endian bytes of consecutive words:
  entry ``c`` of row ``r`` is byte ``c % 8`` of word ``mix64(key + (r * n/8 + c/8 + 1) *
  GAMMA)``;
* keys are 64-bit values drawn from SHA-256 of the challenge seed and a label, so each
  matrix of each challenge has its own independent stream.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I8 = npt.NDArray[np.int8]

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # golden-ratio increment of splitmix64
MIX_C1 = 0xBF58476D1CE4E5B9
MIX_C2 = 0x94D049BB133111EB
MIX_SHIFTS = (30, 27, 31)

# Labels of the independent streams of a challenge. Changing one changes the protocol.
LABEL_X0 = b"gpunet/pog/v1/x0"
LABEL_B = b"gpunet/pog/v1/b"
LABEL_D = b"gpunet/pog/v1/d"
LABEL_LEAF = b"gpunet/pog/v1/leaf"
LABEL_REFS = b"gpunet/pog/v1/refs"

# Constants of the digest tree's node function (see `digest.py`); arbitrary odd words.
NODE_C1 = 0xD6E8FEB86659FD93
NODE_C2 = 0xA0761D6478BD642F


def derive_key(seed: bytes, label: bytes) -> int:
    """A 64-bit stream key for one labelled stream of one challenge seed."""
    return int.from_bytes(hashlib.sha256(label + b"\x00" + seed).digest()[:8], "little")


def mix64(z: U64) -> U64:
    """splitmix64's finaliser on a uint64 array (a bijection on 64-bit words).

    Works in place on a temporary; numpy's uint64 arithmetic wraps modulo 2**64.
    """
    s1, s2, s3 = (np.uint64(s) for s in MIX_SHIFTS)
    z = z ^ (z >> s1)
    z *= np.uint64(MIX_C1)
    z ^= z >> s2
    z *= np.uint64(MIX_C2)
    z ^= z >> s3
    return z


def counter_words(key: int, rows: npt.ArrayLike, words_per_row: int) -> U64:
    """The uint64 words of the given rows of a stream, shape (len(rows), words_per_row)."""
    r = np.asarray(rows, dtype=np.uint64).reshape(-1, 1)
    w = np.arange(1, words_per_row + 1, dtype=np.uint64).reshape(1, -1)
    ctr = r * np.uint64(words_per_row) + w
    z = np.uint64(key) + ctr * np.uint64(GAMMA)
    return mix64(z)


def prf_rows(key: int, rows: npt.ArrayLike, n: int) -> I8:
    """Rows of the int8 matrix of a stream, shape (len(rows), n). ``n`` must divide by 8."""
    if n % 8:
        raise ValueError("row length must be a multiple of 8")
    words = counter_words(key, rows, n // 8)
    return np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.int8)


def f_round(y: npt.NDArray[np.int64] | npt.NDArray[np.int32]) -> I8:
    """The step nonlinearity: bits 8..15 of each exact int32 product, as int8.

    Dropping the low byte and keeping the next one is a *rounding* (as in learning with
    rounding): the carries out of the low byte make the chain nonlinear over every ring
    Z/2^k, so no algebraic shortcut composes steps. A backend can take it as byte 1 of
    each little-endian int32 without arithmetic.
    """
    return ((np.asarray(y, dtype=np.int64) >> 8) & 0xFF).astype(np.uint8).view(np.int8)


def to_signed64(v: int) -> int:
    """A uint64 constant as the int64 with the same bits (for torch int64 tensors)."""
    v &= MASK64
    return v - (1 << 64) if v >= 1 << 63 else v
