"""Each cluster's Ray token: made at placement, sealed at rest, opened only to hand it
to the cluster's customer and its nodes.

SECURITY: the token is the only thing between the internet and code execution on the
cluster's hosts (Ray runs whatever an authenticated client submits). It is 256 random
bits, made fresh per cluster, never logged, never in the command outbox (the delivering
replica adds it to the start command in memory), and stored sealed with AES-GCM under a
key derived from the coordinator's secret, bound to the cluster's public id (a sealed
token copied onto another cluster's row does not open).
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gpunet.server.security.secrets import derive_key

_NONCE = 12


class TokenBox:
    def __init__(self, master_secret: str) -> None:
        self._aead = AESGCM(derive_key(master_secret, "cluster-ray-token"))

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)  # 43 characters of [A-Za-z0-9_-]

    def seal(self, cluster_public_id: str, token: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, token.encode(), cluster_public_id.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, cluster_public_id: str, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed.encode())
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], cluster_public_id.encode())
        except InvalidTag as exc:
            raise ValueError("this token was not sealed for this cluster") from exc
        return plain.decode()
