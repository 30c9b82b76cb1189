from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunet.core.errors import InvalidInput
from gpunet.core.merkle import hash_leaf
from gpunet.core.rewards.allocation import Allocation, DeviceUptime, Weight, allocate
from gpunet.core.rewards.snapshot import (
    EMPTY_ROOT,
    PayoutProof,
    build_snapshot,
    encode_leaf,
    snapshot_from_payouts,
    verify_payout,
)

WEIGHTS = {"h100": 30_000, "a100": 20_000}
wallet_st = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
payouts_st = st.dictionaries(wallet_st, st.integers(1, 2**256 - 1), min_size=1, max_size=50)


def alloc(payouts: dict[str, int], epoch: int = 11) -> Allocation:
    return Allocation(epoch, sum(payouts.values()), payouts, 0, 1)


def test_leaf_encoding_byte_for_byte():
    leaf = encode_leaf(258, "0xab", 1000)
    assert leaf == (b"gpunet/payout/v1" + b"\x00" * 6 + b"\x01\x02" + b"\x04" + b"0xab"
                    + b"\x00" * 30 + b"\x03\xe8")
    assert hash_leaf(leaf) == hashlib.sha256(b"\x00" + leaf).digest()
    with pytest.raises(InvalidInput):
        encode_leaf(0, "", 1)
    with pytest.raises(UnicodeEncodeError):
        encode_leaf(0, "wället", 1)


@settings(deadline=None)
@given(payouts_st, st.integers(0, 2**64 - 1))
def test_every_proof_verifies_and_tampering_fails(payouts, epoch):
    snap = build_snapshot(alloc(payouts, epoch))
    for wallet, amount in payouts.items():
        proof = snap.proof(wallet)
        assert proof.amount == amount
        assert verify_payout(snap.root, epoch, wallet, amount, proof)
        assert verify_payout(snap.root.hex(), epoch, wallet, amount,
                             PayoutProof.from_json(proof.to_json()))
        assert not verify_payout(snap.root, epoch, wallet, amount + 1, proof)
        assert not verify_payout(snap.root, epoch, wallet, amount - 1, proof)
        assert not verify_payout(snap.root, epoch + 1 if epoch < 2**64 - 1 else 0,
                                 wallet, amount, proof)
        assert not verify_payout(snap.root, epoch, wallet + "x", amount, proof)


@settings(deadline=None)
@given(payouts_st, st.randoms(use_true_random=False))
def test_root_independent_of_input_order(payouts, rnd):
    items = list(payouts.items())
    rnd.shuffle(items)
    assert build_snapshot(alloc(dict(items))).root == build_snapshot(alloc(payouts)).root


def test_proof_of_another_wallet_fails():
    snap = build_snapshot(alloc({"a": 5, "b": 7, "c": 9}))
    assert not verify_payout(snap.root, 11, "a", 5, snap.proof("b"))
    assert not verify_payout(snap.root, 11, "b", 5, snap.proof("a"))
    with pytest.raises(KeyError):
        snap.proof("d")


def test_single_and_empty_snapshots():
    snap = build_snapshot(alloc({"only": 42}))
    assert snap.root == hash_leaf(encode_leaf(11, "only", 42))
    assert verify_payout(snap.root, 11, "only", 42, snap.proof("only"))
    empty = build_snapshot(Allocation(3, 99, {}, 99, 0))
    assert empty.root == EMPTY_ROOT and empty.wallets == []
    assert empty.summary() == {"epoch": 3, "root": "00" * 32, "emission": "99", "paid": "0",
                               "unallocated": "99", "wallets": 0}
    with pytest.raises(KeyError):
        empty.proof("only")


def test_rejects_unbalanced_allocation():
    with pytest.raises(InvalidInput):
        build_snapshot(Allocation(1, 100, {"a": 50}, 0, 1))


def test_close_and_reclose_give_identical_snapshots():
    devs = [DeviceUptime(f"w{i % 7}", "h100" if i % 3 else "a100", i % 61) for i in range(200)]
    a1 = build_snapshot(allocate(4, 10**21 + 17, devs, WEIGHTS))
    a2 = build_snapshot(allocate(4, 10**21 + 17, list(reversed(devs)), WEIGHTS))
    assert a1.root == a2.root and a1.amounts == a2.amounts and a1.wallets == a2.wallets
    stored = dict(reversed(list(zip(a1.wallets, a1.amounts, strict=True))))
    again = snapshot_from_payouts(4, 10**21 + 17, stored)
    assert again.root == a1.root and again.proof("w3") == a1.proof("w3")


def test_proof_json_shape_and_strictness():
    snap = build_snapshot(alloc({"a": 5, "b": 7, "c": 9}))
    d = snap.proof("c").to_dict()
    assert d["amount"] == "9" and d["leaf_count"] == 3 and d["index"] == 2
    assert d["siblings"][0] is None and len(d["siblings"][1]) == 64
    assert PayoutProof.from_dict(json.loads(json.dumps(d))) == snap.proof("c")
    bad = [
        {**d, "extra": 1}, {**d, "amount": 9}, {**d, "amount": "-9"}, {**d, "index": 3},
        {**d, "siblings": ["zz" * 32]}, {**d, "siblings": ["00"]}, {**d, "siblings": "00"},
        {**d, "siblings": [None] * 65}, {**d, "wallet": "a b"}, {**d, "epoch": -1},
    ]
    for b in bad:
        with pytest.raises(InvalidInput):
            PayoutProof.from_dict(b)
    for text in ("{", "[]", "x" * 20_000):
        with pytest.raises(InvalidInput):
            PayoutProof.from_json(text)


def test_verify_never_raises_on_garbage():
    snap = build_snapshot(alloc({"a": 5, "b": 7}))
    p = snap.proof("a")
    assert not verify_payout("nothex", 11, "a", 5, p)
    assert not verify_payout(b"short", 11, "a", 5, p)
    assert not verify_payout(snap.root, 11, "a", -5, p)
    assert not verify_payout(snap.root, 11, "a", 2**256, p)
    assert not verify_payout(snap.root, -1, "a", 5, p)
    assert not verify_payout(snap.root, 11, "ä", 5, p)
    assert not verify_payout(snap.root, 11, "a", 5, p.merkle.__class__(5, 2, p.siblings))


def test_worked_example_in_docs():
    """docs/rewards.md section 7, number for number."""
    from fractions import Fraction

    devs = [DeviceUptime("alice", "h100", 60), DeviceUptime("bob", "rtx4090", 60, 30),
            DeviceUptime("bob", "rtx4090", 30), DeviceUptime("carol", "h100", 0),
            DeviceUptime("dave", "a100", 45)]
    weights: dict[str, Weight] = {"h100": 30_000, "a100": 20_000, "rtx4090": Fraction(7, 6)}
    a = allocate(5, 1000, devs, weights, bonus=12_500)
    assert a.payouts == {"alice": 469, "bob": 296, "dave": 235}
    snap = build_snapshot(a)
    assert encode_leaf(5, "alice", 469).hex() == (
        "6770756e65742f7061796f75742f7631" "0000000000000005" "05" "616c696365"
        "00000000000000000000000000000000000000000000000000000000000001d5")
    assert snap.root.hex() == "523def19f5c1fd193024109e63ea4f457fbc58b053aadec15a13d09cd6687ca4"
    d = snap.proof("alice").to_dict()
    assert d["siblings"][0].startswith("cb30de3b") and d["siblings"][1].startswith("f30c7181")
