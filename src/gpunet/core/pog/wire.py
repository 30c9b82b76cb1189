"""The opening response as bytes: rows travel raw, not as base64 in JSON.

Openings are the one large message of the exchange (megabytes at the real profiles'
sizes), so they get a plain binary layout, little-endian:

    header   b"GPO2" | u8 id length | challenge id (ASCII) | u32 n | u32 row count
    per row  u32 step | u32 index | u8 depth | u32 sibling mask
             | n bytes of row data | CHUNK_BYTES of row digests
             | 32 bytes per sibling present (bit i of the mask: level i has one)

The coordinator knows, before a byte arrives, how many rows it asked for and their
width, so `expected_size` bounds the body exactly and a transport can refuse a stream
the moment it runs past it. Decoding checks every length before slicing and ends in the
same frozen `OpeningResponse` the JSON form produced, so the verifier sees one model.
"""

from __future__ import annotations

import struct

from pydantic import ValidationError

from gpunet.core.pog.messages import (
    CHUNK_BYTES,
    MAX_OPENED_ROWS,
    MAX_PROOF_DEPTH,
    OpenedRow,
    OpeningResponse,
)
from gpunet.core.pog.params import ChallengeParams

MAGIC = b"GPO2"
CONTENT_TYPE = "application/vnd.gpunet.openings"
_HEAD = struct.Struct("<II")
_ROW = struct.Struct("<IIBI")
_HASH = 32


class WireError(ValueError):
    """The bytes are not a well-formed opening response (the reason is safe to return)."""


def row_size(n: int, depth: int) -> int:
    return _ROW.size + n + CHUNK_BYTES + depth * _HASH


def expected_size(challenge_id: str, params: ChallengeParams, rows: int) -> int:
    """The largest body an answer of `rows` rows to this challenge can have."""
    return 4 + 1 + len(challenge_id) + _HEAD.size + rows * row_size(params.n, params.proof_depth)


def max_body(params: ChallengeParams) -> int:
    """The largest opening any challenge with these parameters can need (64-char id)."""
    return expected_size("x" * 64, params, params.opened_rows_max)


def encode_openings(response: OpeningResponse) -> bytes:
    cid = response.challenge_id.encode("ascii")
    n = len(response.rows[0].data)
    parts = [MAGIC, bytes([len(cid)]), cid, _HEAD.pack(n, len(response.rows))]
    for row in response.rows:
        if len(row.data) != n:
            raise ValueError("every opened row has the same width")
        mask = sum(1 << i for i, s in enumerate(row.siblings) if s is not None)
        parts += [
            _ROW.pack(row.step, row.index, len(row.siblings), mask),
            row.data,
            row.chunk,
            *(s for s in row.siblings if s is not None),
        ]
    return b"".join(parts)


def decode_openings(data: bytes, *, n: int, max_rows: int = MAX_OPENED_ROWS) -> OpeningResponse:
    """Parse an opening response of rows n bytes wide; WireError on anything else."""
    view = memoryview(data)
    if len(view) < 5 or bytes(view[:4]) != MAGIC:
        raise WireError("not an opening response (bad magic)")
    id_len = view[4]
    pos = 5 + id_len
    if len(view) < pos + _HEAD.size:
        raise WireError("truncated header")
    try:
        challenge_id = bytes(view[5:pos]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise WireError("challenge id is not ASCII") from exc
    width, count = _HEAD.unpack_from(view, pos)
    pos += _HEAD.size
    if width != n:
        raise WireError(f"rows are {width} bytes wide, the challenge's are {n}")
    if not 1 <= count <= max_rows:
        raise WireError(f"{count} rows, at most {max_rows} were requested")
    rows = []
    for _ in range(count):
        row, pos = _decode_row(view, pos, n)
        rows.append(row)
    if pos != len(view):
        raise WireError(f"{len(view) - pos} bytes after the last row")
    try:
        return OpeningResponse(challenge_id=challenge_id, rows=tuple(rows))
    except ValidationError as exc:
        raise WireError(_first_error(exc)) from exc


def _decode_row(view: memoryview, pos: int, n: int) -> tuple[OpenedRow, int]:
    if len(view) < pos + _ROW.size:
        raise WireError("truncated row header")
    step, index, depth, mask = _ROW.unpack_from(view, pos)
    pos += _ROW.size
    if depth > MAX_PROOF_DEPTH or mask >> depth:
        raise WireError("Merkle path deeper than any tree")
    present = mask.bit_count()
    end = pos + n + CHUNK_BYTES + present * _HASH
    if len(view) < end:
        raise WireError("truncated row")
    data = bytes(view[pos : pos + n])
    pos += n
    chunk = bytes(view[pos : pos + CHUNK_BYTES])
    pos += CHUNK_BYTES
    siblings: list[bytes | None] = []
    for level in range(depth):
        if mask >> level & 1:
            siblings.append(bytes(view[pos : pos + _HASH]))
            pos += _HASH
        else:
            siblings.append(None)
    try:
        row = OpenedRow(step=step, index=index, data=data, chunk=chunk, siblings=tuple(siblings))
    except ValidationError as exc:
        raise WireError(_first_error(exc)) from exc
    return row, pos


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'invalid')}"[:200]
