"""Derivation is deterministic, counter based, exact, and identical across backends."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet.core.pog import ChallengeParams
from gpunet.core.pog.derive import ChallengeKeys, Derivation, row_refs
from gpunet.core.pog.digest import row_digests
from gpunet.core.pog.exact import exact_products
from gpunet.core.pog.prf import f_round, prf_rows

seeds = st.binary(min_size=32, max_size=32)
keys64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
sizes = st.sampled_from([64, 128, 192, 256])


@given(key=keys64, n=sizes, data=st.data())
@settings(max_examples=50, deadline=None)
def test_any_rows_equal_the_rows_of_the_whole_matrix(key, n, data):
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8))
    full = prf_rows(key, np.arange(n), n)
    assert (prf_rows(key, rows, n) == full[rows]).all()
    assert (prf_rows(key, rows, n) == prf_rows(key, rows, n)).all()


@given(seed=seeds)
@settings(max_examples=30, deadline=None)
def test_streams_of_a_seed_are_distinct(seed):
    k = ChallengeKeys.from_seed(seed)
    assert len({k.x0, k.b, k.d, k.leaf}) == 4


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=64))
def test_rounding_keeps_bits_8_to_15(values):
    y = np.array(values, dtype=np.int64)
    expected = [((v >> 8) & 0xFF) - (256 if (v >> 8) & 0x80 else 0) for v in values]
    assert f_round(y).tolist() == expected
    assert (f_round(y.astype(np.int32)) == f_round(y)).all()


@given(r=st.integers(1, 6), c=st.integers(1, 6), k=st.integers(1, 2600), seed=st.integers(0, 99))
@settings(max_examples=40, deadline=None)
def test_exact_products_are_exact(r, c, k, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (r, k), dtype=np.int8)
    b = rng.integers(-128, 128, (c, k), dtype=np.int8)
    a[0] = -128  # the extreme sums
    b[0] = -128
    assert (exact_products(a, b) == a.astype(np.int64) @ b.astype(np.int64).T).all()


def test_exact_products_at_the_largest_n():
    a = np.full((2, 65536), -128, dtype=np.int8)
    assert (exact_products(a, a) == 65536 * 128 * 128).all()


@given(seed=seeds, step=st.integers(0, 4000), root=st.binary(min_size=32, max_size=32),
       k=st.integers(0, 64))
@settings(max_examples=60, deadline=None)
def test_reference_steps_are_older_and_reproducible(seed, step, root, k):
    rows = np.arange(0, 65536, 997)
    refs = row_refs(seed, step, root, rows, k)
    assert refs.shape == (rows.size, k if step else 0)
    assert (refs < max(step, 1)).all()
    assert (refs == row_refs(seed, step, root, rows, k)).all()


def test_reference_steps_spread_over_all_older_steps():
    refs = row_refs(b"s" * 32, 100, b"r" * 32, np.arange(8192), 16)
    counts = np.bincount(refs.ravel().astype(np.int64), minlength=100)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_references_change_with_the_root():
    rows = np.arange(4096)
    a = row_refs(b"s" * 32, 50, b"a" * 32, rows, 8)
    b = row_refs(b"s" * 32, 50, b"b" * 32, rows, 8)
    assert (a != b).mean() > 0.9


@given(seed=seeds, row=st.integers(0, 7), col=st.integers(0, 255), flip=st.integers(1, 255))
@settings(max_examples=40, deadline=None)
def test_any_changed_byte_changes_the_digest(seed, row, col, flip):
    p = ChallengeParams(n=256, steps=1, refs=0, read_steps=0, digest_width=32, rows_per_check=2,
                        checked_steps=1)
    d = Derivation(seed, p)
    rows = prf_rows(d.keys.x0, np.arange(8), 256)
    other = rows.copy()
    other[row, col] = np.int8(((int(other[row, col]) + flip + 128) % 256) - 128)
    a, b = row_digests(rows, d.dt, d.leaf), row_digests(other, d.dt, d.leaf)
    assert (a[row] != b[row]).any()
    assert (np.delete(a, row, 0) == np.delete(b, row, 0)).all()
