"""Openings over the control channel: cut into parts, put back together, bounded."""

from __future__ import annotations

import pytest

from gpunet.core import control
from gpunet.core.control import OpeningsAssembler, OpeningsPart, ProtocolError

CID = "pog_" + "a" * 24


def parts(body: bytes, device: str = "dev_a", size: int = 1000) -> list[OpeningsPart]:
    return [
        OpeningsPart.parse(control.decode_payload(control.encode(f)[4:]))
        for f in control.openings_frames(device, CID, body, part_size=size)
    ]


def test_frames_round_trip_through_the_assembler() -> None:
    body = bytes(range(256)) * 10  # 2560 bytes: three parts of 1000
    got = parts(body)
    assert [p.part for p in got] == [0, 1, 2] and [p.last for p in got] == [False, False, True]
    assembler = OpeningsAssembler(limit=len(body))
    assert [assembler.add(p) for p in got[:-1]] == [None, None]
    assert assembler.buffered == 2000
    assert assembler.add(got[-1]) == body
    assert assembler.buffered == 0  # nothing kept once a response is whole


def test_the_default_part_fits_a_frame() -> None:
    frame = next(control.openings_frames("dev_a", CID, b"\0" * (2 * control.OPENINGS_PART)))
    assert len(control.encode(frame)) <= control.MAX_FRAME
    assert len(frame["body"]) == control.OPENINGS_PART


def test_devices_are_assembled_apart() -> None:
    a, b = parts(b"a" * 1500, "dev_a"), parts(b"b" * 1500, "dev_b")
    assembler = OpeningsAssembler(limit=1500)
    assert assembler.add(a[0]) is None and assembler.add(b[0]) is None
    assert assembler.add(b[1]) == b"b" * 1500
    assert assembler.add(a[1]) == b"a" * 1500


def test_past_the_limit_is_refused_before_the_part_is_kept() -> None:
    assembler = OpeningsAssembler(limit=1999)
    got = parts(b"x" * 2500)
    assembler.add(got[0])
    with pytest.raises(ProtocolError, match="more than 1999 bytes"):
        assembler.add(got[1])
    assert assembler.buffered == 0


@pytest.mark.parametrize("order", [[1], [0, 2], [0, 0]])
def test_parts_out_of_order_are_refused(order: list[int]) -> None:
    got = parts(b"x" * 3000)
    assembler = OpeningsAssembler(limit=10_000)
    with pytest.raises(ProtocolError, match="out of order"):
        for i in order:
            assembler.add(got[i])


def test_a_part_naming_another_challenge_is_refused() -> None:
    got = parts(b"x" * 2000)
    other = OpeningsPart("dev_a", "pog_" + "b" * 24, 1, True, b"x")
    assembler = OpeningsAssembler(limit=10_000)
    assembler.add(got[0])
    with pytest.raises(ProtocolError, match="out of order"):
        assembler.add(other)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"challenge": "../../etc"}, "challenge id"),
        ({"challenge": 7}, "challenge"),
        ({"part": -1}, "numbered from 0"),
        ({"part": True}, "part"),
        ({"last": 1}, "last"),
        ({"body": "text"}, "body"),
        ({"body": b"\0" * (control.OPENINGS_PART + 1)}, "bytes at most"),
        ({"device": "no spaces allowed"}, "device id"),
    ],
)
def test_malformed_parts_are_refused(change: dict[str, object], reason: str) -> None:
    frame = next(control.openings_frames("dev_a", CID, b"x" * 10))
    with pytest.raises(ProtocolError, match=reason):
        OpeningsPart.parse({**frame, **change})
