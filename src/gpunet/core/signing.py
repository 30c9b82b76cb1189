"""Device signatures: the canonical bytes a device key signs.

There is no shared credential anywhere in gpunet (T3). Each device holds its own
Ed25519 key, and every write it makes is signed over the request itself, a timestamp
and a fresh nonce, so a captured request cannot be replayed, redirected to another
path or another device, or have its body altered.

Both the agent (which signs) and the coordinator (which verifies) build the message
here, so they cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SCHEME = "GPUNet-Device"
REQUEST_CONTEXT = b"gpunet-device-request-v1"
ENROLL_CONTEXT = b"gpunet-device-enroll-v1"
ROTATE_CONTEXT = b"gpunet-device-rotate-v1"
NONCE_BYTES = 16

_HEADER_RE = re.compile(
    r"^GPUNet-Device id=(?P<id>[A-Za-z0-9_]{1,64}),ts=(?P<ts>[0-9]{1,12}),"
    r"nonce=(?P<nonce>[0-9a-f]{32}),sig=(?P<sig>[A-Za-z0-9_-]{86})$"
)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    return b64u(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse a base64url raw Ed25519 public key; raises ValueError if it is not one."""
    try:
        raw = unb64u(text)
    except (ValueError, TypeError) as exc:
        raise ValueError("public key is not base64url") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def request_message(
    *, device_id: str, method: str, path: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    return b"\n".join(
        [
            REQUEST_CONTEXT,
            device_id.encode(),
            method.upper().encode(),
            path.encode(),
            str(timestamp).encode(),
            nonce.encode(),
            hashlib.sha256(body).hexdigest().encode(),
        ]
    )


def enrollment_message(*, code_digest: bytes, public_key: str, claim_json: bytes) -> bytes:
    """What a new device key signs to prove it holds the private half at enrollment.

    It binds the key to this enrollment code and this hardware claim, so a proof of
    possession cannot be lifted into another enrollment.
    """
    return b"\n".join(
        [
            ENROLL_CONTEXT,
            code_digest.hex().encode(),
            public_key.encode(),
            hashlib.sha256(claim_json).hexdigest().encode(),
        ]
    )


def rotation_message(*, device_id: str, new_public_key: str, timestamp: int) -> bytes:
    """What the old key signs to hand a device's identity to a new key."""
    return b"\n".join(
        [ROTATE_CONTEXT, device_id.encode(), new_public_key.encode(), str(timestamp).encode()]
    )


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    device_id: str
    timestamp: int
    nonce: str
    signature: bytes


def parse_auth_header(value: str) -> DeviceAuth | None:
    """Parse an Authorization header; None if it is not a well-formed device signature."""
    m = _HEADER_RE.match(value)
    if m is None:
        return None
    try:
        sig = unb64u(m["sig"])
    except ValueError:
        return None
    if len(sig) != 64:
        return None
    return DeviceAuth(m["id"], int(m["ts"]), m["nonce"], sig)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class DeviceSigner:
    """Client-side helper the agent uses to sign its requests to the coordinator."""

    def __init__(self, device_id: str, private_key: Ed25519PrivateKey) -> None:
        self.device_id = device_id
        self._key = private_key

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def authorization(self, method: str, path: str, body: bytes, timestamp: int) -> str:
        nonce = secrets.token_hex(NONCE_BYTES)
        msg = request_message(
            device_id=self.device_id,
            method=method,
            path=path,
            timestamp=timestamp,
            nonce=nonce,
            body=body,
        )
        return (
            f"{SCHEME} id={self.device_id},ts={timestamp},nonce={nonce},sig={b64u(self.sign(msg))}"
        )
