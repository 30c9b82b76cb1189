"""Keys derived from the one configured secret, each for one purpose only."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(master: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"gpunet-v1", info=purpose.encode()
    ).derive(master.encode())


def digest(token: str) -> str:
    """How bearer secrets (refresh tokens, enrollment codes) are stored: never in clear."""
    return hashlib.sha256(token.encode()).hexdigest()


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def tag(key: bytes, data: bytes, length: int = 8) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:length]


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
