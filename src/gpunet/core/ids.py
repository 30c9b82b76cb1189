"""Public identifiers: random, prefixed, and unrelated to any internal row id (T2)."""

from __future__ import annotations

import base64
import secrets


def new_public_id(prefix: str, nbytes: int = 10) -> str:
    body = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{body}"
